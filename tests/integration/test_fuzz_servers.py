"""Fuzzing every handler of the GCS, a raylet and a core worker (issue 12): malformed,
truncated, oversized and wrongly typed frames and messages, before and after authentication.
Each server must stay up and keep serving another client.

Bounded for CI (a few dozen examples per target, ~30 s in all); set SKATE_FUZZ_EXAMPLES for a
longer run. Methods that stop or kill by design (`shutdown`, `kill_worker`, ...) are left out:
an authenticated peer may legitimately call them.
"""

from __future__ import annotations

import ast
import asyncio
import os
import pathlib
import socket
import struct
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skate
from skate._secure_files import read_token
from skate.protocol.connection import NONCE_BYTES, handshake_mac
from skate.protocol.framing import NOTIFY, REQUEST, RESPONSE, pack_frame
from skate.protocol.transport import choose_address, connect, parse_address

EXAMPLES = int(os.environ.get("SKATE_FUZZ_EXAMPLES", "0")) or None
PACKAGE = pathlib.Path(skate.__file__).parent
# Stop, drain or kill by design: a trusted peer may call them, so they are not fuzzed.
DESTRUCTIVE = {"shutdown", "drain_node", "node_declared_dead", "kill_worker", "kill_actor", "client_died"}

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
# Payloads shaped like real ones: dicts with the keys handlers read, values of any type.
KEYS = (
    "oid oids key value namespace node_id worker_id job lines size owner actor_id task_id address "
    "resources wait lease_id spec name from client"
).split()
payloads = values | st.dictionaries(st.sampled_from(KEYS), values, max_size=6)


