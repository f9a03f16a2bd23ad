"""The mutual handshake and the limits that hold before a peer is trusted.

Both sides must prove the cluster token (an impostor server is refused by the client), an
answer reflected or replayed fails, an unauthenticated peer may send only a small frame that
is never decoded when too large, idle handshakes are dropped, and a listener caps them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import pytest

from skate import _config
from skate.protocol import connection as connection_mod
from skate.protocol import framing
from skate.protocol.connection import NONCE_BYTES, ConnectionClosed, handshake_mac
from skate.protocol.framing import REQUEST, FrameDecoder, pack_frame
from skate.protocol.transport import connect, listen, parse_address

TOKEN = b"handshake-test-token"

pytestmark = pytest.mark.timeout(30)


def run(coro, timeout: float = 10.0):
    async def main():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


async def wait_until(predicate, timeout: float = 3.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def echo_server(**kwargs):
    calls: list = []
    opened: list = []
    closed: list = []

    def echo(conn, payload):
        calls.append(payload)
        return payload

    listener = await listen(
        kwargs.pop("address", "tcp://127.0.0.1:0"),
        TOKEN,
        {"echo": echo},
        on_connection=opened.append,
        on_close=closed.append,
        name="hs-test",
        **kwargs,
    )
    return listener, calls, opened, closed


def host_port(address: str) -> tuple[str, int]:
    _, loc = parse_address(address)
    host, port = loc.rsplit(":", 1)
    return host, int(port)


async def read_frame(reader) -> list:
    (n,) = struct.unpack("<I", await reader.readexactly(4))
    return FrameDecoder().feed(struct.pack("<I", n) + await reader.readexactly(n))[0]


async def closed_by_peer(reader, timeout: float = 3.0) -> bytes:
    """Read to EOF (fails if the peer keeps the connection past `timeout`)."""
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    except ConnectionResetError:
        return b""


# -- an impostor server ---------------------------------------------------------------------


class Impostor:
    """A TCP server without the token: greets like a real one and answers every proof with
    `answer(client_auth_frame)`; records every frame the client sends it."""

    def __init__(self, answer):
        self.answer = answer
        self.received: list = []
        self.server = None

    async def start(self) -> str:
        async def handle(reader, writer):
            writer.write(pack_frame(["skate-hello", os.urandom(NONCE_BYTES)]))
            try:
                while True:
                    frame = await read_frame(reader)
                    self.received.append(frame)
                    if frame[0] == "skate-auth":
                        writer.write(pack_frame(self.answer(frame)))
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return f"tcp://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.mark.parametrize(
    "answer",
    [
        lambda auth: ["skate-ok"],  # the old protocol's bare "ok"
        lambda auth: ["skate-ok", os.urandom(32)],  # a made-up proof
        lambda auth: ["skate-ok", b""],
        lambda auth: ["skate-ok", 12345],
    ],
    ids=["bare-ok", "random-proof", "empty-proof", "wrong-type"],
)
def test_client_refuses_an_impostor_server_that_answers_any_challenge(answer):
    async def main():
        impostor = Impostor(answer)
        addr = await impostor.start()
        with pytest.raises(ConnectionClosed, match="failed to prove|handshake"):
            await connect(addr, TOKEN, timeout=3)
        # The impostor got the client's proof and nothing else: no request ever left the client.
        assert [f[0] for f in impostor.received] == ["skate-auth"]
        impostor.server.close()

    run(main())


def test_client_refuses_its_own_proof_reflected_back_as_the_servers():
    async def main():
        impostor = Impostor(lambda auth: ["skate-ok", auth[2]])
        addr = await impostor.start()
        with pytest.raises(ConnectionClosed, match="failed to prove"):
            await connect(addr, TOKEN, timeout=3)
        assert [f[0] for f in impostor.received] == ["skate-auth"]
        impostor.server.close()

    run(main())


def test_server_refuses_a_server_proof_presented_as_a_client_proof():
    """Role binding: even with both nonces right, the server-role MAC is no client login."""

    async def main():
        listener, calls, opened, _ = await echo_server()
        reader, writer = await asyncio.open_connection(*host_port(listener.address))
        hello = await read_frame(reader)
        nonce = os.urandom(NONCE_BYTES)
        writer.write(pack_frame(["skate-auth", nonce, handshake_mac(TOKEN, "server", hello[1], nonce)]))
        writer.write(pack_frame([REQUEST, 1, "echo", "sneaky"]))
        data = await closed_by_peer(reader)
        assert b"skate-ok" not in data and b"sneaky" not in data
        assert calls == [] and not opened[0].authenticated
        writer.close()
        listener.close()

    run(main())


def test_server_refuses_a_proof_replayed_from_another_connection():
    async def main():
        listener, calls, opened, _ = await echo_server()
        hp = host_port(listener.address)
        r1, w1 = await asyncio.open_connection(*hp)
        r2, w2 = await asyncio.open_connection(*hp)
        hello1, _hello2 = await read_frame(r1), await read_frame(r2)
        nonce = os.urandom(NONCE_BYTES)
        proof1 = handshake_mac(TOKEN, "client", hello1[1], nonce)  # eavesdropped on connection 1
        w2.write(pack_frame(["skate-auth", nonce, proof1]))
        assert b"skate-ok" not in await closed_by_peer(r2)
        w1.write(pack_frame(["skate-auth", nonce, proof1]))  # where it belongs, it works
        ok = await read_frame(r1)
        assert ok[0] == "skate-ok"
        assert ok[1] == handshake_mac(TOKEN, "server", hello1[1], nonce)
        for w in (w1, w2):
            w.close()
        listener.close()

    run(main())


def test_real_client_and_server_authenticate_each_other_and_pipelined_frames_are_served():
    async def main():
        listener, calls, opened, _ = await echo_server()
        client = await connect(listener.address, TOKEN)
        assert client.authenticated and await client.call("echo", 5) == 5
        # A raw peer may send its first request in the same write as its proof.
        reader, writer = await asyncio.open_connection(*host_port(listener.address))
        hello = await read_frame(reader)
        nonce = os.urandom(NONCE_BYTES)
        big = "x" * (3 * _config.PREAUTH_MAX_FRAME_BYTES)  # large frames are fine once trusted
        writer.write(
            pack_frame(["skate-auth", nonce, handshake_mac(TOKEN, "client", hello[1], nonce)])
            + pack_frame([REQUEST, 7, "echo", big])
        )
        assert (await read_frame(reader))[0] == "skate-ok"
        assert await read_frame(reader) == [1, 7, None, big]
        writer.close()
        client.close()
        listener.close()

    run(main())


def test_a_wrong_token_on_either_side_fails_the_handshake():
    async def main():
        listener, *_ = await echo_server()
        with pytest.raises(ConnectionClosed, match="wrong cluster token"):
            await connect(listener.address, b"not-the-token")
        listener.close()

    run(main())


# -- limits before trust --------------------------------------------------------------------


def test_oversized_preauth_frame_closes_the_connection_without_decoding_it(monkeypatch):
    decoded: list = []
    real = framing._unpackb

    def counting(body):
        decoded.append(len(body))
        return real(body)

    monkeypatch.setattr(framing, "_unpackb", counting)

    async def main():
        listener, calls, opened, closed = await echo_server()
        hp = host_port(listener.address)
        good = await connect(listener.address, TOKEN)
        decoded.clear()
        for body_size in (_config.PREAUTH_MAX_FRAME_BYTES + 1, 4 * 1024 * 1024):
            reader, writer = await asyncio.open_connection(*hp)
            await read_frame(reader)
            decoded.clear()  # (reading the greeting decoded it here, in the test)
            # A header announcing the frame is enough: the body need not even arrive.
            writer.write(struct.pack("<I", body_size) + b"\x91" * 100)
            await closed_by_peer(reader)
            writer.close()
            assert decoded == []  # nothing from that peer was decoded
        await wait_until(lambda: len(closed) == 2)
        assert all("exceeds" in c.close_reason for c in closed)
        assert await good.call("echo", "still serving") == "still serving"
        good.close()
        listener.close()

    run(main())


def test_a_frame_at_the_preauth_limit_is_decoded_and_judged():
    async def main():
        listener, calls, opened, closed = await echo_server()
        reader, writer = await asyncio.open_connection(*host_port(listener.address))
        await read_frame(reader)
        body = pack_frame(["skate-auth", b"n" * (_config.PREAUTH_MAX_FRAME_BYTES - 64)])
        assert len(body) - 4 <= _config.PREAUTH_MAX_FRAME_BYTES
        writer.write(body)
        data = await closed_by_peer(reader)
        assert b"skate-denied" in data
        await wait_until(lambda: closed)
        assert "authentication failed" in closed[0].close_reason
        writer.close()
        listener.close()

    run(main())


def test_idle_unauthenticated_connections_are_dropped_after_the_timeout():
    async def main():
        listener, calls, opened, closed = await echo_server(handshake_timeout=0.3)
        hp = host_port(listener.address)
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection(*hp)
        await read_frame(reader)
        start = loop.time()
        await closed_by_peer(reader, timeout=5)
        assert 0.2 < loop.time() - start < 3
        await wait_until(lambda: closed)
        assert "no handshake within" in closed[0].close_reason
        # A peer that sends half a proof and stalls is dropped the same way.
        reader, writer2 = await asyncio.open_connection(*hp)
        await read_frame(reader)
        writer2.write(struct.pack("<I", 80) + b"\x93")
        await closed_by_peer(reader, timeout=5)
        # An authenticated connection is not subject to the timer.
        client = await connect(listener.address, TOKEN)
        await asyncio.sleep(0.6)
        assert await client.call("echo", 1) == 1
        for w in (writer, writer2):
            w.close()
        client.close()
        listener.close()

    run(main())


def test_default_handshake_timeout_and_preauth_limit_are_small():
    assert 0 < _config.HANDSHAKE_TIMEOUT <= 10
    assert _config.PREAUTH_MAX_FRAME_BYTES <= 16 * 1024
    assert connection_mod.NONCE_BYTES >= 16


def test_listener_caps_pending_unauthenticated_connections():
    async def main():
        listener, calls, opened, closed = await echo_server(max_pending=3)
        hp = host_port(listener.address)
        idle = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection(*hp)
            await read_frame(reader)  # greeted: pending
            idle.append((reader, writer))
        # The fourth is closed at once, without a greeting; so is a real client.
        reader, writer = await asyncio.open_connection(*hp)
        assert await closed_by_peer(reader) == b""
        writer.close()
        with pytest.raises((ConnectionClosed, ConnectionError, asyncio.IncompleteReadError)):
            await connect(listener.address, TOKEN, timeout=2)
        assert len(opened) == 3
        # Once one idle peer leaves, there is room again.
        idle[0][1].close()
        await wait_until(lambda: len(closed) >= 1)
        client = await connect(listener.address, TOKEN)
        assert await client.call("echo", "room") == "room"
        # Authenticated connections do not count against the cap.
        more = [await connect(listener.address, TOKEN) for _ in range(5)]
        assert all([await c.call("echo", i) == i for i, c in enumerate(more)])
        for _, w in idle[1:]:
            w.close()
        for c in [client, *more]:
            c.close()
        listener.close()

    run(main())


def test_nothing_is_sent_to_a_peer_before_it_authenticates():
    async def main():
        sent_early: list = []

        def on_connection(conn):
            conn.notify("hello-there", "secret-ish")  # queued, not sent, until the peer proves itself
            sent_early.append(conn)

        listener = await listen("tcp://127.0.0.1:0", TOKEN, {}, on_connection=on_connection)
        reader, writer = await asyncio.open_connection(*host_port(listener.address))
        hello = await read_frame(reader)
        assert hello[0] == "skate-hello"
        writer.write(pack_frame(["skate-auth", b"\x00" * NONCE_BYTES, b"\x00" * 32]))
        data = await closed_by_peer(reader)
        assert b"secret-ish" not in data and b"skate-denied" in data
        writer.close()
        # A peer that does authenticate gets the queued notification after the handshake.
        got = asyncio.Event()
        client = await connect(listener.address, TOKEN, {"hello-there": lambda c, p: got.set()})
        await asyncio.wait_for(got.wait(), 3)
        client.close()
        listener.close()

    run(main())


def test_unix_socket_handshake_with_a_blocking_client(tmp_path):
    """The same protocol from a plain blocking socket (what a foreign client would write)."""

    async def main():
        path = tmp_path / "h.sock"
        listener, calls, *_ = await echo_server(address=f"unix://{path}")

        def client():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(str(path))
                f = s.makefile("rb")
                dec = FrameDecoder()

                def frame():
                    header = f.read(4)
                    return dec.feed(header + f.read(struct.unpack("<I", header)[0]))[0]

                hello = frame()
                nonce = os.urandom(NONCE_BYTES)
                s.sendall(pack_frame(["skate-auth", nonce, handshake_mac(TOKEN, "client", hello[1], nonce)]))
                ok = frame()
                assert ok == ["skate-ok", handshake_mac(TOKEN, "server", hello[1], nonce)]
                s.sendall(pack_frame([REQUEST, 1, "echo", "blocking"]))
                return frame()

        assert await asyncio.get_running_loop().run_in_executor(None, client) == [1, 1, None, "blocking"]
        listener.close()

    run(main())
