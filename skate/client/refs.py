"""Counting refs across the client's wire: pure bookkeeping, no I/O.

The proxy driver on the cluster holds a real ObjectRef (or ActorHandle) for every id it has
shipped to the client, and counts the shipments. The client counts its live local refs and
the shipments it has received. When its last local ref to an id goes, it releases exactly the
shipments it has seen; a shipment still on the wire keeps the proxy's hold until the client
receives and drops it too. So nothing the client holds is freed, and nothing it dropped leaks.
"""

from __future__ import annotations

import threading
from typing import Any


class ClientRefTable:
    """The client's side: live local refs per id, shipments received, releases to send.

    `add_local`/`remove_local` may run from `__del__` on any thread, so every method takes
    only a reentrant lock and never blocks on I/O.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._local: dict[bytes, int] = {}
        self._arrived: dict[bytes, int] = {}
        self._releases: list[list] = []
        self.new_borrowed = False  # the core worker's counter has this; the client never borrows

    def add_local(self, object_id: bytes, owner: Any = None) -> None:
        with self._lock:
            self._local[object_id] = self._local.get(object_id, 0) + 1

    def remove_local(self, object_id: bytes) -> None:
        with self._lock:
            n = self._local.get(object_id, 0) - 1
            if n > 0:
                self._local[object_id] = n
                return
            self._local.pop(object_id, None)
            self._release(object_id)

    def _release(self, object_id: bytes) -> None:
        shipped = self._arrived.pop(object_id, 0)
        if shipped:
            self._releases.append([object_id, shipped])

    def arrived(self, object_ids: list[bytes]) -> None:
        """Ids the proxy shipped in a message about to be decoded (count them first)."""
        with self._lock:
            for oid in object_ids:
                self._arrived[oid] = self._arrived.get(oid, 0) + 1

    def settle(self, object_ids: list[bytes]) -> None:
        """After decoding: shipped ids that no local ref took are released at once."""
        with self._lock:
            for oid in set(object_ids):
                if oid not in self._local:
                    self._release(oid)

    def has(self, object_id: bytes) -> bool:
        with self._lock:
            return object_id in self._local

    def take_releases(self) -> list[list]:
        """[id, shipments] pairs to send to the proxy, oldest first; empties the queue."""
        with self._lock:
            out, self._releases = self._releases, []
            return out

    def live(self) -> int:
        with self._lock:
            return len(self._local)


class HeldRefs:
    """The proxy's side: one real ref (or actor handle) per shipped id, and its shipment count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[bytes, list] = {}

    def ship(self, object_id: bytes, obj: Any) -> None:
        """`obj` (holding `object_id` alive) is being sent to the client once more."""
        with self._lock:
            entry = self._held.get(object_id)
            if entry is None:
                self._held[object_id] = [obj, 1]
            else:
                entry[1] += 1

    def release(self, object_id: bytes, shipments: int) -> Any:
        """The client dropped `shipments` of its copies; returns the hold if that was the last."""
        with self._lock:
            entry = self._held.get(object_id)
            if entry is None:
                return None
            entry[1] -= shipments
            if entry[1] > 0:
                return None
            del self._held[object_id]
            return entry[0]

    def get(self, object_id: bytes) -> Any:
        with self._lock:
            entry = self._held.get(object_id)
            return entry[0] if entry is not None else None

    def clear(self) -> list:
        with self._lock:
            out = [entry[0] for entry in self._held.values()]
            self._held.clear()
            return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)
