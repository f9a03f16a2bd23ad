"""Authenticated RPC connections over the inproc, unix and tcp transports."""

from __future__ import annotations

import asyncio
import os
import struct

import pytest

from skate.exceptions import RaySystemError
from skate.protocol import transport
from skate.protocol.connection import Connection, ConnectionClosed, RemoteError, handshake_mac
from skate.protocol.framing import NOTIFY, REQUEST, FrameDecoder, pack_frame
from skate.protocol.transport import connect, listen, parse_address

TOKEN = b"secret-token"


def run(coro, timeout: float = 3.0):
    """Run a test coroutine; a hang fails quickly instead of waiting for the suite timeout."""

    async def main():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


class Server:
    """A listener with a few handlers that records what happened."""

    def __init__(self):
        self.calls: list = []
        self.notes: list = []
        self.note_event: asyncio.Event | None = None
        self.opened: list[Connection] = []
        self.closed: list[Connection] = []
        self.block = None  # an Event a 'block' request waits on
        self.listener = None

    def handlers(self):
        def echo(conn, payload):
            self.calls.append(("echo", payload))
            return payload

        async def aecho(conn, payload):
            await asyncio.sleep(0)
            self.calls.append(("aecho", payload))
            return {"got": payload}

        def fail(conn, payload):
            raise ValueError(f"bad value {payload}")

        async def afail(conn, payload):
            await asyncio.sleep(0)
            raise KeyError("missing")

        async def block(conn, payload):
            self.block = asyncio.Event()
            await self.block.wait()
            return "unblocked"

        def note(conn, payload):
            self.notes.append(payload)
            if self.note_event is not None:
                self.note_event.set()

        async def sleepy(conn, payload):
            await asyncio.sleep(payload["delay"])
            return payload["i"]

        def unpackable(conn, payload):
            return object()  # the wire cannot encode it

        async def aunpackable(conn, payload):
            await asyncio.sleep(0)
            return object()

        async def callback(conn, payload):
            # Call back into the client over the same connection.
            return await conn.call("client_method", payload)

        return {
            "echo": echo,
            "aecho": aecho,
            "fail": fail,
            "afail": afail,
            "block": block,
            "note": note,
            "sleepy": sleepy,
            "unpackable": unpackable,
            "aunpackable": aunpackable,
            "callback": callback,
        }

    async def start(self, address: str = "inproc://"):
        self.note_event = asyncio.Event()
        self.listener = await listen(
            address,
            TOKEN,
            self.handlers(),
            on_connection=self.opened.append,
            on_close=self.closed.append,
            name="test-server",
        )
        return self.listener.address


