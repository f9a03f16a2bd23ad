"""One authenticated, framed, bidirectional RPC connection.

Either side may send requests and notifications. Both sides prove they hold the cluster token
before anything else is read or sent (a mutual challenge-response, see `_mac`):

    accepting side  -> [HELLO, server_nonce]
    connecting side -> [AUTH, client_nonce, mac("client", server_nonce, client_nonce)]
    accepting side  -> [OK, mac("server", server_nonce, client_nonce)]   or [DENIED, reason]

Each MAC covers both fresh nonces and the sender's role, so an answer replayed from another
connection or reflected back at its sender fails. Until the handshake is done a frame may be at
most PREAUTH_MAX_FRAME_BYTES, checked from its header before the body is decoded, and the
handshake must finish within HANDSHAKE_TIMEOUT seconds. Any protocol violation closes this
connection only.
Writes made during one event-loop iteration are coalesced into one socket write.

A connection belongs to the thread running its event loop: `call`, `notify` and `send_raw`
must happen there (with SKATE_DEBUG_THREADS=1 a send from another thread raises at once instead
of corrupting the stream later). Other threads hand work over with `loop.call_soon_threadsafe`
(the core worker's `post`), or use the thread-safe pair below.

Thread-safe sends (`call_threadsafe`, and `defer()` for a reply another thread sends): a
connection made with `thread_writes=True` keeps its own duplicate of the socket's descriptor,
and a thread with a frame to send writes it to the socket itself when nothing else is waiting
to go out (no frames queued here, none in the transport's buffer). That saves the wake-up of
the loop's thread, which on a synchronous call is a fifth of its latency. A partial write or
a busy connection queues the rest here for the loop, in order. One lock (`_wlock`) orders
every write to the socket, the loop's and other threads'; TLS transports never write directly.
A connection made without thread_writes takes no lock at all: its thread-safe sends hop to
the loop (`call_soon_threadsafe`), so its loop-side paths stay as cheap as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import os
import pickle
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from skate import _config
from skate.exceptions import ProtocolError, RaySystemError
from skate.protocol.framing import (
    HEADER_SIZE,
    NOTIFY,
    REQUEST,
    RESPONSE,
    FrameDecoder,
    pack_frame,
    pack_large_frame,
    unpack_body,
)
from skate.protocol.messages import ErrorInfo

logger = logging.getLogger(__name__)

Handler = Callable[["Connection", Any], Any]

_HELLO = "skate-hello"
_AUTH = "skate-auth"
_OK = "skate-ok"
_DENIED = "skate-denied"
NONCE_BYTES = 32
_MAC_CONTEXT = b"skate-handshake-v2\0"


_NO_LOCK = contextlib.nullcontext()  # stands in for a plain connection's absent write lock
CHECK_THREADS = os.environ.get("SKATE_DEBUG_THREADS", "0") not in ("", "0", "false")
# SKATE_THREAD_WRITES=0: threads never write to sockets themselves (every frame goes through
# the loop), to rule the direct path out when chasing a problem, or to measure what it saves.
THREAD_WRITES = os.environ.get("SKATE_THREAD_WRITES", "1") not in ("", "0", "false")


class RemoteError(RaySystemError):
    """A request failed on the remote side.

    `kind` is the remote exception's type name, `message` its text, `cause` the exception
    itself when it crossed the wire intact (re-raise it to give the caller the same type),
    and `remote_traceback` where it was raised.
    """

    def __init__(
        self, kind: str, message: str, cause: BaseException | None = None, remote_traceback: str | None = None
    ):
        self.kind = kind
        self.message = message
        self.cause = cause
        self.remote_traceback = remote_traceback
        super().__init__(f"{kind}: {message}")

    @classmethod
    def from_info(cls, info: list) -> RemoteError:
        err = ErrorInfo(*info)
        cause = None
        if err.pickled is not None:
            try:
                cause = pickle.loads(err.pickled)
            except Exception:
                cause = None
        return cls(err.type_name, err.message, cause, err.traceback)


def error_info(exc: BaseException) -> ErrorInfo:
    """The wire form of a handler's exception: its type, text, pickle and traceback."""
    try:
        pickled: bytes | None = pickle.dumps(exc)
    except Exception:
        pickled = None
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ErrorInfo(type(exc).__name__, str(exc), pickled, tb)


