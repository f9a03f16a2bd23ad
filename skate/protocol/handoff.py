"""Moving an authenticated connection's socket to another process (SCM_RIGHTS).

The client server authenticates a client, answers its `connect`, and then gives the client's
socket to that client's proxy process, which serves it from then on as if it had accepted it
(`adopt`): the server is out of the data path. The two processes share a private channel, a
Unix SOCK_SEQPACKET socket pair made when the server starts the proxy (`channel_pair`), and
each message on it is one descriptor with a short tag. The sender closes its descriptor once it
is sent, so the receiver holds the only one: when the receiver dies, the peer sees the
connection close.

Only plain sockets move (`Connection.detach_socket` says which): a TLS session's state lives
in the SSL object of the process that made it, so TLS connections stay with it (relayed).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from skate.protocol.connection import Connection, Handler

_MAX_TAG = 256


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(sending end, receiving end) of a handoff channel; the receiving end goes to the child
    (Popen's pass_fds), and the parent closes its copy of it once the child has started."""
    send_end, receive_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    send_end.setblocking(False)  # a message is a few bytes: it never waits, or fails
    return send_end, receive_end


def send_socket(channel: socket.socket, sock: socket.socket, tag: bytes = b"client") -> None:
    """Send `sock` over `channel` and close it here (OSError if the receiver is gone)."""
    try:
        socket.send_fds(channel, [tag], [sock.fileno()])
    finally:
        sock.close()


def receive_sockets(channel: socket.socket) -> tuple[list[tuple[bytes, socket.socket]], bool]:
    """Every socket waiting on a non-blocking `channel`, with its tag, and whether the sender
    has closed its end."""
    out: list[tuple[bytes, socket.socket]] = []
    while True:
        try:
            tag, fds, _flags, _addr = socket.recv_fds(channel, _MAX_TAG, 4)
        except (BlockingIOError, InterruptedError):
            return out, False
        except OSError:
            return out, True
        if not tag and not fds:
            return out, True
        socks = [socket.socket(fileno=fd) for fd in fds]
        out.extend((tag, s) for s in socks)


async def adopt(
    sock: socket.socket,
    token: bytes,
    handlers: dict[str, Handler],
    *,
    on_close: Callable[[Connection], None] | None = None,
    name: str = "",
) -> Connection:
    """Serve a socket another process authenticated: an accepting-side Connection that skips
    the handshake (it was made, with the cluster token, before the socket was handed over)."""
    conn = Connection(token, handlers, server_side=True, on_close=on_close, name=name, preauthenticated=True)
    await asyncio.get_running_loop().connect_accepted_socket(lambda: conn, sock)
    return conn
