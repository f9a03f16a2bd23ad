"""Bad inputs to `skate start` and to init(address=...): clear errors, no hangs, nothing left."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

import pytest

import skate
from skate.protocol import RemoteError, connect
from tests.integration import _cluster_helpers
from tests.integration._cluster_helpers import (
    STORE,
    cli_env,
    force_stop_cli,
    free_port,
    node_args,
    run_cli,
    session_dirs,
    temp_root,
    wait_gone,
)

multinode = _cluster_helpers.multinode  # the fixture


def _assert_clean_failure(out, *needles: str) -> None:
    assert out.returncode != 0, out.stdout
    assert "Traceback" not in out.stderr.split("\n", 1)[0], out.stderr
    assert out.stderr.startswith("skate start:") or "usage:" in out.stderr, out.stderr
    for needle in needles:
        assert needle in out.stderr, out.stderr


def test_join_with_nothing_listening_fails_fast():
    port = free_port()
    address = f"127.0.0.1:{port}"
    try:
        # Without a token: no head on this machine to read it from.
        no_token = run_cli("start", "--address", address, "--num-cpus", "1", timeout=30)
        _assert_clean_failure(no_token, address, "token")
        # With a token the node tries to reach the GCS and gives up after SKATE_JOIN_TIMEOUT_S.
        start = time.monotonic()
        out = run_cli(
            "start",
            "--address",
            address,
            "--num-cpus",
            "1",
            "--object-store-memory",
            str(STORE),
            "--token",
            "0" * 64,
            env=cli_env(SKATE_JOIN_TIMEOUT_S="2"),
            timeout=30,
        )
        elapsed = time.monotonic() - start
        _assert_clean_failure(out, address)
        assert elapsed < 15, elapsed
        assert wait_gone(temp_root()) == []
        assert session_dirs(temp_root()) == []
    finally:
        force_stop_cli()


def test_join_with_wrong_token_fails_and_head_survives():
    port = free_port()
    address = f"127.0.0.1:{port}"
    try:
        head = run_cli(
            "start", "--head", "--port", str(port), "--num-cpus", "1", "--object-store-memory", str(STORE)
        )
        assert head.returncode == 0, head.stderr
        start = time.monotonic()
        out = run_cli(
            "start",
            "--address",
            address,
            "--num-cpus",
            "1",
            "--object-store-memory",
            str(STORE),
            "--token",
            "wrong",
            env=cli_env(SKATE_JOIN_TIMEOUT_S="2"),
            timeout=30,
        )
        assert time.monotonic() - start < 15
        _assert_clean_failure(out, address)
        # The reason must be told: the token was refused (not "the event loop stopped").
        assert re.search(r"token|authenticat", out.stderr, flags=re.I), out.stderr
        # The failed joiner left nothing; the head still serves a driver with one node.
        skate.init(address=address)
        assert len([n for n in skate.nodes() if n["Alive"]]) == 1
        assert skate.get(skate.put("still fine"), timeout=60) == "still fine"
        skate.shutdown()
        assert run_cli("stop").returncode == 0
        assert wait_gone(temp_root()) == []
    finally:
        force_stop_cli()


def test_head_on_busy_port_fails():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        try:
            out = run_cli("start", "--head", "--port", str(port), "--num-cpus", "1", timeout=30)
            _assert_clean_failure(out, str(port))
            assert "not free" in out.stderr or "in use" in out.stderr
            assert session_dirs(temp_root()) == []
        finally:
            force_stop_cli()


def test_start_needs_head_or_address():
    out = run_cli("start", "--num-cpus", "1", timeout=30)
    _assert_clean_failure(out, "--head", "--address")
    both = run_cli("start", "--head", "--address", "127.0.0.1:1", timeout=30)
    _assert_clean_failure(both)
    assert session_dirs(temp_root()) == []


@pytest.mark.parametrize("bad", ["not json", '{"red": -1}', "[1, 2]"])
def test_start_rejects_bad_resources(bad):
    try:
        out = run_cli("start", "--head", "--port", str(free_port()), "--resources", bad, timeout=30)
        _assert_clean_failure(out, "resources")
        assert session_dirs(temp_root()) == []
    finally:
        force_stop_cli()


@pytest.mark.parametrize("flag", ["--num-cpus", "--num-gpus", "--object-store-memory"])
def test_start_rejects_negative_amounts(flag):
    try:
        out = run_cli("start", "--head", "--port", str(free_port()), flag, "-1", timeout=30)
        _assert_clean_failure(out, flag.strip("-").replace("-", "_"))
        assert session_dirs(temp_root()) == []
    finally:
        force_stop_cli()


def test_init_auto_without_cluster_raises_connection_error(fresh):
    assert session_dirs(temp_root()) == []
    with pytest.raises(ConnectionError):
        skate.init(address="auto")
    assert not skate.is_initialized()


def test_init_unreachable_address_raises_connection_error(fresh):
    start = time.monotonic()
    with pytest.raises(ConnectionError):
        skate.init(address="127.0.0.1:1")
    assert time.monotonic() - start < 15
    assert not skate.is_initialized()


def test_init_address_with_resources_is_value_error(multinode):
    for kwargs in ({"num_cpus": 2}, {"num_gpus": 1}, {"resources": {"x": 1}}, {"object_store_memory": STORE}):
        with pytest.raises(ValueError):
            skate.init(address=multinode.address, **kwargs)
        assert not skate.is_initialized()
    skate.init(address=multinode.address)
    assert skate.get(skate.put(1), timeout=60) == 1


def test_duplicate_node_id_is_rejected_and_cluster_keeps_working(multinode):
    worker = multinode.add_node(**node_args(num_cpus=1, resources={"red": 1}))
    head = multinode.head_node

    async def register_twice():
        conn = await connect(head.gcs_address, head.token, name="impostor", timeout=5)
        try:
            nodes = await conn.call("get_nodes")
            mine = next(n for n in nodes if n["node_id"] == worker.node_id)
            with pytest.raises(RemoteError) as info:
                await conn.call("register_node", dict(mine, address="tcp://127.0.0.1:1"))
            # Half-close and wait for the GCS to close its side: it does so only after handling
            # the impostor's disconnection (which must not kill the real node), so the checks
            # below see its outcome.
            conn._transport.write_eof()
            deadline = time.monotonic() + 10
            while not conn.closed and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert conn.closed, "the GCS never closed the impostor's connection"
            return str(info.value)
        finally:
            conn.close()

    message = asyncio.run(register_twice())
    assert "already registered" in message
    skate.init(address=multinode.address)
    by_id = {n["NodeID"]: n for n in skate.nodes()}
    assert by_id[worker.node_id]["Alive"] is True
    assert "tcp://127.0.0.1:1" not in by_id[worker.node_id]["RayletSocketName"]

    @skate.remote(resources={"red": 1})
    def where():
        return skate.get_runtime_context().get_node_id()

    assert skate.get(where.remote(), timeout=60) == worker.node_id


def test_unauthenticated_client_cannot_register(multinode):
    async def attempt():
        conn = await connect(multinode.head_node.gcs_address, b"not-the-token", name="intruder", timeout=5)
        await conn.call("register_node", {"node_id": "ab" * 14, "address": "tcp://127.0.0.1:1"})

    with pytest.raises(Exception):  # noqa: B017  (refused at the handshake, however it surfaces)
        asyncio.run(asyncio.wait_for(attempt(), 10))
    skate.init(address=multinode.address)
    assert len(skate.nodes()) == 1
    assert json.dumps(skate.cluster_resources()["CPU"]) == "1.0"
