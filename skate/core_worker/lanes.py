"""What a worker's main thread runs next: calls the I/O thread queues, and calls that callers
push straight to it over lanes.

A sync call to a plain actor (`x = ray.get(a.f.remote())` in a loop) crosses four threads:
the caller's, the worker's I/O thread, the worker's main thread, the caller's I/O thread.
Each hand-off is a wake-up of a sleeping thread, most of a call's cost on a small machine. A
lane takes the worker's I/O thread out: it is a connection of its own from one caller to
the actor, authenticated like any other, that the worker's I/O loop gives up after its first
request (`open_lane`) so that the main thread reads it itself, waiting on its lanes and on
the queue at once (`poll`); it runs a call as soon as it has read it and writes the reply
on the same socket.

A lane carries only `push_actor_task` requests without streaming results. Once a caller has
one, all its calls to the actor go on it but streaming ones, and it never has calls in flight
on the lane and on its connection at once (the caller's `ActorSubmitter` keeps that rule), so
order is kept by construction; the main thread reads and runs a lane's calls in order.
Anything else on a lane (a malformed frame, another method) closes that lane, and only it; so
does the caller closing it. Only a plain actor (sync, one call at a time) takes lanes, at most
`MAX_LANES` (a slot is reserved when one is accepted, so an accepted lane is never refused).

Replies are written with a blocking `sendall`: a caller that stops reading its lane while
its replies fill the socket's buffers holds up the actor's main thread (on a connection the
loop would buffer them instead). Replies are small (inline values), so this takes a caller
frozen with many calls in flight.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

from skate.exceptions import ProtocolError
from skate.protocol.connection import DeferredReply, reply_frame
from skate.protocol.framing import REQUEST, FrameDecoder
from skate.protocol.messages import TaskSpec

logger = logging.getLogger(__name__)

MAX_LANES = 64
_ADD_LANE = object()  # an inbox item that hands the main thread a lane's socket
_READ_BYTES = 1 << 18


class Lane:
    """One caller's lane: its socket, the frames read so far, and a lock that orders the
    replies written by the main thread and, now and then, by the I/O thread. A call read
    from it is answered through a `DeferredReply` on it, as one read from a connection."""

    __slots__ = ("sock", "decoder", "lock", "closed")

    def __init__(self, sock: socket.socket):
        sock.setblocking(True)  # read only when select says so; replies are small
        self.sock = sock
        self.decoder = FrameDecoder()
        self.lock = threading.Lock()
        self.closed = False

    def send(self, frame: bytes) -> None:
        with self.lock:
            if self.closed:
                return
            try:
                self.sock.sendall(frame)
            except OSError:
                self.closed = True  # the caller went away: the main thread drops the lane

    def reply_any_thread(self, req_id: int, error: Any, payload: Any) -> None:
        self.send(reply_frame(req_id, error, payload))

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.sock.close()


class MainThreadInbox:
    """The main thread's queue of `(run, spec, reply)` items, and its lanes.

    Without lanes, `get` is a plain blocking queue get. With lanes, the main thread waits in
    `poll` on them and on a pipe the I/O thread writes to when it queues an item while the
    main thread waits there (`put`), so neither source waits behind the other."""

    def __init__(self, run_lane_call: Callable[[TaskSpec], Any]):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._run_lane_call = run_lane_call
        self._lanes: dict[int, Lane] = {}  # by descriptor (main thread only)
        self._ready: collections.deque = collections.deque()  # calls read from lanes, in order
        self._selecting = False  # the main thread waits in poll: a put must wake it
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poll = select.poll()
        self._poll.register(self._wake_r, select.POLLIN)
        self._slots_lock = threading.Lock()
        self._slots = 0  # lanes accepted and not dropped yet (at most MAX_LANES)

    @property
    def lane_count(self) -> int:
        return len(self._lanes)

    def reserve(self) -> bool:
        """I/O thread: room for one more lane? (Taken now, before the caller is told yes: a
        lane accepted is never closed for want of room.)"""
        with self._slots_lock:
            if self._slots >= MAX_LANES:
                return False
            self._slots += 1
            return True

    def unreserve(self) -> None:
        with self._slots_lock:
            self._slots -= 1

    def put(self, item: tuple) -> None:
        """Any thread: queue an item for the main thread."""
        self._queue.put(item)
        if self._selecting:
            try:
                os.write(self._wake_w, b"\0")
            except (BlockingIOError, OSError):
                pass  # the pipe is full of wake-ups already (or closed at exit)

    def add_lane(self, sock: socket.socket) -> None:
        """I/O thread: a connection's socket becomes a lane of the main thread."""
        self.put((_ADD_LANE, sock, None))

    def get(self) -> tuple:
        """Main thread: the next item to run, waiting for one."""
        while True:
            if not self._lanes and not self._ready:
                item = self._queue.get()
            else:
                item = self._next_with_lanes()
            if item[0] is not _ADD_LANE:
                return item
            self._add(item[1])

    def _next_with_lanes(self) -> tuple:
        while True:
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                pass
            if self._ready:
                return self._ready.popleft()
            self._selecting = True
            try:
                if not self._queue.empty():  # queued as the flag was being set
                    continue
                readable = self._poll.poll()
            finally:
                self._selecting = False
            for fd, _ in readable:
                if fd == self._wake_r:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                else:
                    lane = self._lanes.get(fd)
                    if lane is not None:
                        self._read(fd, lane)

    def _add(self, sock: socket.socket) -> None:
        lane = Lane(sock)
        self._lanes[sock.fileno()] = lane
        self._poll.register(sock.fileno(), select.POLLIN)

    def _read(self, fd: int, lane: Lane) -> None:
        try:
            data = lane.sock.recv(_READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data or lane.closed:
            self._drop(fd, lane)
            return
        try:
            for message in lane.decoder.feed(data):
                kind, req_id, method, payload = message
                if kind != REQUEST or method != "push_actor_task" or type(req_id) is not int:
                    raise ProtocolError(f"a lane takes push_actor_task requests only, not {method!r}")
                spec = TaskSpec.from_wire(payload)
                if spec.generator is not None:
                    raise ProtocolError("a streaming call cannot take a lane")
                self._ready.append((self._run_lane_call, spec, DeferredReply(lane, req_id)))
        except Exception as exc:  # a bad frame closes this lane, nothing else
            logger.warning("closing a lane after a bad request: %s", exc)
            self._drop(fd, lane)

    def _drop(self, fd: int, lane: Lane) -> None:
        if self._lanes.pop(fd, None) is not None:
            self._poll.unregister(fd)
            self.unreserve()
        lane.close()

    def close(self) -> None:
        """The worker is leaving: close every lane and the wake-up pipe."""
        for fd, lane in list(self._lanes.items()):
            self._drop(fd, lane)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
