"""A hostile or broken client on the cluster's sockets is dropped; the cluster carries on."""

from __future__ import annotations

import os
import socket
import stat
import struct
import time

import msgpack
import pytest

import skate


@skate.remote
def ping(x):
    return ("pong", x)


def _gcs_address() -> tuple[str, int]:
    ctx = skate.init(ignore_reinit_error=True)
    host, port = ctx["address"].rsplit(":", 1)
    return host, int(port)


def _raylet_path() -> str:
    ctx = skate.init(ignore_reinit_error=True)
    name = ctx.address_info["raylet_socket_name"].split("|")[0]  # "unix://...|tcp://..."
    assert name.startswith("unix://"), name
    return name[len("unix://") :]


def _frame(message) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    return struct.pack("<I", len(body)) + body


def _read_frame(sock: socket.socket, timeout: float = 5.0):
    sock.settimeout(timeout)
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        if not chunk:
            raise ConnectionError("closed before a frame")
        header += chunk
    (length,) = struct.unpack("<I", header)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            raise ConnectionError("closed inside a frame")
        body += chunk
    return msgpack.unpackb(body, raw=False)


def _closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> tuple[bool, bytes]:
    """Read until EOF; (True, data) if the peer closed within the timeout."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True, data
        except TimeoutError:
            return False, data
        if not chunk:
            return True, data
        data += chunk
    return False, data


def _connect_gcs() -> socket.socket:
    return socket.create_connection(_gcs_address(), timeout=5)


def _connect_raylet() -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(_raylet_path())
    return s


def _assert_cluster_works() -> None:
    assert skate.get(ping.remote(7), timeout=30) == ("pong", 7)
    assert len(skate.nodes()) == 1 and skate.nodes()[0]["Alive"]


CONNECTORS = {"gcs": _connect_gcs, "raylet": _connect_raylet}


@pytest.mark.parametrize("target", sorted(CONNECTORS))
def test_server_greets_with_a_nonce(cluster, target):
    with CONNECTORS[target]() as s:
        hello = _read_frame(s)
        assert isinstance(hello, list) and len(hello) == 2
        assert isinstance(hello[1], bytes) and len(hello[1]) >= 16
    with CONNECTORS[target]() as s2:
        assert _read_frame(s2)[1] != hello[1]  # a fresh nonce per connection


@pytest.mark.parametrize("target", sorted(CONNECTORS))
def test_garbage_gets_disconnected(cluster, target):
    with CONNECTORS[target]() as s:
        _read_frame(s)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(64))
        closed, data = _closed_by_peer(s)
        assert closed, "server kept a connection that sent garbage"
    _assert_cluster_works()


@pytest.mark.parametrize("target", sorted(CONNECTORS))
def test_malformed_msgpack_gets_disconnected(cluster, target):
    with CONNECTORS[target]() as s:
        _read_frame(s)
        s.sendall(struct.pack("<I", 5) + b"\xc1\xc1\xc1\xc1\xc1")  # 0xc1 is never valid msgpack
        closed, _ = _closed_by_peer(s)
        assert closed
    _assert_cluster_works()


@pytest.mark.parametrize("target", sorted(CONNECTORS))
def test_wrong_hmac_gets_disconnected(cluster, target):
    with CONNECTORS[target]() as s:
        tag, nonce = _read_frame(s)
        s.sendall(_frame(["skate-auth", b"\x00" * 32]))
        closed, data = _closed_by_peer(s)
        assert closed, "a wrong HMAC was accepted"
        assert b"skate-ok" not in data
    _assert_cluster_works()


def test_hmac_with_the_wrong_key_gets_disconnected(cluster):
    import hashlib
    import hmac

    with _connect_gcs() as s:
        _, nonce = _read_frame(s)
        s.sendall(_frame(["skate-auth", hmac.new(b"not-the-token", nonce, hashlib.sha256).digest()]))
        closed, data = _closed_by_peer(s)
        assert closed and b"skate-ok" not in data
    _assert_cluster_works()


@pytest.mark.parametrize("target", sorted(CONNECTORS))
def test_request_without_handshake_is_not_served(cluster, target):
    with CONNECTORS[target]() as s:
        _read_frame(s)
        s.sendall(_frame([0, 1, "get_nodes", None]) + _frame([0, 2, "shutdown", None]))
        closed, data = _closed_by_peer(s)
        assert closed
        assert b"node_id" not in data  # no node table leaked
    _assert_cluster_works()  # and the shutdown request was not obeyed


def test_oversized_frame_header_gets_disconnected(cluster):
    with _connect_gcs() as s:
        _read_frame(s)
        s.sendall(struct.pack("<I", 0xFFFFFFFF) + b"x" * 16)
        closed, _ = _closed_by_peer(s)
        assert closed
    _assert_cluster_works()


def test_idle_and_half_open_clients_do_not_block_the_cluster(cluster):
    idle = [_connect_gcs() for _ in range(5)]
    half = _connect_gcs()
    try:
        _read_frame(half)
        half.sendall(struct.pack("<I", 100) + b"partial")  # a frame that never completes
        _assert_cluster_works()
    finally:
        for s in idle + [half]:
            s.close()


def test_connection_storm(cluster):
    for _ in range(50):
        with socket.create_connection(_gcs_address(), timeout=5) as s:
            s.sendall(os.urandom(32))
    _assert_cluster_works()


def test_token_file_is_private(cluster):
    session_dir = skate.init(ignore_reinit_error=True)["session_dir"]
    path = os.path.join(session_dir, "token")
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert st.st_uid == os.getuid()
    with open(path, "rb") as f:
        assert len(f.read().strip()) >= 32


def test_gcs_listens_on_loopback_only(cluster):
    host, _ = _gcs_address()
    assert host in ("127.0.0.1", "localhost", "::1")
