"""The in-process object table: values of small objects, locations of large ones.

Entries are set by the I/O thread and read by user threads; waiters registered under the
same lock as the entries, so a wakeup is never lost.

Entry forms:
    (INLINE, [kind, inband, buffers])   the serialized value itself
    (IN_STORE, node_id, size)           the value is in a node's shared-memory store
"""

from __future__ import annotations

import threading
from _thread import allocate_lock as _allocate_lock
from collections.abc import Callable, Iterable
from typing import Any

from skate.protocol.messages import IN_STORE, INLINE

__all__ = ["INLINE", "IN_STORE", "MemoryStore", "Waiter"]

_KIND_ERROR = 1
_NOT_AN_OBJECT = ("",)  # the entry given for a hit that is not an object's


class Waiter:
    """Wakes when `needed` of the watched objects are ready.

    With `fail_fast`, an object that turns out to be an error wakes it at once (a `get` of
    several refs raises as soon as one of them failed).
    """

    __slots__ = ("needed", "_woken", "_waking", "callback", "ready", "fail_fast")

    def __init__(
        self, needed: int, callback: Callable[[Waiter], None] | None = None, fail_fast: bool = False
    ):
        self.needed = needed
        self.ready: list[bytes] = []
        self.callback = callback
        # Held until it wakes (waiters without a callback: the blocking get/wait). A bare lock,
        # not a threading.Event: one C call to wait and one to wake, where an Event's
        # Condition allocates and juggles a lock per wait (a sync call's get pays it every time).
        self._waking: Any = None
        if callback is None:
            self._waking = _allocate_lock()
            self._waking.acquire()
        self._woken = False
        self.fail_fast = fail_fast

    def _hit(self, object_id: bytes, entry: tuple) -> None:
        self.ready.append(object_id)
        if len(self.ready) == self.needed or (
            self.fail_fast and entry[0] == INLINE and entry[1][0] == _KIND_ERROR
        ):
            if self.callback is not None:
                self.callback(self)
            elif not self._woken:
                self._woken = True
                self._waking.release()

    def hit(self, key: bytes) -> None:
        """Something other than an object is ready (a generator's stream, under `key`)."""
        self._hit(key, _NOT_AN_OBJECT)

    def done(self) -> bool:
        return len(self.ready) >= self.needed

    @property
    def woken(self) -> bool:
        """Whether a blocking waiter has been woken."""
        return self._woken

    def wait(self, timeout: float | None = None) -> bool:
        """Block until woken (True) or `timeout` seconds pass (False). Once only."""
        return self._waking.acquire(timeout=-1 if timeout is None else timeout)


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()  # reentrant: see ReferenceCounter
        self._objects: dict[bytes, tuple] = {}
        self._waiters: dict[bytes, list[Waiter]] = {}
        # Told the ids of a watch that waits (any thread): a lane's reply may have to be
        # read for them (ActorSubmitter.need).
        self.on_wait: Callable[[Iterable[bytes]], None] | None = None

    def __contains__(self, object_id: bytes) -> bool:
        return object_id in self._objects

    def __len__(self) -> int:
        return len(self._objects)

    def get(self, object_id: bytes) -> tuple | None:
        return self._objects.get(object_id)

    def put(self, object_id: bytes, entry: tuple) -> None:
        with self._lock:
            self._objects[object_id] = entry
            waiters = self._waiters.pop(object_id, None)
        if waiters:
            for w in waiters:
                w._hit(object_id, entry)

    def delete(self, object_id: bytes) -> tuple | None:
        with self._lock:
            return self._objects.pop(object_id, None)

    def watch(self, object_ids: Iterable[bytes], waiter: Waiter) -> list[bytes]:
        """Register `waiter` on the objects not ready yet; returns those already ready."""
        ready = []
        waits = False
        with self._lock:
            objects = self._objects
            for oid in object_ids:
                entry = objects.get(oid)
                if entry is not None:
                    ready.append((oid, entry))
                else:
                    self._waiters.setdefault(oid, []).append(waiter)
                    waits = True
        for oid, entry in ready:
            waiter._hit(oid, entry)
        if waits and self.on_wait is not None:
            self.on_wait(object_ids)  # (ids already here are none of a lane's calls in flight)
        return [oid for oid, _ in ready]

    def unwatch(self, object_ids: Iterable[bytes], waiter: Waiter) -> None:
        with self._lock:
            for oid in object_ids:
                lst = self._waiters.get(oid)
                if lst and waiter in lst:
                    lst.remove(waiter)
                    if not lst:
                        del self._waiters[oid]

    def waited_on(self) -> list[bytes]:
        with self._lock:
            return list(self._waiters)
