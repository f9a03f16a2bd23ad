"""An authenticated connection's socket moves to another owner (SCM_RIGHTS) right after a
reply, and the peer goes on with the new owner without noticing; what cannot move stays."""

from __future__ import annotations

import asyncio
import os

import pytest

from skate.protocol.connection import ReplyThen
from skate.protocol.handoff import adopt, channel_pair, receive_sockets, send_socket
from skate.protocol.transport import connect, listen

TOKEN = b"handoff-test-token"


def _run(coro, timeout: float = 20.0):
    async def main():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.timeout(30)
@pytest.mark.parametrize("scheme", ["tcp://127.0.0.1:0", "unix"])
def test_the_socket_moves_after_the_reply_and_the_peer_goes_on(scheme, tmp_path):
    async def main():
        send_end, receive_end = channel_pair()
        receive_end.setblocking(False)
        adopted: asyncio.Queue = asyncio.Queue()
        detached = []

        def hand_over(conn):
            own_fd = conn.transport.get_extra_info("socket").fileno()
            sock = conn.detach_socket()
            detached.extend([own_fd, sock.fileno()])
            send_socket(send_end, sock)

        first_owner = {"hello": lambda c, p: ReplyThen("hello from the first owner", hand_over)}
        second_owner = {"who": lambda c, p: f"the second owner, {p}"}
        address = scheme if scheme != "unix" else f"unix://{tmp_path}/s.sock"
        listener = await listen(address, TOKEN, first_owner)
        client = await connect(listener.address, TOKEN)
        assert await client.call("hello") == "hello from the first owner"
        await asyncio.sleep(0)  # the first owner's transport finishes closing its descriptor
        await asyncio.sleep(0)
        assert len(detached) == 2
        assert not any(map(_is_open, detached))  # the first owner kept no descriptor of it

        loop = asyncio.get_running_loop()
        loop.add_reader(receive_end.fileno(), lambda: adopted.put_nowait(receive_sockets(receive_end)))
        (tag, sock), *_ = (await adopted.get())[0]
        assert tag == b"client"
        server_side = await adopt(sock, TOKEN, second_owner)
        assert await client.call("who", "no handshake again") == "the second owner, no handshake again"

        closed = asyncio.Event()
        client._on_close = lambda c: closed.set()
        server_side.close("the new owner goes")  # it held the only descriptor: the peer sees it
        await asyncio.wait_for(closed.wait(), 5)
        loop.remove_reader(receive_end.fileno())
        send_end.close()
        assert receive_sockets(receive_end) == ([], True)
        receive_end.close()
        listener.close()

    _run(main())


@pytest.mark.timeout(30)
def test_an_in_process_connection_stays():
    async def main():
        outcome = []
        handlers = {"hello": lambda c, p: ReplyThen("hi", lambda conn: outcome.append(conn.detach_socket()))}
        listener = await listen("inproc://", TOKEN, handlers)
        client = await connect(listener.address, TOKEN)
        assert await client.call("hello") == "hi"
        assert outcome == [None]
        assert await client.call("hello") == "hi"  # nothing was touched: still served
        client.close()
        listener.close()

    _run(main())
