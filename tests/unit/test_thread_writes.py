"""Thread-safe sends on a connection: `send_threadsafe`, `call_threadsafe` and `defer()`.

A connection made with thread_writes lets another thread write a frame to the socket itself
when nothing else waits to go out; otherwise (a busy connection, a partial write, TLS, an
in-process transport) the frame is queued for the loop. These tests check what a peer sees:
whole frames, in order, and replies matched to their requests, over real Unix and TCP sockets.
"""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from skate.protocol import connection as connection_module
from skate.protocol import tls
from skate.protocol.connection import Connection, DeferredReply, RemoteError
from skate.protocol.transport import connect, listen
from tests.tls_certs import use_test_tls

TOKEN = b"thread-writes-token"


def run(coro, timeout: float = 10.0):
    async def main():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


class Peer:
    """A listener recording the notes it gets, per sender, and replying to requests either at
    once or, for 'later', through a DeferredReply another thread sends."""

    def __init__(self) -> None:
        self.notes: list = []
        self.deferred: list[DeferredReply] = []
        self.got_deferred = threading.Event()
        self.conns: list[Connection] = []
        self.note_count = 0
        self.enough = asyncio.Event()
        self.expect = 0

    def handlers(self) -> dict:
        def note(conn, payload):
            self.notes.append(payload)
            if len(self.notes) >= self.expect:
                self.enough.set()

        def echo(conn, payload):
            return payload

        def later(conn, payload):
            reply = conn.defer()
            self.deferred.append(reply)
            self.got_deferred.set()
            return reply

        return {"note": note, "echo": echo, "later": later}

    async def start(self, address: str, thread_writes: bool = True) -> str:
        listener = await listen(
            address, TOKEN, self.handlers(), on_connection=self.conns.append, thread_writes=thread_writes
        )
        self.listener = listener
        return listener.address


def _note_frame(payload) -> bytes:
    from skate.protocol.framing import NOTIFY, pack_frame

    return pack_frame([NOTIFY, "note", payload])


@pytest.fixture(params=["unix", "tcp"])
def address(request, tmp_path):
    if request.param == "unix":
        return f"unix://{tmp_path}/s.sock"
    return "tcp://127.0.0.1:0"


def test_frames_from_many_threads_arrive_whole_and_in_each_threads_order(address):
    """Four threads each send 300 notes while the loop sends its own: every note arrives,
    none is torn, and each sender's notes arrive in the order it sent them."""

    async def main():
        peer = Peer()
        threads_n, per_thread = 4, 300
        peer.expect = threads_n * per_thread + 100
        client = await connect(await peer.start(address), TOKEN, thread_writes=True)
        assert client._wfd >= 0  # a plain socket: threads may write it themselves

        def sender(k: int) -> None:
            for i in range(per_thread):
                client.send_threadsafe(_note_frame([k, i, "x" * (i % 50)]))

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(threads_n)]
        for t in threads:
            t.start()
        for i in range(100):  # the loop's own sends, interleaved
            client.notify("note", ["loop", i, ""])
            await asyncio.sleep(0)
        await asyncio.get_running_loop().run_in_executor(None, lambda: [t.join(10) for t in threads])
        await asyncio.wait_for(peer.enough.wait(), 10)
        by_sender: dict = {}
        for sender_id, i, pad in peer.notes:
            by_sender.setdefault(sender_id, []).append(i)
            assert pad == "x" * (i % 50) or sender_id == "loop"
        assert sorted(by_sender, key=str) == sorted([*range(threads_n), "loop"], key=str)
        for sender_id, seq in by_sender.items():
            assert seq == sorted(seq), f"sender {sender_id} out of order"
            assert len(seq) == (100 if sender_id == "loop" else per_thread)
        client.close()
        peer.listener.close()

    run(main())


def test_a_frame_larger_than_the_socket_buffer_is_finished_by_the_loop(address):
    """A thread's write that the socket takes only in part: the rest goes out through the
    loop, before any frame sent after it, so the peer sees both frames whole, in order."""

    async def main():
        peer = Peer()
        peer.expect = 2
        client = await connect(await peer.start(address), TOKEN, thread_writes=True)
        big = "y" * (8 << 20)  # far more than a socket buffer takes at once

        def sender() -> None:
            client.send_threadsafe(_note_frame(["big", big]))
            client.send_threadsafe(_note_frame(["after", ""]))

        await asyncio.get_running_loop().run_in_executor(None, sender)
        await asyncio.wait_for(peer.enough.wait(), 10)
        assert [n[0] for n in peer.notes] == ["big", "after"]
        assert peer.notes[0][1] == big
        client.close()
        peer.listener.close()

    run(main())


