"""Transports behind one small interface, chosen by address scheme.

    tcp://host:port     TCP (a bare host:port means tcp)
    unix:///path        a Unix domain socket, for processes on one node
    inproc://name       in-process, for tests: no sockets, same framing and handshake
    a|b                 alternatives: a server reachable both ways publishes both, and
                        `connect` takes the Unix socket when it exists on this machine

`listen(address, ...)` returns a Listener; `connect(address, ...)` returns an authenticated
Connection. New schemes register a Backend in BACKENDS.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from skate import _config
from skate.protocol.connection import Connection, Handler
from skate.protocol.tls import client_context, server_context

if TYPE_CHECKING:  # imported only where a recorder is used (the GCS, the raylet)
    from skate.protocol.latency import LatencyRecorder

logger = logging.getLogger(__name__)


def choose_address(address: str) -> str:
    """Pick one of several addresses joined by '|': a Unix socket when it exists on this
    machine (the peer is local), else the first network address."""
    if "|" not in address:
        return address
    options = address.split("|")
    # SKATE_NO_UNIX_SOCKETS=1 forces TCP even between processes of one machine (benchmarks).
    for option in [] if os.environ.get("SKATE_NO_UNIX_SOCKETS") == "1" else options:
        scheme, loc = parse_address(option)
        if scheme == "unix" and os.path.exists(loc):
            return option
    for option in options:
        if parse_address(option)[0] != "unix":
            return option
    return options[0]


def parse_address(address: str) -> tuple[str, str]:
    """Split an address into (scheme, location); a bare 'host:port' is TCP."""
    if "://" in address:
        scheme, _, loc = address.partition("://")
        return scheme, loc
    return "tcp", address


def _split_host_port(loc: str) -> tuple[str, int]:
    host, sep, port = loc.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {loc!r} is not of the form host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


class Listener:
    def __init__(self, address: str, closer: Callable[[], None]):
        self.address = address
        self._closer = closer

    def close(self) -> None:
        self._closer()


# Accept errors that mean "out of descriptors or memory for now": wait and try again.
_TRANSIENT_ACCEPT_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# Accept errors about one connection (the peer gave up before it was accepted): skip it.
_SKIP_ACCEPT_ERRORS = {errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN}


async def accept_forever(
    server: socket.socket,
    handle: Callable[[socket.socket], Any],
    *,
    name: str = "",
    backoff: tuple[float, float] = (0.05, 1.0),
) -> None:
    """Accept connections on a non-blocking listening socket and hand each to `handle`
    (which may return a coroutine, run as a task) until the socket is closed.

    Running out of file descriptors (EMFILE, ENFILE) or kernel memory does not end the loop:
    it logs once per episode, waits (doubling from backoff[0] up to backoff[1] seconds) and
    tries again, so the server serves again as soon as descriptors are free.
    """
    loop = asyncio.get_running_loop()
    delay = backoff[0]
    failing = False
    while True:
        try:
            sock, _ = await loop.sock_accept(server)
        except OSError as exc:
            if exc.errno in _SKIP_ACCEPT_ERRORS and server.fileno() >= 0:
                continue
            if exc.errno not in _TRANSIENT_ACCEPT_ERRORS or server.fileno() < 0:
                return  # the listening socket was closed (or is broken for good)
            if not failing:
                failing = True
                logger.warning(
                    "%s: cannot accept connections (%s); retrying until descriptors are free",
                    name or "listener",
                    os.strerror(exc.errno or 0),
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, backoff[1])
            continue
        except asyncio.CancelledError:
            raise
        if failing:
            failing = False
            delay = backoff[0]
            logger.warning("%s: accepting connections again", name or "listener")
        result = handle(sock)
        if asyncio.iscoroutine(result):
            loop.create_task(result)


class _Refused(asyncio.Protocol):
    """Stands in for a Connection the listener will not take: closes the socket at once."""

    def connection_made(self, transport) -> None:
        transport.close()

    def data_received(self, data: bytes) -> None:
        pass


class PendingLimit:
    """Counts a listener's connections that have not authenticated yet and refuses more
    than `cap` of them, so idle or slow peers cannot hold every socket and descriptor."""

    def __init__(self, cap: int, name: str) -> None:
        self.cap = cap
        self.name = name
        self.pending: set[Connection] = set()
        self.refused = 0
        self._last_warning = 0.0

    def admit(self, conn: Connection) -> bool:
        if len(self.pending) >= self.cap:
            self.refused += 1
            now = time.monotonic()
            if now - self._last_warning > 10.0:  # one line per burst, not one per socket
                self._last_warning = now
                logger.warning(
                    "listener %s: %d connections have not authenticated yet (the cap); "
                    "refusing new ones (%d refused so far)",
                    self.name,
                    self.cap,
                    self.refused,
                )
            return False
        self.pending.add(conn)
        conn.ready.add_done_callback(lambda _f: self.pending.discard(conn))
        # A TLS handshake that fails never reaches the Connection (no connection_made, no
        # connection_lost): forget such an entry once any handshake would have timed out.
        asyncio.get_running_loop().call_later(2 * _config.HANDSHAKE_TIMEOUT + 1, self._forget_unstarted, conn)
        return True

    def _forget_unstarted(self, conn: Connection) -> None:
        if conn._transport is None:
            self.pending.discard(conn)


class Backend:
    async def listen(self, loc: str, factory: Callable[[], asyncio.Protocol]) -> Listener:
        raise NotImplementedError

    async def connect(self, loc: str, conn: Connection) -> None:
        raise NotImplementedError


class TCPBackend(Backend):
    async def listen(self, loc, factory):
        host, port = _split_host_port(loc)
        ctx = server_context()
        server = await asyncio.get_running_loop().create_server(
            factory,
            host,
            port,
            reuse_address=True,
            ssl=ctx,
            ssl_handshake_timeout=_config.HANDSHAKE_TIMEOUT if ctx is not None else None,
        )
        real_port = server.sockets[0].getsockname()[1]
        return Listener(f"tcp://{host}:{real_port}", server.close)

    async def connect(self, loc, conn):
        host, port = _split_host_port(loc)
        ctx = client_context()
        transport, _ = await asyncio.get_running_loop().create_connection(
            lambda: conn, host, port, ssl=ctx, server_hostname=host if ctx is not None else None
        )
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class UnixBackend(Backend):
    async def listen(self, loc, factory):
        if os.path.exists(loc):
            os.unlink(loc)
        server = await asyncio.get_running_loop().create_unix_server(factory, loc)

        def close():
            server.close()
            try:
                os.unlink(loc)
            except OSError:
                pass

        return Listener(f"unix://{loc}", close)

    async def connect(self, loc, conn):
        await asyncio.get_running_loop().create_unix_connection(lambda: conn, loc)


class _InprocTransport(asyncio.Transport):
    """Delivers written bytes to the peer protocol on the next loop iteration."""

    def __init__(self, loop: asyncio.AbstractEventLoop, peer_protocol_getter: Callable[[], Any]) -> None:
        super().__init__()
        self._loop = loop
        self._peer = peer_protocol_getter
        self._closed = False
        self.other: _InprocTransport | None = None
        self.protocol: asyncio.Protocol | None = None

    def write(self, data):
        if not self._closed:
            self._loop.call_soon(self._peer().data_received, bytes(data))

    def close(self):
        if self._closed:
            return
        self._closed = True
        if self.protocol is not None:
            self._loop.call_soon(self.protocol.connection_lost, None)
        if self.other is not None and not self.other._closed:
            self.other.close()

    def is_closing(self):
        return self._closed

    def get_extra_info(self, name, default=None):
        return "inproc" if name == "peername" else default


class InprocBackend(Backend):
    """In-process pairs, for tests of components without sockets."""

    _listeners: dict[str, Callable[[], asyncio.Protocol]] = {}
    _ids = itertools.count()

    async def listen(self, loc, factory):
        if not loc:
            loc = f"anon-{next(self._ids)}"
        self._listeners[loc] = factory

        def close() -> None:
            self._listeners.pop(loc, None)

        return Listener(f"inproc://{loc}", close)

    async def connect(self, loc, conn):
        factory = self._listeners.get(loc)
        if factory is None:
            raise ConnectionRefusedError(f"no in-process listener at {loc!r}")
        loop = asyncio.get_running_loop()
        server_conn = factory()
        client_t = _InprocTransport(loop, lambda: server_conn)
        server_t = _InprocTransport(loop, lambda: conn)
        client_t.protocol, server_t.protocol = conn, server_conn
        client_t.other, server_t.other = server_t, client_t
        conn.connection_made(client_t)
        server_conn.connection_made(server_t)


BACKENDS: dict[str, Backend] = {"tcp": TCPBackend(), "unix": UnixBackend(), "inproc": InprocBackend()}


def _backend(scheme: str) -> Backend:
    try:
        return BACKENDS[scheme]
    except KeyError:
        raise ValueError(f"unknown address scheme {scheme!r}; known: {sorted(BACKENDS)}") from None


def _new_connection(recorder: LatencyRecorder | None, *args: Any, **kwargs: Any) -> Connection:
    """A plain Connection, or a TimedConnection when a recorder is given."""
    if recorder is None:
        return Connection(*args, **kwargs)
    from skate.protocol.latency import TimedConnection

    return TimedConnection(*args, recorder=recorder, **kwargs)


async def listen(
    address: str,
    token: bytes,
    handlers: dict[str, Handler],
    *,
    on_connection: Callable[[Connection], None] | None = None,
    on_close: Callable[[Connection], None] | None = None,
    name: str = "",
    handshake_timeout: float | None = None,
    max_pending: int | None = None,
    recorder: LatencyRecorder | None = None,
    thread_writes: bool = False,
) -> Listener:
    """Accept connections at `address`; each must authenticate with `token`.

    At most `max_pending` (default MAX_PENDING_CONNECTIONS) connections may be in the
    handshake at once; further ones are closed as soon as they are accepted. With a
    `recorder`, each request's handler time is recorded in it (`latency.TimedConnection`).
    `thread_writes`: other threads may write to the socket themselves (`Connection.defer`,
    `call_threadsafe`), at the cost of one more descriptor per connection.
    """
    scheme, loc = parse_address(address)
    limit = PendingLimit(_config.MAX_PENDING_CONNECTIONS if max_pending is None else max_pending, name)

    def factory() -> asyncio.Protocol:
        conn = _new_connection(
            recorder,
            token,
            handlers,
            server_side=True,
            on_close=on_close,
            name=name,
            handshake_timeout=handshake_timeout,
            thread_writes=thread_writes,
        )
        if not limit.admit(conn):
            return _Refused()
        if on_connection is not None:
            on_connection(conn)
        return conn

    return await _backend(scheme).listen(loc, factory)


async def connect(
    address: str,
    token: bytes,
    handlers: dict[str, Handler] | None = None,
    *,
    on_close: Callable[[Connection], None] | None = None,
    name: str = "",
    timeout: float = 10.0,
    recorder: LatencyRecorder | None = None,
    thread_writes: bool = False,
) -> Connection:
    """Open a connection to `address` (or the best of 'a|b' alternatives) once both sides have
    proved the token; a server that cannot prove it is refused (ConnectionClosed). With a
    `recorder`, the peer's requests on it are timed (see `listen`)."""
    address = choose_address(address)
    scheme, loc = parse_address(address)
    conn = _new_connection(
        recorder,
        token,
        handlers or {},
        server_side=False,
        on_close=on_close,
        name=name or address,
        handshake_timeout=timeout,
        thread_writes=thread_writes,
    )
    await asyncio.wait_for(_backend(scheme).connect(loc, conn), timeout)
    await asyncio.wait_for(conn.ready, timeout)
    return conn