def handler_names(subpackage: str) -> list[str]:
    """The method names a server registers, read from its source (dict literals given to
    `handlers`, `handlers.update(...)`, `def handlers()`, and `handlers["x"] = ...`)."""
    names: set[str] = set()
    for path in sorted((PACKAGE / subpackage).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            d = None
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Attribute) and t.attr == "handlers":
                        d = node.value
                    if isinstance(t, ast.Subscript) and "handlers" in ast.unparse(t.value):
                        if isinstance(t.slice, ast.Constant) and isinstance(t.slice.value, str):
                            names.add(t.slice.value)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "update"
            ):
                if "handlers" in ast.unparse(node.func.value) and node.args:
                    d = node.args[0]
            elif isinstance(node, ast.FunctionDef) and node.name == "handlers":
                d = next((r.value for r in ast.walk(node) if isinstance(r, ast.Return)), None)
            if isinstance(d, ast.Dict):
                names |= {k.value for k in d.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return sorted(names - DESTRUCTIVE)


class LoopThread:
    """An event loop on a thread of its own, so hypothesis's synchronous tests can drive it."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def targets(cluster):
    ctx = skate.init(ignore_reinit_error=True)
    token = read_token(ctx["session_dir"])

    @skate.remote
    class Probe:
        def address(self):
            from skate.core_worker import context

            return context.current.address

    probe = Probe.remote()
    worker_address = skate.get(probe.address.remote(), timeout=60)
    found = {
        "gcs": ("tcp://" + ctx["address"], "gcs", "get_nodes"),
        "raylet": (ctx.address_info["raylet_socket_name"], "raylet", "node_info"),
        "worker": (worker_address, "core_worker", "object_table"),
    }
    lt = LoopThread()
    yield token, found, lt, probe
    lt.stop()


def _raw_socket(address: str) -> socket.socket:
    scheme, loc = parse_address(choose_address(address))
    if scheme == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(loc)
    else:
        host, port = loc.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    s.settimeout(2)
    return s


def _recv_frame(s: socket.socket) -> list:
    from skate.protocol.framing import FrameDecoder

    header = b""
    while len(header) < 4:
        chunk = s.recv(4 - len(header))
        if not chunk:
            raise ConnectionError("closed")
        header += chunk
    (n,) = struct.unpack("<I", header)
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return FrameDecoder().feed(header + body)[0]


def _drain_until_closed(s: socket.socket, seconds: float = 0.3) -> None:
    s.settimeout(seconds)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass


def _still_serving(token: bytes, address: str, method: str, lt: LoopThread) -> None:
    async def check():
        conn = await connect(address, token, timeout=10)
        try:
            return await asyncio.wait_for(conn.call(method, {}), 10)
        finally:
            conn.close()

    lt.run(check())


def _fuzz_settings(default: int):
    return settings(
        max_examples=EXAMPLES or default,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )


frames_before_auth = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=64).map(lambda b: struct.pack("<I", len(b) + 7) + b),  # truncated
    st.integers(4097, 2**32 - 1).map(lambda n: struct.pack("<I", n) + b"\x91\x01"),  # oversized
    values.map(pack_frame),  # well-formed but not a handshake
    st.tuples(st.sampled_from(["skate-auth", "skate-hello", "skate-ok"]), values, values).map(
        lambda t: pack_frame(list(t))
    ),
)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", ["gcs", "raylet", "worker"])
def test_garbage_before_authentication(targets, target):
    token, found, lt, _ = targets
    address, _, probe_method = found[target]

    @_fuzz_settings(25)
    @given(st.lists(frames_before_auth, min_size=1, max_size=3))
    def fuzz(chunks):
        with _raw_socket(address) as s:
            _recv_frame(s)  # the hello
            try:
                for chunk in chunks:
                    s.sendall(chunk)
            except OSError:
                pass  # closed on us: fine
            _drain_until_closed(s, 0.1)

    fuzz()
    _still_serving(token, address, probe_method, lt)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", ["gcs", "raylet", "worker"])
def test_every_handler_with_wrong_payloads_after_authentication(targets, target):
    token, found, lt, _ = targets
    address, subpackage, probe_method = found[target]
    methods = handler_names(subpackage)
    assert probe_method in methods or target == "worker", methods
    state: dict = {}

    async def ensure_conn():
        conn = state.get("conn")
        if conn is None or conn.closed:
            conn = state["conn"] = await connect(address, token, timeout=10)
        return conn

    async def one(method, payload, as_notify):
        conn = await ensure_conn()
        if as_notify:
            conn.notify(method, payload)
            return
        try:
            await asyncio.wait_for(conn.call(method, payload), 1.0)
        except Exception:
            pass  # a remote error or no answer is fine; a dead server is not (checked below)

    @_fuzz_settings(8 * len(methods))
    @given(st.sampled_from(methods), payloads, st.booleans())
    def fuzz(method, payload, as_notify):
        lt.run(one(method, payload, as_notify))

    fuzz()
    _still_serving(token, address, probe_method, lt)


raw_messages = st.one_of(
    values,
    st.tuples(st.sampled_from([REQUEST, RESPONSE, NOTIFY, 7, "x", None]), values, values, values).map(list),
    st.tuples(st.just(REQUEST), values, values | st.text(max_size=12), payloads).map(list),
    st.tuples(st.just(RESPONSE), values, values, values).map(list),
    st.tuples(st.just(NOTIFY), values | st.text(max_size=12), payloads).map(list),
)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", ["gcs", "raylet", "worker"])
def test_malformed_messages_after_authentication(targets, target):
    token, found, lt, _ = targets
    address, _, probe_method = found[target]

    @_fuzz_settings(30)
    @given(st.lists(raw_messages, min_size=1, max_size=4), st.binary(max_size=30))
    def fuzz(messages, tail):
        with _raw_socket(address) as s:
            hello = _recv_frame(s)
            nonce = os.urandom(NONCE_BYTES)
            s.sendall(pack_frame(["skate-auth", nonce, handshake_mac(token, "client", hello[1], nonce)]))
            assert _recv_frame(s)[0] == "skate-ok"
            try:
                for msg in messages:
                    try:
                        s.sendall(pack_frame(msg))
                    except (TypeError, ValueError, OverflowError):
                        continue  # not encodable: nothing to send
                s.sendall(tail)  # and a truncated or garbage frame after
            except OSError:
                pass
            _drain_until_closed(s, 0.1)

    fuzz()
    _still_serving(token, address, probe_method, lt)


def test_cluster_still_runs_tasks_after_the_fuzzing(targets):
    _, _, _, probe = targets

    @skate.remote
    def add(a, b):
        return a + b

    assert skate.get(add.remote(1, 2), timeout=60) == 3
    assert skate.get(probe.address.remote(), timeout=60)