async def wait_until(predicate, timeout: float = 1.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


class RawProtocol(asyncio.Protocol):
    """A hand-driven peer for the inproc backend: sees frames, writes whatever it likes."""

    def __init__(self):
        self.transport = None
        self.decoder = FrameDecoder()
        self.frames: list = []
        self.lost = asyncio.get_event_loop().create_future()

    def connection_made(self, t):
        self.transport = t

    def data_received(self, data):
        self.frames.extend(self.decoder.feed(data))

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


async def raw_inproc_peer(address: str) -> RawProtocol:
    scheme, loc = parse_address(address)
    assert scheme == "inproc"
    raw = RawProtocol()
    await transport.BACKENDS["inproc"].connect(loc, raw)
    await wait_until(lambda: raw.frames)  # the server's hello
    return raw


def auth_frame(token: bytes, hello) -> bytes:
    """The connecting side's answer to a hello: a fresh nonce and its proof of the token."""
    assert hello[0] == "skate-hello"
    client_nonce = os.urandom(32)
    return pack_frame(["skate-auth", client_nonce, handshake_mac(token, "client", hello[1], client_nonce)])


# -- parse_address and schemes --------------------------------------------------------------


def test_parse_address():
    assert parse_address("127.0.0.1:6379") == ("tcp", "127.0.0.1:6379")
    assert parse_address("tcp://host:1") == ("tcp", "host:1")
    assert parse_address("unix:///tmp/x.sock") == ("unix", "/tmp/x.sock")
    assert parse_address("inproc://name") == ("inproc", "name")


def test_unknown_scheme_raises_value_error():
    async def main():
        with pytest.raises(ValueError, match="bogus"):
            await listen("bogus://x", TOKEN, {})
        with pytest.raises(ValueError, match="bogus"):
            await connect("bogus://x", TOKEN)

    run(main())


def test_tcp_address_without_port_raises_value_error():
    async def main():
        with pytest.raises(ValueError):
            await connect("tcp://localhost", TOKEN)

    run(main())


def test_connect_to_missing_inproc_listener_is_refused():
    async def main():
        with pytest.raises(ConnectionRefusedError):
            await connect("inproc://nobody-listens-here", TOKEN)

    run(main())


def test_closed_inproc_listener_refuses_new_connections():
    async def main():
        srv = Server()
        addr = await srv.start()
        srv.listener.close()
        with pytest.raises(ConnectionRefusedError):
            await connect(addr, TOKEN)

    run(main())


# -- requests and notifications -------------------------------------------------------------


def test_connect_and_sync_request():
    async def main():
        srv = Server()
        addr = await srv.start()
        assert addr.startswith("inproc://")
        client = await connect(addr, TOKEN)
        assert client.authenticated
        assert await client.call("echo", {"a": [1, 2], "b": b"\x00"}) == {"a": [1, 2], "b": b"\x00"}
        assert srv.calls == [("echo", {"a": [1, 2], "b": b"\x00"})]
        assert len(srv.opened) == 1 and srv.opened[0].authenticated
        client.close()
        srv.listener.close()

    run(main())


def test_async_handler():
    async def main():
        srv = Server()
        client = await connect(await srv.start(), TOKEN)
        assert await client.call("aecho", 7) == {"got": 7}
        assert srv.calls == [("aecho", 7)]
        client.close()

    run(main())


def test_concurrent_requests_resolve_to_their_own_replies():
    async def main():
        srv = Server()
        client = await connect(await srv.start(), TOKEN)
        # Replies come back in a different order than the requests went out.
        delays = [0.001 * ((i * 7) % 10) for i in range(40)]
        futs = [client.call("sleepy", {"i": i, "delay": d}) for i, d in enumerate(delays)]
        assert await asyncio.gather(*futs) == list(range(40))
        client.close()

    run(main())


def test_notification_reaches_handler():
    async def main():
        srv = Server()
        client = await connect(await srv.start(), TOKEN)
        client.notify("note", {"n": 1})
        client.notify("missing-handler", None)  # ignored, not an error
        client.notify("note", {"n": 2})
        await wait_until(lambda: len(srv.notes) == 2)
        assert srv.notes == [{"n": 1}, {"n": 2}]
        assert await client.call("echo", "still fine") == "still fine"
        client.close()

    run(main())


def test_server_can_call_and_notify_the_client():
    async def main():
        srv = Server()
        got = []

        def client_method(conn, payload):
            got.append(payload)
            return payload * 2

        client = await connect(
            await srv.start(), TOKEN, {"client_method": client_method, "cnote": client_method}
        )
        assert await client.call("callback", 21) == 42
        srv.opened[0].notify("cnote", 5)
        await wait_until(lambda: len(got) == 2)
        assert got == [21, 5]
        client.close()

    run(main())


def test_handler_exception_becomes_remote_error_and_connection_survives():
    async def main():
        srv = Server()
        client = await connect(await srv.start(), TOKEN)
        with pytest.raises(RemoteError) as info:
            await client.call("fail", 3)
        assert info.value.kind == "ValueError"
        assert "bad value 3" in str(info.value)
        assert isinstance(info.value, RaySystemError)
        assert not client.closed
        assert await client.call("echo", 1) == 1
        client.close()

    run(main())


def test_async_handler_exception_becomes_remote_error():
    async def main():
        srv = Server()
        client = await connect(await srv.start(), TOKEN)
        with pytest.raises(RemoteError) as info:
            await client.call("afail")
        assert info.value.kind == "KeyError"
        assert "missing" in str(info.value)
        assert await client.call("aecho", 2) == {"got": 2}
        client.close()

    run(main())


def test_unknown_method_is_a_remote_error():
    async def main():
        srv = Server()
        client = await connect(await srv.start(), TOKEN)
        with pytest.raises(RemoteError) as info:
            await client.call("no_such_method", None)
        assert info.value.kind == "UnknownMethod"
        assert "no_such_method" in str(info.value)
        assert await client.call("echo", "ok") == "ok"
        client.close()

    run(main())


def test_sync_handler_returning_unencodable_value_gives_remote_error():
    async def main():
        srv = Server()
        client = await connect(await srv.start(), TOKEN)
        with pytest.raises(RemoteError):
            await client.call("unpackable")
        # The handler's mistake is not the client's protocol violation: the connection stays up.
        assert not client.closed
        assert await client.call("echo", "ok") == "ok"
        client.close()

    run(main())


def test_async_handler_returning_unencodable_value_gives_remote_error():
    async def main():
        srv = Server()
        client = await connect(await srv.start(), TOKEN)
        with pytest.raises(RemoteError):
            await asyncio.wait_for(client.call("aunpackable"), 0.3)
        assert await client.call("echo", "ok") == "ok"
        client.close()

    run(main())


# -- authentication -------------------------------------------------------------------------


def test_wrong_token_fails_and_server_keeps_serving():
    async def main():
        srv = Server()
        addr = await srv.start()
        with pytest.raises(ConnectionClosed):
            await connect(addr, b"wrong-token")
        await wait_until(lambda: len(srv.closed) == 1)
        assert not srv.closed[0].authenticated
        assert "authentication" in srv.closed[0].close_reason
        good = await connect(addr, TOKEN)
        assert await good.call("echo", "hi") == "hi"
        assert srv.calls == [("echo", "hi")]
        good.close()

    run(main())


def test_request_before_authenticating_closes_the_connection():
    async def main():
        srv = Server()
        addr = await srv.start()
        raw = await raw_inproc_peer(addr)
        assert raw.frames[0][0] == "skate-hello"
        raw.transport.write(pack_frame([REQUEST, 1, "echo", "sneaky"]))
        await asyncio.wait_for(raw.lost, 1.0)
        assert srv.calls == []  # the handler never ran
        assert len(raw.frames) == 1  # and no reply was sent
        assert srv.opened[0].closed
        good = await connect(addr, TOKEN)
        assert await good.call("echo", 1) == 1
        good.close()

    run(main())


def test_short_auth_frame_closes_the_connection():
    async def main():
        srv = Server()
        addr = await srv.start()
        raw = await raw_inproc_peer(addr)
        raw.transport.write(pack_frame(["skate-auth"]))  # the digest is missing
        await asyncio.wait_for(raw.lost, 0.3)
        assert srv.opened[0].closed
        assert not srv.opened[0].authenticated

    run(main())


def test_replayed_digest_for_another_nonce_is_rejected():
    async def main():
        srv = Server()
        addr = await srv.start()
        first = await raw_inproc_peer(addr)
        second = await raw_inproc_peer(addr)
        assert first.frames[0][1] != second.frames[0][1]  # fresh nonce per connection
        # Answer the second connection with the digest of the first one's nonce.
        second.transport.write(auth_frame(TOKEN, first.frames[0]))
        await asyncio.wait_for(second.lost, 1.0)
        assert not srv.opened[1].authenticated
        first.transport.write(auth_frame(TOKEN, first.frames[0]))
        await wait_until(lambda: len(first.frames) == 2)
        assert first.frames[1][0] == "skate-ok"
        assert srv.opened[0].authenticated and not srv.opened[0].closed

    run(main())


def test_bad_message_after_authentication_closes_only_that_connection():
    async def main():
        srv = Server()
        addr = await srv.start()
        good = await connect(addr, TOKEN)
        raw = await raw_inproc_peer(addr)
        raw.transport.write(auth_frame(TOKEN, raw.frames[0]))
        await wait_until(lambda: len(raw.frames) == 2)
        raw.transport.write(pack_frame([99, "unknown kind"]))
        await asyncio.wait_for(raw.lost, 1.0)
        assert srv.opened[1].closed
        assert not srv.opened[0].closed
        assert await good.call("echo", "fine") == "fine"
        good.close()

    run(main())


def test_authenticated_raw_peer_request_and_notify():
    async def main():
        srv = Server()
        raw = await raw_inproc_peer(await srv.start())
        raw.transport.write(auth_frame(TOKEN, raw.frames[0]))
        raw.transport.write(pack_frame([REQUEST, 5, "echo", "x"]) + pack_frame([NOTIFY, "note", "y"]))
        await wait_until(lambda: len(raw.frames) == 3)
        assert raw.frames[1][0] == "skate-ok"
        assert raw.frames[2] == [1, 5, None, "x"]  # RESPONSE, same id, no error
        assert srv.notes == ["y"]

    run(main())


# -- closing --------------------------------------------------------------------------------


def test_close_fails_pending_calls():
    async def main():
        srv = Server()
        client = await connect(await srv.start(), TOKEN)
        fut = client.call("block")
        await wait_until(lambda: srv.block is not None)
        client.close()
        with pytest.raises(ConnectionClosed):
            await fut
        assert client.closed
        with pytest.raises(ConnectionClosed):
            await client.call("echo", 1)
        client.notify("note", 1)  # silently dropped
        await wait_until(lambda: len(srv.closed) == 1)
        assert srv.notes == []

    run(main())


def test_server_side_close_fails_client_pending_calls_and_runs_on_close():
    async def main():
        srv = Server()
        closed = []
        client = await connect(await srv.start(), TOKEN, on_close=closed.append)
        fut = client.call("block")
        await wait_until(lambda: srv.block is not None)
        srv.opened[0].close("test says so")
        with pytest.raises(ConnectionClosed):
            await fut
        await wait_until(lambda: closed == [client])
        assert client.closed

    run(main())


def test_close_is_idempotent_and_on_close_runs_once():
    async def main():
        srv = Server()
        closed = []
        client = await connect(await srv.start(), TOKEN, on_close=closed.append)
        client.close("first")
        client.close("second")
        await asyncio.sleep(0.01)
        assert closed == [client]
        assert client.close_reason == "first"

    run(main())


# -- real sockets ---------------------------------------------------------------------------


async def _read_frame(reader) -> list:
    (n,) = struct.unpack("<I", await reader.readexactly(4))
    return FrameDecoder().feed(struct.pack("<I", n) + await reader.readexactly(n))


async def _expect_eof(reader) -> None:
    try:
        data = await asyncio.wait_for(reader.read(), 2.0)
    except ConnectionResetError:
        return
    assert data == b""


def test_unix_socket_garbage_closes_only_that_connection(tmp_path):
    async def main():
        srv = Server()
        path = tmp_path / "s.sock"
        addr = await srv.start(f"unix://{path}")
        assert addr == f"unix://{path}"
        good = await connect(addr, TOKEN)
        assert await good.call("echo", 1) == 1

        reader, writer = await asyncio.open_unix_connection(str(path))
        [hello] = await _read_frame(reader)
        assert hello[0] == "skate-hello"
        writer.write(struct.pack("<I", 6) + b"\xc1\xc1garbage")  # malformed msgpack body
        await _expect_eof(reader)
        writer.close()

        await wait_until(lambda: len(srv.closed) == 1)
        assert "malformed" in srv.closed[0].close_reason
        assert await good.call("aecho", 2) == {"got": 2}
        another = await connect(addr, TOKEN)
        assert await another.call("echo", 3) == 3
        good.close()
        another.close()
        srv.listener.close()
        assert not path.exists()

    run(main())


def test_tcp_oversized_header_closes_only_that_connection():
    async def main():
        srv = Server()
        addr = await srv.start("tcp://127.0.0.1:0")
        scheme, loc = parse_address(addr)
        host, port = loc.rsplit(":", 1)
        assert scheme == "tcp" and host == "127.0.0.1" and int(port) > 0
        good = await connect(addr, TOKEN)

        # One peer that never authenticates, one that does; both send an oversized header.
        for authenticate in (False, True):
            reader, writer = await asyncio.open_connection(host, int(port))
            [hello] = await _read_frame(reader)
            if authenticate:
                writer.write(auth_frame(TOKEN, hello))
                [[ok, _proof]] = await _read_frame(reader)
                assert ok == "skate-ok"
            writer.write(b"\xff\xff\xff\xff" + b"x" * 16)
            await _expect_eof(reader)
            writer.close()

        await wait_until(lambda: len(srv.closed) == 2)
        assert all("exceeds" in c.close_reason for c in srv.closed)
        assert not good.closed
        assert await good.call("echo", "still here") == "still here"
        good.close()
        srv.listener.close()

    run(main())


def test_tcp_bare_host_port_address():
    async def main():
        srv = Server()
        addr = await srv.start("127.0.0.1:0")
        assert addr.startswith("tcp://127.0.0.1:")
        client = await connect(addr.removeprefix("tcp://"), TOKEN)
        assert await client.call("echo", [1, 2]) == [1, 2]
        client.close()
        srv.listener.close()

    run(main())


def test_a_write_from_a_foreign_thread_raises_when_checking(monkeypatch):
    """SKATE_DEBUG_THREADS=1: only the loop's thread may write to a connection."""
    import threading

    from skate.protocol import connection as connection_module

    monkeypatch.setattr(connection_module, "CHECK_THREADS", True)

    async def main():
        srv = Server()
        client = await connect(await srv.start(), TOKEN)
        errors: list[BaseException] = []

        def from_thread() -> None:
            try:
                client.notify("echo", "x")
            except RuntimeError as exc:
                errors.append(exc)

        t = threading.Thread(target=from_thread)
        t.start()
        t.join(5)
        assert errors and "not its event loop" in str(errors[0])
        assert await client.call("echo", "ok") == "ok"  # the loop's own thread may
        client.close()

    run(main())
