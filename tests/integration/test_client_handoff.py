"""The client server hands each authenticated client's socket to the client's proxy, and is out
of the data path from then on; with TLS it keeps the connection and relays."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import psutil
import pytest

import skate
from skate.core_worker import context
from skate.protocol import tls
from tests.integration._client_helpers import Head, wait_until
from tests.tls_certs import use_test_tls

GRACE = "2"
MB = 1024 * 1024


@pytest.fixture
def head():
    if skate.is_initialized():
        skate.shutdown()
    h = Head(num_cpus=2, SKATE_CLIENT_RECONNECT_GRACE_S=GRACE)
    yield h
    if skate.is_initialized():
        skate.shutdown()
    h.stop()


@skate.remote
def echo(x):
    return x


def _client_port() -> int:
    """The local port of this client's connection."""
    core = context.current

    async def port() -> int:
        return core._conn._transport.get_extra_info("sockname")[1]

    return core.run(port())


def _holds(proc: psutil.Process, port: int) -> bool:
    """Whether `proc` has a socket whose peer is this client's end at `port`."""
    return any(c.raddr and c.raddr.port == port for c in proc.net_connections(kind="tcp"))


def _wakeups(server: psutil.Process) -> int:
    """How often the server went to sleep waiting (a relay wakes for every batch of frames)."""
    return server.num_ctx_switches().voluntary


def _burst() -> None:
    """Large and small traffic both ways."""
    big = np.arange(8 * MB, dtype=np.uint8)
    ref = skate.put(big)
    assert skate.get(ref)[-1] == big[-1]
    for i in range(200):
        assert skate.get(echo.remote(i)) == i


@pytest.mark.timeout(120)
def test_the_server_is_out_of_the_data_path(head):
    skate.init(head.client_address)
    (server,) = head.processes("skate.client.server")
    (proxy,) = head.processes("skate.client.proxy")
    port = _client_port()
    assert wait_until(lambda: _holds(proxy, port), timeout=10)
    assert not _holds(server, port)  # the server kept no descriptor of the handed-over socket
    before = _wakeups(server)
    _burst()
    assert _wakeups(server) - before < 50  # 400 round trips and 16 MiB went by, not through it


@pytest.mark.timeout(120)
def test_a_reconnection_is_handed_to_the_same_proxy(head):
    skate.init(head.client_address)
    (server,) = head.processes("skate.client.server")
    (proxy,) = head.processes("skate.client.proxy")
    ref = skate.put("kept")
    core = context.current

    async def cut() -> None:
        core._conn._transport.abort()

    core.run(cut())
    assert skate.get(ref) == "kept"  # reconnected, to the same session
    port = _client_port()
    assert head.processes("skate.client.proxy") == [proxy]
    assert wait_until(lambda: _holds(proxy, port), timeout=10)
    assert not _holds(server, port)
    # The new connection cancelled the grace timer the drop started: the session outlives it.
    deadline_passed = time.monotonic() + float(GRACE) + 1.5
    while time.monotonic() < deadline_passed:
        assert skate.get(echo.remote(1)) == 1
    assert proxy.is_running()


@pytest.mark.timeout(120)
def test_a_proxy_that_dies_closes_its_clients_connection(head):
    skate.init(head.client_address, _connect_timeout=3)
    ref = skate.put("lost with the session")
    core = context.current
    (proxy,) = head.processes("skate.client.proxy")
    os.kill(proxy.pid, signal.SIGKILL)
    assert wait_until(lambda: core._conn.closed, timeout=15)  # nothing kept the socket open
    with pytest.raises(ConnectionError):
        skate.get(ref, timeout=10)


@pytest.fixture
def tls_head(tmp_path, monkeypatch):
    use_test_tls(tmp_path, monkeypatch)
    if skate.is_initialized():
        skate.shutdown()
    h = Head(num_cpus=2, SKATE_CLIENT_RECONNECT_GRACE_S=GRACE)
    yield h
    if skate.is_initialized():
        skate.shutdown()
    h.stop()
    tls._context.cache_clear()


@pytest.mark.timeout(120)
def test_with_tls_the_server_keeps_the_connection_and_relays(tls_head):
    skate.init(tls_head.client_address)
    (server,) = tls_head.processes("skate.client.server")
    (proxy,) = tls_head.processes("skate.client.proxy")
    port = _client_port()
    assert _holds(server, port) and not _holds(proxy, port)
    before = _wakeups(server)
    _burst()
    # every round trip went through the server: at least one wake-up each (two when it slept
    # between request and reply; a quick reply can arrive before it does)
    assert _wakeups(server) - before > 200
