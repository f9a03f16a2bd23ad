"""A client session's life: reconnecting within the grace period, cleanup after it, two
clients isolated, and bad input (wrong token, bad addresses, a server gone mid-call)."""

from __future__ import annotations

import threading
import time

import pytest

import skate
from skate.core_worker import context
from skate.exceptions import AuthenticationError
from tests.integration._client_helpers import Head, connect_local, run_client_script, wait_until
from tests.integration._cluster_helpers import free_port

GRACE = "3"


@pytest.fixture
def head():
    if skate.is_initialized():
        skate.shutdown()
    h = Head(num_cpus=2, SKATE_CLIENT_RECONNECT_GRACE_S=GRACE)
    yield h
    h.stop()


@skate.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


@skate.remote
def sleeper(seconds):
    time.sleep(seconds)
    return seconds


def _drop_connection() -> None:
    """Cut the client's connection as a network failure would."""
    core = context.current

    async def cut() -> None:
        core._conn._transport.abort()

    core.run(cut())


@pytest.mark.timeout(90)
def test_reconnect_within_the_grace_period_keeps_refs_and_actors(head):
    skate.init(head.client_address)
    ref = skate.put("kept")
    counter = Counter.remote()
    assert skate.get(counter.incr.remote()) == 1
    job = skate.get_runtime_context().get_job_id()
    _drop_connection()
    assert skate.get(ref) == "kept"  # the next call reconnects to the same session
    assert skate.get(counter.incr.remote()) == 2
    assert skate.get_runtime_context().get_job_id() == job
    skate.shutdown()


CLIENT_THEN_DIE = """
import os, skate
skate.init("{address}", namespace="lifecycle")
@skate.remote
class Counter:
    def incr(self):
        return 1
a = Counter.options(name="temporary").remote()
b = Counter.options(name="lasting", lifetime="detached").remote()
assert skate.get([a.incr.remote(), b.incr.remote()]) == [1, 1]
print("JOB", skate.get_runtime_context().get_job_id(), flush=True)
os._exit(0)  # no disconnect: the connection just drops
"""


@pytest.mark.timeout(120)
def test_after_the_grace_period_the_session_ends_and_frees_its_actors(head):
    status, out = run_client_script(CLIENT_THEN_DIE.format(address=head.client_address))
    assert status == 0, out
    gone_at = time.monotonic()
    connect_local(head)
    assert skate.get(skate.get_actor("temporary", namespace="lifecycle").incr.remote()) == 1

    def temporary_gone() -> bool:
        try:
            skate.get_actor("temporary", namespace="lifecycle")
        except ValueError:
            return True
        return False

    assert wait_until(temporary_gone, timeout=float(GRACE) + 20)
    assert time.monotonic() - gone_at >= float(GRACE) - 0.5  # not before the grace period
    lasting = skate.get_actor("lasting", namespace="lifecycle")  # detached: it stays
    assert skate.get(lasting.incr.remote()) == 1
    skate.kill(lasting)
    assert wait_until(lambda: not head.processes("skate.client.proxy"), timeout=20)
    skate.shutdown()


OTHER_CLIENT = """
import os, skate
skate.init("{address}")
@skate.remote
def f():
    return 1
refs = [f.remote() for _ in range(20)]
print("JOB", skate.get_runtime_context().get_job_id(), flush=True)
os.kill(os.getpid(), 9)
"""


@pytest.mark.timeout(120)
def test_two_clients_are_isolated(head):
    skate.init(head.client_address)
    counter = Counter.remote()
    ref = skate.put(list(range(100)))
    assert skate.get(counter.incr.remote()) == 1
    status, out = run_client_script(OTHER_CLIENT.format(address=head.client_address))
    assert status != 0 and "JOB" in out, out
    other_job = out.split("JOB", 1)[1].split()[0]
    assert other_job != skate.get_runtime_context().get_job_id()
    assert wait_until(lambda: len(head.processes("skate.client.proxy")) == 1, timeout=float(GRACE) + 20)
    assert skate.get(counter.incr.remote()) == 2  # the other client's end touched nothing of ours
    assert skate.get(ref) == list(range(100))
    skate.shutdown()


@pytest.mark.timeout(60)
def test_wrong_token_is_an_authentication_error(head, monkeypatch):
    monkeypatch.setenv("SKATE_AUTH_TOKEN", "not-the-token")
    start = time.monotonic()
    with pytest.raises(AuthenticationError, match="token"):
        skate.init(head.client_address)
    assert time.monotonic() - start < 10
    assert not skate.is_initialized()


@pytest.mark.timeout(60)
def test_bad_addresses():
    if skate.is_initialized():
        skate.shutdown()
    for bad in ("skate://", "skate://host:notaport", "ray://host:70000", "skate://a:1/path"):
        with pytest.raises(ValueError, match="invalid client address"):
            skate.init(bad)
    with pytest.raises(ValueError, match="scheme"):
        skate.client("http://host:1")
    port = free_port()
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        skate.init(f"skate://127.0.0.1:{port}", _connect_timeout=1.5)
    assert time.monotonic() - start < 15
    assert not skate.is_initialized()


@pytest.mark.timeout(90)
def test_server_gone_mid_call_is_an_error_not_a_hang(head):
    skate.init(head.client_address, _connect_timeout=2)
    slow = sleeper.remote(60)
    errors: list[BaseException] = []

    def wait_for_it() -> None:
        try:
            skate.get(slow)
        except BaseException as exc:
            errors.append(exc)

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    time.sleep(0.5)
    (server,) = head.processes("skate.client.server")
    server.kill()
    waiter.join(30)
    assert not waiter.is_alive() and errors and isinstance(errors[0], ConnectionError), errors
    with pytest.raises(ConnectionError):
        skate.get(slow, timeout=5)  # nothing listens any more: reconnecting fails in time
    skate.shutdown()