def test_call_threadsafe_resolves_on_the_loop_and_refuses_a_closed_connection(address):
    async def main():
        peer = Peer()
        client = await connect(await peer.start(address), TOKEN, thread_writes=True)
        loop = asyncio.get_running_loop()
        futs = await loop.run_in_executor(
            None, lambda: [client.call_threadsafe("echo", i) for i in range(50)]
        )
        assert await asyncio.gather(*futs) == list(range(50))
        # Ids are shared with the loop's own calls: mixing both never crosses replies.
        mixed = [client.call("echo", "loop")]
        mixed += await loop.run_in_executor(None, lambda: [client.call_threadsafe("echo", "thread")])
        assert await asyncio.gather(*mixed) == ["loop", "thread"]
        client.close()
        assert await loop.run_in_executor(None, client.call_threadsafe, "echo", 1) is None
        peer.listener.close()

    run(main())


def test_a_deferred_reply_is_sent_by_another_thread_once(address):
    async def main():
        peer = Peer()
        client = await connect(await peer.start(address), TOKEN, thread_writes=True)
        loop = asyncio.get_running_loop()
        first = client.call("later", None)
        second = client.call("later", None)
        await loop.run_in_executor(None, peer.got_deferred.wait, 5)
        await asyncio.sleep(0.05)
        assert len(peer.deferred) == 2 and not first.done()

        def reply() -> None:
            peer.deferred[0].send({"value": 1})
            peer.deferred[0].send({"value": 2})  # a second reply is dropped
            peer.deferred[1].fail(KeyError("nope"))

        await loop.run_in_executor(None, reply)
        assert await first == {"value": 1}
        with pytest.raises(RemoteError) as info:
            await second
        assert info.value.kind == "KeyError"
        assert await client.call("echo", "still fine") == "still fine"
        client.close()
        peer.listener.close()

    run(main())


def test_the_connections_own_descriptor_is_closed_with_it(address):
    """Each thread_writes connection holds one more descriptor while open, none after."""

    async def main():
        peer = Peer()
        addr = await peer.start(address)
        await asyncio.sleep(0)
        before = len(os.listdir("/proc/self/fd"))
        clients = [await connect(addr, TOKEN, thread_writes=True) for _ in range(5)]
        assert all(c._wfd >= 0 for c in clients)
        for c in clients:
            c.close()
        for c in peer.conns:
            c.close()
        await asyncio.sleep(0.1)  # the loop closes its sockets on its next turns
        assert all(c._wfd == -1 for c in clients + peer.conns)
        assert len(os.listdir("/proc/self/fd")) == before
        peer.listener.close()

    run(main())


def test_without_thread_writes_every_frame_goes_through_the_loop(monkeypatch, address):
    """Connections not made for it, and SKATE_THREAD_WRITES=0, never write from a thread:
    frames still arrive, sent by the loop."""

    async def main():
        peer = Peer()
        peer.expect = 40
        addr = await peer.start(address)
        plain = await connect(addr, TOKEN)
        assert plain._wfd == -1
        monkeypatch.setattr(connection_module, "THREAD_WRITES", False)
        direct = await connect(addr, TOKEN, thread_writes=True)
        writes: list = []
        real_write = os.write
        monkeypatch.setattr(os, "write", lambda fd, data: writes.append(fd) or real_write(fd, data))

        def sender() -> None:
            for i in range(20):
                plain.send_threadsafe(_note_frame(["plain", i]))
                direct.send_threadsafe(_note_frame(["direct", i]))

        await asyncio.get_running_loop().run_in_executor(None, sender)
        await asyncio.wait_for(peer.enough.wait(), 10)
        assert direct._wfd >= 0 and direct._wfd not in writes
        assert [i for k, i in peer.notes if k == "plain"] == list(range(20))
        assert [i for k, i in peer.notes if k == "direct"] == list(range(20))
        plain.close()
        direct.close()
        peer.listener.close()

    run(main())


def test_a_thread_writes_the_socket_itself_when_the_connection_is_idle(monkeypatch, address):
    """The point of the path: an idle connection's frame is written by the sending thread."""

    async def main():
        peer = Peer()
        peer.expect = 1
        client = await connect(await peer.start(address), TOKEN, thread_writes=True)
        writers: list = []
        real_write = os.write

        def spy(fd, data):
            if fd == client._wfd:
                writers.append(threading.current_thread().name)
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", spy)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: client.send_threadsafe(_note_frame(["one", 1]))
        )
        await asyncio.wait_for(peer.enough.wait(), 10)
        assert writers and writers[0] != threading.current_thread().name
        client.close()
        peer.listener.close()

    run(main())