class ConnectionClosed(RaySystemError):
    """The connection closed before a reply arrived."""


def handshake_mac(token: bytes, role: str, server_nonce: bytes, client_nonce: bytes) -> bytes:
    """HMAC-SHA256 with the cluster token over the sender's role and both nonces.

    The nonces have a fixed length, so the concatenation is unambiguous; the role keeps a
    client's proof from being reflected back as a server's (and the reverse).
    """
    msg = _MAC_CONTEXT + role.encode() + b"\0" + server_nonce + client_nonce
    return hmac.new(token, msg, hashlib.sha256).digest()


def _is_nonce(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) == NONCE_BYTES


class Replier(Protocol):
    """Where a `DeferredReply` goes: a connection, or a worker's lane (`core_worker.lanes`)."""

    def reply_any_thread(self, req_id: int, error: Any, payload: Any) -> None: ...


class DeferredReply:
    """The reply to one request, sent later by whoever holds this (any thread): a handler
    returns `conn.defer()` instead of a value or a future. At most one reply is sent."""

    __slots__ = ("conn", "req_id", "sent")

    def __init__(self, conn: Replier, req_id: int) -> None:
        self.conn = conn
        self.req_id = req_id
        self.sent = False

    def send(self, value: Any) -> None:
        if not self.sent:
            self.sent = True
            self.conn.reply_any_thread(self.req_id, None, value)

    def fail(self, exc: BaseException) -> None:
        if not self.sent:
            self.sent = True
            self.conn.reply_any_thread(self.req_id, error_info(exc), None)


class ReplyThen:
    """A handler's reply plus what to do right after it is written, before this process reads
    anything more from the peer (the client server hands a socket over then)."""

    __slots__ = ("then", "value")

    def __init__(self, value: Any, then: Callable[[Connection], None]):
        self.value = value
        self.then = then


