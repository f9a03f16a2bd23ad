"""The caller's end of a lane (`core_worker.lanes`): a socket its user threads read themselves.

A sync call to a plain actor, `x = ray.get(a.f.remote())` in a loop, crosses the actor's
main thread and, on the way back, the caller's I/O thread, which hands the reply to the
waiting user thread: a wake-up of a sleeping thread and a turn of the GIL, most of a call's
cost on a small machine. With a caller lane the user thread that pushed the call reads its
reply from the socket itself, in `get`, so the reply wakes it directly.

A user thread pushes a call on the lane when every earlier call of this caller to the actor
has ended (`ActorSubmitter.submit`): that call is `pending`. Whoever reads its reply takes the
lane's `reader` first, under its lock: a user thread in `get` of that call's result (it blocks
in `poll` on the socket), or the I/O loop when something else needs the reply (another
waiter, a periodic sweep for replies nobody came for). The I/O loop also sends the calls it
queued (a burst) on the lane, after the pending one, once it reads the lane (`loop_calls`):
then it alone reads every reply, until nothing is in flight and the lane is free for a user
thread's next push. This module only moves bytes; what a reply means is the
`ActorSubmitter`'s.

A user thread writes its call with a blocking send loop (under the actor submitter's lock,
which orders its calls): the lane is empty then (every earlier call has ended) and a call's
frame is small (arguments of 100 KiB or more travel through the object store), so the send
does not wait in practice. The loop's writes never block: what the socket does not take waits
in the lane's buffer for a writer callback.

The socket's descriptor is closed only once nobody can be using it: the lane is closed, no
user thread reads it, and the loop has taken its reader and writer callbacks off it
(`watch`/`unwatch`, `want_write`/`done_writing`, all under the lane's lock). A descriptor
closed while the loop still polls it leaves the loop a stale watch on its number, which the
next socket to get that number (another actor's lane) inherits: that lane's replies would
then never be read. So a party that closes the lane while another still uses the socket only
shuts it down (which wakes the other with an end of stream), and the last one out closes it.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any

from skate.exceptions import ProtocolError
from skate.protocol.connection import ConnectionClosed
from skate.protocol.framing import REQUEST, RESPONSE, FrameDecoder, pack_frame

USER = "user"  # a user thread reads (in get)
LOOP = "loop"  # the I/O loop reads (a reader callback)
_READ_BYTES = 1 << 18


class CallerLane:
    """A lane's socket, the call in flight on it (`pending`: (request id, item)) and who reads it.

    `pending`, `reader` and `closed` change under `lock`; reading and writing the socket
    happen outside it, by the one party that took `reader` (reads) or pushed (writes).
    """

    __slots__ = (
        "sock",
        "fd",
        "lock",
        "reader",
        "pending",
        "sent_at",
        "closed",
        "_decoder",
        "_poll",
        "_next_id",
        "loop_calls",
        "_out",
        "watched",
        "writing",
        "_released",
    )

    def __init__(self, sock: socket.socket):
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.lock = threading.Lock()
        self.reader: str | None = None
        self.pending: tuple[int, Any] | None = None
        self.sent_at = 0.0  # (time.monotonic) when the call in flight was pushed
        self.closed = False
        self._decoder = FrameDecoder()
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        self._next_id = 1
        self.loop_calls: dict[int, Any] = {}  # calls the loop sent, by request id (reader LOOP)
        self._out = bytearray()  # what the loop could not write yet
        # The loop has a reader (`watched`) or writer (`writing`) callback on the socket; both
        # change under `lock` (see `watch`), so that no thread closes a descriptor it polls.
        self.watched = False
        self.writing = False
        self._released = False  # the descriptor is closed

    # -- the pushing thread ---------------------------------------------------------------
    def push(self, spec: Any, item: Any) -> bool:
        """Send a call; `item` is what `pending` names it by. False, sending nothing (or
        part of a frame, closing the lane), when the lane is closed, busy or broken."""
        with self.lock:
            if self.closed or self.pending is not None:
                return False
            req_id = self._next_id
            self._next_id += 1
            self.pending = (req_id, item)
            self.sent_at = time.monotonic()
        try:
            self._write(pack_frame([REQUEST, req_id, "push_actor_task", spec]))
        except OSError:
            with self.lock:
                mine = self.pending is not None and self.pending[0] == req_id
                if mine:
                    self.pending = None
            self.close()
            # Taken meanwhile by a party closing the lane: the call is theirs to end (as lost).
            return not mine
        return True

    def _write(self, frame: bytes) -> None:
        view = memoryview(frame)
        while view:
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                select.select([], [self.sock], [], 1.0)  # the actor reads between calls
                continue
            view = view[sent:]

    # -- the reading party ----------------------------------------------------------------
    def take_reader(self, who: str, item: Any = None) -> bool:
        """Become the reader of the call in flight (of `item`, when given); False when there
        is none, another party reads it, or it is another call."""
        with self.lock:
            if self.pending is None or self.reader is not None or self.closed:
                return False
            if item is not None and self.pending[1] is not item:
                return False
            self.reader = who
            return True

    def release_reader(self, answered: bool) -> Any:
        """Stop reading; with `answered`, the call in flight is over: returns its item."""
        with self.lock:
            self.reader = None
            item = None
            if answered and self.pending is not None:
                item = self.pending[1]
                self.pending = None
            self._release_if_unused()
            return item

    def read_reply(self, timeout: float | None) -> list | BaseException | None:
        """Reader: wait up to `timeout` seconds (None: for ever) for the response to the call
        in flight: its message `[RESPONSE, id, error, payload]`, an exception when the lane
        broke (ConnectionClosed), or None when the time ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:  # (poll first: the reply is rarely there already, and a recv costs a call)
            wait_ms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000) + 1)
            if self._poll.poll(wait_ms):
                got = self.read_nowait()
                if got is not None:
                    return got
            elif deadline is not None and time.monotonic() >= deadline:
                return None

    def _receive(self) -> list | BaseException:
        """Reader: the messages the socket holds now (maybe none yet), or an exception when
        the lane broke."""
        try:
            data = self.sock.recv(_READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError as exc:
            return ConnectionClosed(f"the lane to the actor broke: {exc}")
        if not data:
            return ConnectionClosed("the actor closed its lane")
        try:
            return self._decoder.feed(data)
        except ProtocolError as exc:
            return ConnectionClosed(f"the lane to the actor sent a bad frame: {exc}")

    def read_nowait(self) -> list | BaseException | None:
        """Reader: what the socket holds now: the response, an exception, or None (not all
        of it has come)."""
        messages = self._receive()
        if isinstance(messages, BaseException):
            return messages
        if not messages:
            return None
        pending = self.pending
        message = messages[0]
        if (
            len(messages) != 1
            or pending is None
            or type(message) is not list
            or len(message) != 4
            or message[0] != RESPONSE
            or message[1] != pending[0]
        ):
            return ConnectionClosed("the lane to the actor sent something else than the reply awaited")
        return message

    # -- the loop's own calls -------------------------------------------------------------
    def take_for_loop(self) -> bool:
        """I/O thread: read the lane (if no user thread does) so as to send calls on it too."""
        with self.lock:
            if self.closed or self.reader == USER:
                return False
            self.reader = LOOP
            return True

    def send_from_loop(self, spec: Any, item: Any) -> bool:
        """I/O thread, reading the lane: send a call after those in flight. True when part of
        it waits in the lane's buffer: call `flush_out` when the socket is writable."""
        with self.lock:
            req_id = self._next_id
            self._next_id += 1
            self.loop_calls[req_id] = item
        frame = pack_frame([REQUEST, req_id, "push_actor_task", spec])
        if not self._out:
            try:
                sent = self.sock.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:  # broken: the reads say so
                return False
            if sent == len(frame):
                return False
            frame = frame[sent:]
        self._out += frame
        return True

    def flush_out(self) -> bool:
        """I/O thread: write what waits; True when nothing is left (or the socket broke)."""
        try:
            sent = self.sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self._out.clear()
            return True
        del self._out[:sent]
        return not self._out

    def read_all(self) -> tuple[list[tuple[Any, list]], BaseException | None]:
        """I/O thread, reading the lane: the responses the socket holds now, each with its
        call's item (the pending call's, or one of `loop_calls`), and the exception that
        broke the lane, if it broke (after those responses, or instead of them).

        It reads until the socket has nothing more: the loop may hear of a lane's end only
        once (uvloop stops polling a socket after an error event, such as a reset by an actor
        that died with calls unread, and runs the reader callback one last time), and the
        error lies behind the replies the actor wrote before it died."""
        out: list[tuple[Any, list]] = []
        while True:
            try:
                data = self.sock.recv(_READ_BYTES)
            except (BlockingIOError, InterruptedError):
                return out, None
            except OSError as exc:
                return out, ConnectionClosed(f"the lane to the actor broke: {exc}")
            if not data:
                return out, ConnectionClosed("the actor closed its lane")
            try:
                messages = self._decoder.feed(data)
            except ProtocolError as exc:
                return out, ConnectionClosed(f"the lane to the actor sent a bad frame: {exc}")
            with self.lock:
                for message in messages:
                    if type(message) is not list or len(message) != 4 or message[0] != RESPONSE:
                        return out, ConnectionClosed("the lane to the actor sent something else than replies")
                    req_id = message[1]
                    if self.pending is not None and self.pending[0] == req_id:
                        out.append((self.pending[1], message))
                        self.pending = None
                    elif req_id in self.loop_calls:
                        out.append((self.loop_calls.pop(req_id), message))
                    else:
                        return out, ConnectionClosed(
                            f"the lane to the actor answered an unknown request {req_id!r}"
                        )

    def loop_done(self) -> bool:
        """I/O thread, reading the lane: when nothing is in flight on it any more, stop reading
        (a user thread may push and read again); True then."""
        with self.lock:
            if self.pending is not None or self.loop_calls or self._out:
                return False
            self.reader = None
            return True

    def take_all(self) -> list[Any]:
        """I/O thread: the items of every call in flight that no user thread reads (the lane
        is going: they end as lost)."""
        with self.lock:
            items = list(self.loop_calls.values())
            self.loop_calls.clear()
            if self.pending is not None and self.reader != USER:
                items.insert(0, self.pending[1])
                self.pending = None
            if self.reader == LOOP:
                self.reader = None
            return items

    # -- closing ----------------------------------------------------------------------------
    def close(self, reason: str = "closed") -> None:
        """Close the lane (any thread). The socket is shut down, which wakes a user thread
        reading it and the loop if it watches it; its descriptor is closed by the last of
        them to let go of it (`_release_if_unused`). The call in flight, if any, stays
        `pending`: the caller decides what it means (`ActorSubmitter._close_lane`)."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._release_if_unused()

    # -- the loop's callbacks (I/O thread) ----------------------------------------------------
    def watch(self, loop: Any, callback: Any, *args: Any) -> bool:
        """Have the loop call `callback(*args)` when the socket is readable; False (nothing
        done) when the lane is closed. OSError or ValueError when the loop refuses it."""
        return self._hold("watched", loop.add_reader, callback, args)

    def unwatch(self, loop: Any) -> None:
        """Take the loop's reader callback off the socket (if it has one)."""
        if self.watched:
            loop.remove_reader(self.fd)
            self._let_go("watched")

    def want_write(self, loop: Any, callback: Any, *args: Any) -> bool:
        """Have the loop call `callback(*args)` when the socket is writable (what `_out`
        holds waits for it); False when the lane is closed (what it holds is lost with it)."""
        return self._hold("writing", loop.add_writer, callback, args)

    def done_writing(self, loop: Any) -> None:
        """Take the loop's writer callback off the socket (if it has one)."""
        if self.writing:
            loop.remove_writer(self.fd)
            self._let_go("writing")

    def _hold(self, flag: str, add: Any, callback: Any, args: tuple) -> bool:
        """Raise `flag` (the loop uses the socket from now on: nobody closes it), then add
        the loop's callback; False when the lane is closed, True when it was held already."""
        with self.lock:
            if self.closed:
                return False
            if getattr(self, flag):
                return True
            setattr(self, flag, True)
        try:
            add(self.fd, callback, *args)
        except BaseException:
            self._let_go(flag)
            raise
        return True

    def _let_go(self, flag: str) -> None:
        """The loop's callback behind `flag` is off: the descriptor may close now."""
        with self.lock:
            setattr(self, flag, False)
            self._release_if_unused()

    def close_on_loop(self, loop: Any, reason: str = "closed") -> None:
        """I/O thread: take the loop's callbacks off the socket and close the lane."""
        self.unwatch(loop)
        self.done_writing(loop)
        self.close(reason)

    def _release_if_unused(self) -> None:
        """Under `lock`: close the descriptor once the lane is closed and nobody uses it."""
        if not self.closed or self._released or self.reader == USER or self.watched or self.writing:
            return
        self._released = True
        try:
            self._poll.unregister(self.fd)
        except (KeyError, ValueError, OSError):
            pass
        self.sock.close()