def test_tls_connections_never_write_from_a_thread(monkeypatch, tmp_path):
    """With TLS the session lives in the loop's SSL object: a thread's frames are queued for
    the loop, and still arrive whole and in order."""
    use_test_tls(tmp_path, monkeypatch)

    async def main():
        peer = Peer()
        peer.expect = 30
        client = await connect(await peer.start("tcp://127.0.0.1:0"), TOKEN, thread_writes=True)
        assert client._wfd == -1
        futs = await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: (
                [client.send_threadsafe(_note_frame(["tls", i])) for i in range(30)]
                + [client.call_threadsafe("echo", "over tls")]
            ),
        )
        await asyncio.wait_for(peer.enough.wait(), 10)
        assert [i for _, i in peer.notes] == list(range(30))
        assert await futs[-1] == "over tls"
        client.close()
        peer.listener.close()

    try:
        run(main())
    finally:
        tls._context.cache_clear()


def test_a_failed_direct_write_closes_the_connection(monkeypatch, address):
    """An error the read side may never see (no buffer space): the connection closes, so the
    request fails instead of waiting forever."""
    import errno

    from skate.protocol.connection import ConnectionClosed

    async def main():
        peer = Peer()
        client = await connect(await peer.start(address), TOKEN, thread_writes=True)

        def no_buffers(fd, data):
            raise OSError(errno.ENOBUFS, "No buffer space available")

        monkeypatch.setattr(os, "write", no_buffers)
        fut = await asyncio.get_running_loop().run_in_executor(None, client.call_threadsafe, "echo", 1)
        assert fut is not None
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(fut, 5)
        assert client.closed and "write failed" in client.close_reason
        peer.listener.close()

    run(main())


def test_a_plain_connection_refuses_calls_from_other_threads(address):
    """Without thread_writes only the loop's thread sends: call_threadsafe from another thread
    returns None (the caller takes its usual path), from the loop's thread it sends."""

    async def main():
        peer = Peer()
        client = await connect(await peer.start(address), TOKEN)
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, client.call_threadsafe, "echo", 1) is None
        fut = client.call_threadsafe("echo", 2)
        assert fut is not None and await fut == 2
        client.close()
        peer.listener.close()

    run(main())


def test_on_done_runs_as_the_response_is_read_and_its_error_stays_there(address):
    """call_threadsafe's on_done runs within the read of its response (no loop iteration in
    between, so nothing the loop runs meanwhile comes first); an on_done that raises is logged
    and the connection goes on."""

    async def main():
        peer = Peer()
        client = await connect(await peer.start(address), TOKEN, thread_writes=True)
        loop = asyncio.get_running_loop()
        seen: list = []
        arrived = asyncio.Event()

        def on_done(fut):
            seen.append(("done", fut.result()))
            arrived.set()

        def boom(fut):
            raise RuntimeError("a caller's bug")

        real = client._on_response

        def on_response(req_id, error, payload):
            real(req_id, error, payload)
            seen.append(("read", payload))

        client._on_response = on_response  # type: ignore[method-assign]
        await loop.run_in_executor(None, client.call_threadsafe, "echo", "x", on_done)
        await asyncio.wait_for(arrived.wait(), 5)
        assert seen == [("done", "x"), ("read", "x")]  # ran inside the read, not after it
        await loop.run_in_executor(None, client.call_threadsafe, "echo", "y", boom)
        assert await client.call("echo", "still open") == "still open" and not client.closed
        assert not client._on_done  # nothing left behind
        peer.listener.close()

    run(main())


def test_on_done_of_a_call_cut_by_a_close_gets_the_failed_future(address):
    from skate.protocol.connection import ConnectionClosed

    async def main():
        peer = Peer()
        client = await connect(await peer.start(address), TOKEN, thread_writes=True)
        loop = asyncio.get_running_loop()
        got: asyncio.Future = loop.create_future()
        fut = await loop.run_in_executor(
            None, client.call_threadsafe, "later", None, lambda f: got.set_result(f.exception())
        )
        await loop.run_in_executor(None, peer.got_deferred.wait, 5)
        client.close()
        assert isinstance(await asyncio.wait_for(got, 5), ConnectionClosed) and fut.done()
        peer.listener.close()

    run(main())