class Connection(asyncio.Protocol):
    """A framed connection; `handlers` maps method names to callables (sync or async)."""

    def __init__(
        self,
        token: bytes,
        handlers: dict[str, Handler],
        *,
        server_side: bool,
        on_close: Callable[[Connection], None] | None = None,
        name: str = "",
        handshake_timeout: float | None = None,
        preauthenticated: bool = False,
        thread_writes: bool = False,
    ) -> None:
        self._token = token
        self.handlers = handlers
        self._server_side = server_side
        self._on_close = on_close
        self.name = name
        self._decoder = FrameDecoder()
        self._transport: Any = None
        self._loop = asyncio.get_event_loop()
        self._loop_thread = threading.get_ident()
        self._out: list[bytes | bytearray] = []
        self._flush_scheduled = False
        # Orders writes to the socket between the loop's thread and others (see the module
        # docstring); reentrant, since closing may happen inside a flush.
        self._wlock: Any = threading.RLock() if thread_writes else None
        self._wfd = -1  # this connection's own duplicate of the socket, for direct writes
        self._request_now = 0  # the id of the request whose handler runs now (for defer())
        self._next_id = 1
        self._pending: dict[int, asyncio.Future] = {}
        # requests' on_done by request id (see `_register`)
        self._on_done: dict[int, Callable[[asyncio.Future], None]] = {}
        self._server_nonce = b""
        self._client_nonce = b""
        self._preauth = bytearray()  # bytes received before the handshake finished
        self._handshake_timeout = (
            _config.HANDSHAKE_TIMEOUT if handshake_timeout is None else handshake_timeout
        )
        self._handshake_timer: asyncio.TimerHandle | None = None
        self.authenticated = False
        self.write_paused = False  # the transport's buffer is over the high-water mark
        self._reading_paused = False
        self.ready: asyncio.Future = self._loop.create_future()
        self.closed = False
        self.close_reason = ""
        self.peer_info: dict = {}  # filled by handlers: who is on the other side
        # When set, every byte received after it is handed to it undecoded (a relay such as
        # the client server's; see `relay.FrameRelay`).
        self.relay: Callable[[bytes], None] | None = None
        if preauthenticated:  # a socket another process authenticated and handed over
            self.authenticated = True
            self.ready.set_result(True)

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self._transport = transport
        if self._wlock is not None:  # made with thread_writes
            self._wfd = _own_descriptor(transport)
        try:
            transport.set_write_buffer_limits(_config.WRITE_HIGH_WATER_BYTES, _config.WRITE_LOW_WATER_BYTES)
        except (AttributeError, NotImplementedError):  # in-process transports have no buffer
            pass
        if self.authenticated:  # adopted after a handshake made elsewhere
            return
        if self._handshake_timeout > 0:
            self._handshake_timer = self._loop.call_later(self._handshake_timeout, self._handshake_expired)
        if self._server_side:
            self._server_nonce = os.urandom(NONCE_BYTES)
            self._write_now(pack_frame([_HELLO, self._server_nonce]))

    def data_received(self, data: bytes) -> None:
        if not self.authenticated:
            data = self._preauth_received(data)
            if not data:
                return
        if self.relay is not None:
            self.relay(data)
            return
        try:
            messages = self._decoder.feed(data)
        except ProtocolError as exc:
            self._violation(str(exc))
            return
        for msg in messages:
            if self.closed:
                return
            try:
                kind = msg[0]
                if kind == RESPONSE:
                    self._on_response(msg[1], msg[2], msg[3])
                elif kind == REQUEST:
                    self._on_request(msg[1], msg[2], msg[3])
                elif kind == NOTIFY:
                    self._on_notify(msg[1], msg[2])
                else:
                    raise ProtocolError(f"unknown message kind {kind!r}")
            except (ProtocolError, IndexError, TypeError, KeyError) as exc:
                self._violation(f"bad message: {exc!r}")
                return

    def connection_lost(self, exc) -> None:
        self._mark_closed(str(exc) if exc else "closed by peer")

    # -- backpressure (called by the transport) -------------------------------------------
    def pause_writing(self) -> None:
        """The peer is slower than we write: an accepting side stops reading it (no new
        requests, so no new replies) until the buffer drains. A connecting side keeps
        reading, so two processes never both wait for the other to read."""
        self.write_paused = True
        if self._server_side and not self._reading_paused:
            try:
                self._transport.pause_reading()
                self._reading_paused = True
            except (AttributeError, NotImplementedError, RuntimeError):
                pass

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._reading_paused:
            self._reading_paused = False
            try:
                self._transport.resume_reading()
            except (AttributeError, NotImplementedError, RuntimeError):
                pass

    # -- handshake --------------------------------------------------------------------
    def _preauth_received(self, data: bytes) -> bytes:
        """Handle handshake frames one at a time; returns the bytes that follow a finished
        handshake (for the normal decoder), or b"" while it is still going on.

        A frame's length is checked against PREAUTH_MAX_FRAME_BYTES before its body is even
        buffered in full, so an unauthenticated peer costs at most a few KiB.
        """
        buf = self._preauth
        buf += data
        limit = _config.PREAUTH_MAX_FRAME_BYTES
        while not self.closed and not self.authenticated and len(buf) >= HEADER_SIZE:
            length = int.from_bytes(buf[:HEADER_SIZE], "little")
            if length > limit:
                self._violation(f"handshake frame of {length} bytes exceeds the limit of {limit}")
                return b""
            if len(buf) < HEADER_SIZE + length:
                return b""
            try:
                msg = unpack_body(bytes(buf[HEADER_SIZE : HEADER_SIZE + length]))
            except ProtocolError as exc:
                self._violation(str(exc))
                return b""
            del buf[: HEADER_SIZE + length]
            self._handshake(msg)
        if self.closed or not self.authenticated:
            return b""
        rest = bytes(buf)
        self._preauth = bytearray()
        return rest

    def _handshake(self, msg) -> None:
        if not isinstance(msg, list) or not msg or not isinstance(msg[0], str):
            self._violation("malformed handshake frame")
            return
        tag = msg[0]
        if self._server_side:
            self._server_handshake(tag, msg)
        else:
            self._client_handshake(tag, msg)

    def _server_handshake(self, tag: str, msg: list) -> None:
        if (
            tag == _AUTH
            and len(msg) == 3
            and _is_nonce(msg[1])
            and isinstance(msg[2], bytes)
            and hmac.compare_digest(msg[2], handshake_mac(self._token, "client", self._server_nonce, msg[1]))
        ):
            self._client_nonce = msg[1]
            proof = handshake_mac(self._token, "server", self._server_nonce, self._client_nonce)
            self._write_now(pack_frame([_OK, proof]))
            self._authenticated()
            return
        # Tell the peer why before closing: it holds a wrong cluster token.
        self._write_now(pack_frame([_DENIED, "authentication failed: wrong cluster token"]))
        self._violation("authentication failed")

    def _client_handshake(self, tag: str, msg: list) -> None:
        if tag == _HELLO and len(msg) == 2 and _is_nonce(msg[1]) and not self._client_nonce:
            self._server_nonce = msg[1]
            self._client_nonce = os.urandom(NONCE_BYTES)
            proof = handshake_mac(self._token, "client", self._server_nonce, self._client_nonce)
            self._write_now(pack_frame([_AUTH, self._client_nonce, proof]))
        elif tag == _DENIED:
            self._violation(str(msg[1]) if len(msg) > 1 else "authentication denied")
        elif (
            tag == _OK
            and self._client_nonce
            and len(msg) == 2
            and isinstance(msg[1], bytes)
            and hmac.compare_digest(
                msg[1], handshake_mac(self._token, "server", self._server_nonce, self._client_nonce)
            )
        ):
            self._authenticated()
        elif tag == _OK:
            self._violation("the server failed to prove it holds the cluster token (impostor?)")
        else:
            self._violation("unexpected handshake frame")

    def _authenticated(self) -> None:
        self.authenticated = True
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        if not self.ready.done():
            self.ready.set_result(True)
        if self._out and not self._flush_scheduled:  # frames queued while the handshake ran
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if not self.authenticated:
            self._violation(f"no handshake within {self._handshake_timeout} s")

    def _violation(self, reason: str) -> None:
        peer = None
        try:
            peer = self._transport.get_extra_info("peername")
        except Exception:
            pass
        logger.warning("closing connection %s (peer %s): %s", self.name, peer, reason)
        self.close(reason)

    # -- dispatch ---------------------------------------------------------------------
    def _on_response(self, req_id: int, error, payload) -> None:
        fut = self._pending.pop(req_id, None)
        on_done = self._on_done.pop(req_id, None) if self._on_done else None
        if fut is None or fut.done():
            return
        if error is not None:
            try:
                fut.set_exception(RemoteError.from_info(error))
            except Exception:
                raise ProtocolError(f"malformed error in response {req_id}") from None
        else:
            fut.set_result(payload)
        if on_done is not None:
            _run_callback(on_done, fut)

    def _on_request(self, req_id: int, method: str, payload) -> None:
        handler = self.handlers.get(method)
        if handler is None:
            self._reply(req_id, ErrorInfo("UnknownMethod", f"no method {method!r}"), None)
            return
        self._request_now = req_id
        try:
            result = handler(self, payload)
        except Exception as exc:
            logger.debug("handler %s failed", method, exc_info=True)
            self._reply(req_id, error_info(exc), None)
            return
        if type(result) is DeferredReply:
            return  # whoever holds it replies
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            task = asyncio.ensure_future(result)
            task.add_done_callback(functools.partial(self._reply_from_task, req_id))
        else:
            self._reply(req_id, None, result)

    def _reply_from_task(self, req_id: int, task: asyncio.Future) -> None:
        if task.cancelled():
            self._reply(req_id, ErrorInfo("Cancelled", "request cancelled"), None)
            return
        exc = task.exception()
        if exc is not None:
            self._reply(req_id, error_info(exc), None)
        else:
            self._reply(req_id, None, task.result())

    def _reply(self, req_id: int, error, payload) -> None:
        if self.closed:
            return
        then = None
        if isinstance(payload, ReplyThen):
            payload, then = payload.value, payload.then
        self.send_raw(reply_frame(req_id, error, payload))
        if then is not None:
            self._flush()  # the reply is on its way before `then` runs, and nothing read since
            then(self)

    def defer(self) -> DeferredReply:
        """In a request handler: the reply to this request, to be sent later by any thread.
        The handler returns it; the reply goes out when its `send` or `fail` is called."""
        return DeferredReply(self, self._request_now)

    def reply_any_thread(self, req_id: int, error: Any, payload: Any) -> None:
        """Send a response from any thread (what a `DeferredReply` calls)."""
        if threading.get_ident() == self._loop_thread:
            self._reply(req_id, error, payload)
        else:
            self.send_threadsafe(reply_frame(req_id, error, payload))

    def _on_notify(self, method: str, payload) -> None:
        handler = self.handlers.get(method)
        if handler is None:
            logger.debug("no handler for notification %r on %s", method, self.name)
            return
        try:
            result = handler(self, payload)
            if asyncio.iscoroutine(result):
                asyncio.ensure_future(result)
        except Exception:
            logger.exception("notification handler %s failed", method)

    # -- sending ----------------------------------------------------------------------
    def call(
        self,
        method: str,
        payload: Any = None,
        *,
        large: bool = False,
        on_done: Callable[[asyncio.Future], None] | None = None,
    ) -> asyncio.Future:
        """Send a request; the future resolves to the reply or raises RemoteError. `large`:
        the payload carries megabytes (encoded without the extra copy, see pack_large_frame).
        `on_done`: run with the future as its response is read (see `_register`)."""
        fut = self._loop.create_future()
        if self.closed:
            fut.set_exception(ConnectionClosed(f"connection {self.name} is closed: {self.close_reason}"))
            return fut
        if self._wlock is None:
            req_id = self._register(fut, on_done)
        else:
            with self._wlock:  # ids are shared with call_threadsafe
                req_id = self._register(fut, on_done)
        self.send_raw((pack_large_frame if large else pack_frame)([REQUEST, req_id, method, payload]))
        return fut

    def _register(self, fut: asyncio.Future, on_done: Callable[[asyncio.Future], None] | None = None) -> int:
        """Number a request and remember its future (under `_wlock` where there is one), and
        its `on_done`: run inside the read of the response, not a loop iteration later as a
        future's callback would be (a sync call's latency), or with the failed future on close."""
        req_id = self._next_id
        self._next_id += 1
        self._pending[req_id] = fut
        if on_done is not None:
            self._on_done[req_id] = on_done
        return req_id

    def call_threadsafe(
        self, method: str, payload: Any = None, on_done: Callable[[asyncio.Future], None] | None = None
    ) -> asyncio.Future | None:
        """`call` from any thread: the frame goes out at once (written by this thread when the
        connection is idle, else queued for the loop). The future resolves on the loop's
        thread, which runs `on_done` with it (added here, before the frame leaves: other
        callbacks must be added on the loop's thread). None, sending nothing, if the
        connection is closed or not yet authenticated."""
        if self.closed or not self.authenticated:
            return None
        if self._wlock is None:  # a plain connection: only the loop's thread may send on it
            if threading.get_ident() != self._loop_thread:
                return None  # (a hop to the loop could land after sends the caller posted)
            return self.call(method, payload, on_done=on_done)
        fut = self._loop.create_future()
        with self._wlock:
            if self.closed:
                return None
            req_id = self._register(fut, on_done)  # before the frame leaves: its response finds it
            self.send_threadsafe(pack_frame([REQUEST, req_id, method, payload]))
        return fut

    def notify(self, method: str, payload: Any = None) -> None:
        if not self.closed:
            self.send_raw(pack_frame([NOTIFY, method, payload]))

    def send_raw(self, frame: bytes | bytearray) -> None:
        if CHECK_THREADS and threading.get_ident() != self._loop_thread:
            raise RuntimeError(
                f"connection {self.name} written from thread {threading.current_thread().name}, "
                "not its event loop's: hand the send to the loop (core.post)"
            )
        if self._wlock is None:
            self._queue_out(frame)
        else:
            with self._wlock:
                self._queue_out(frame)

    def _queue_out(self, frame: bytes | bytearray) -> None:
        """Loop thread: queue a frame for the next flush, scheduling one if needed."""
        self._out.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def send_threadsafe(self, frame: bytes | bytearray) -> None:
        """Send a whole frame from any thread, in order with every other frame sent here.

        When nothing is waiting to go out, the calling thread writes it to the socket itself
        (connections made with thread_writes, not TLS); otherwise, or for what a partial write
        left, the frame is queued and the loop is woken to write it."""
        if threading.get_ident() == self._loop_thread:
            self.send_raw(frame)
            return
        if self._wlock is None:  # a plain connection: only the loop's thread touches it
            try:
                self._loop.call_soon_threadsafe(self._send_if_open, frame)
            except RuntimeError:  # the loop is closed: so is the connection
                pass
            return
        with self._wlock:
            if self.closed:
                return
            if (
                self._wfd >= 0
                and THREAD_WRITES
                and not self._out
                and self.authenticated
                and not self.write_paused
                and not self._transport.get_write_buffer_size()
            ):
                try:
                    written = os.write(self._wfd, frame)
                except (BlockingIOError, InterruptedError):
                    written = 0
                except OSError as exc:  # broken: close, so that pending requests fail, not hang
                    try:
                        self._loop.call_soon_threadsafe(self.close, f"write failed: {exc}")
                    except RuntimeError:  # the loop is closed
                        pass
                    return
                if written == len(frame):
                    return
                frame = bytes(memoryview(frame)[written:])  # the rest, for the loop
            self._out.append(frame)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                try:
                    self._loop.call_soon_threadsafe(self._flush)
                except RuntimeError:  # the loop is closed: so is the connection, soon
                    pass

    def _send_if_open(self, frame: bytes | bytearray) -> None:
        if not self.closed:
            self.send_raw(frame)

    def _flush(self) -> None:
        if self._wlock is None:
            self._write_out()
        else:
            with self._wlock:
                self._write_out()
        if self.write_paused:  # only while the peer lags: no cost on the normal path
            self._check_write_buffer()

    def _write_out(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if self.closed or not out:
            out.clear()
            return
        if not self.authenticated:  # nothing reaches a peer that has not proved the token
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._transport.write(data)

    def _check_write_buffer(self) -> None:
        size = self._transport.get_write_buffer_size()
        if size > _config.MAX_WRITE_BUFFER_BYTES:
            reason = f"the peer is not reading: {size} bytes unsent (limit {_config.MAX_WRITE_BUFFER_BYTES})"
            logger.warning("closing connection %s: %s", self.name, reason)
            self._out.clear()
            self._transport.abort()  # close() would wait to send the backlog
            self._mark_closed(reason)

    def write_through(self, data: bytes) -> None:
        """Write whole frames someone else encoded (a relay), after every frame queued here."""
        if self.closed:
            return
        with self._wlock or _NO_LOCK:
            if self._out:
                self._write_out()
            self._transport.write(data)
        if self.write_paused:
            self._check_write_buffer()

    def start_request_ids_at(self, first: int) -> None:
        """Number this connection's requests from `first` (a client reconnecting to the same
        session keeps its ids unique, so a late reply for the old connection matches nothing)."""
        with self._wlock or _NO_LOCK:
            self._next_id = max(self._next_id, first)

    @property
    def next_request_id(self) -> int:
        return self._next_id

    @property
    def transport(self) -> Any:
        return self._transport

    def detach_socket(self) -> socket.socket | None:
        """Give up this connection's socket so that another process may serve it.

        Returns a duplicate of the socket (the caller sends it on and closes it) and closes this
        connection (its own descriptor with it), so this process keeps nothing of the peer; or
        None, touching nothing, when the socket cannot move: TLS (the session lives in this
        process's SSL object), an in-process transport, or bytes still unsent or unread here.
        """
        transport = self._transport
        if self.closed or transport is None or not self.authenticated:
            return None
        if self._out:
            self._flush()
        sock = transport.get_extra_info("socket")
        if (
            sock is None
            or transport.get_extra_info("ssl_object") is not None
            or sock.type != socket.SOCK_STREAM
            or transport.get_write_buffer_size()
            or self._decoder.pending_bytes()
        ):
            return None
        dup = socket.socket(fileno=os.dup(sock.fileno()))
        transport.abort()  # no shutdown(): the peer sees nothing; the duplicate carries on
        self._mark_closed("handed over to another process")
        return dup

    def _write_now(self, frame: bytes) -> None:
        with self._wlock or _NO_LOCK:
            if self._transport is not None and not self.closed:
                self._transport.write(frame)

    # -- closing ----------------------------------------------------------------------
    def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        if self._out and self.authenticated:
            self._flush()
        if self._transport is not None:
            self._transport.close()
        self._mark_closed(reason)

    def _mark_closed(self, reason: str) -> None:
        with self._wlock or _NO_LOCK:  # no thread registers a request or writes once this is set
            if self.closed:
                return
            self.closed = True
            pending = dict(self._pending)
            self._pending.clear()
            on_done = list(self._on_done.items())
            self._on_done.clear()
            if self._wfd >= 0:
                os.close(self._wfd)
                self._wfd = -1
        self.close_reason = reason
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        err = ConnectionClosed(f"connection {self.name} closed: {reason}")
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(err)
        for req_id, callback in on_done:  # their futures failed just above
            failed = pending.get(req_id)
            if failed is not None:
                try:
                    self._loop.call_soon_threadsafe(_run_callback, callback, failed)
                except RuntimeError:  # the loop is closed: nobody is left to tell
                    pass
        if not self.ready.done():
            self.ready.set_exception(err)
            self.ready.exception()  # mark retrieved
        if self._on_close is not None:
            try:
                self._on_close(self)
            except Exception:
                logger.exception("on_close callback failed")


def reply_frame(req_id: int, error: Any, payload: Any) -> bytes:
    """A RESPONSE frame; an error response in its place when the wire cannot carry the value."""
    try:
        return pack_frame([RESPONSE, req_id, error, payload])
    except Exception as exc:  # the handler returned something the wire cannot carry
        logger.error("cannot encode the reply to request %s: %r", req_id, exc)
        unencodable = ErrorInfo(type(exc).__name__, f"unencodable reply: {exc}")
        return pack_frame([RESPONSE, req_id, unencodable, None])


def _run_callback(callback: Callable[[asyncio.Future], None], fut: asyncio.Future) -> None:
    """Run a request's on_done as a future's callback would run: its error is logged, and
    does not reach the reader that ran it."""
    try:
        callback(fut)
    except Exception:
        logger.exception("the callback of a request failed")


def _own_descriptor(transport: Any) -> int:
    """A duplicate of a plain socket transport's descriptor, owned by the Connection (closed
    with it, so a number the loop closed and reused is never written to); -1 for TLS or
    in-process transports."""
    if transport.get_extra_info("ssl_object") is not None:
        return -1
    # uvloop counts bytes in its buffer until libuv has them; asyncio's selector transport from
    # Python 3.12 briefly empties its buffer during a partial send, so "buffer empty" would not
    # mean "nothing half-sent": there, frames from other threads go through the loop.
    if sys.version_info >= (3, 12) and not type(transport).__module__.startswith("uvloop"):
        return -1
    sock = transport.get_extra_info("socket")
    if sock is None or sock.type != socket.SOCK_STREAM:
        return -1
    try:
        return os.dup(sock.fileno())
    except OSError:
        return -1
