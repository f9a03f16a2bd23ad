"""Counts the references a process holds to each object; no I/O.

Three kinds are counted: Python ObjectRef instances alive in this process, uses by tasks
this process submitted that have not finished (arguments, refs nested in arguments), and,
for objects this process owns, other processes that borrowed a ref and registered. When
all reach zero the object is released through `on_zero`.

A ref to someone else's object seen here for the first time is queued in `new_borrowed`,
so the core worker can register this process as a borrower with the owner.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Sequence

LOCAL, USES, OWNER, BORROWERS = 0, 1, 2, 3


class ReferenceCounter:
    def __init__(self, on_zero: Callable[[bytes, tuple | None], None]):
        # Reentrant: an ObjectRef.__del__ run by the garbage collector inside a locked
        # section on the same thread must not deadlock.
        self._lock = threading.RLock()
        # object id -> [local refs, task uses, owner address or None if owned here, borrowers]
        self._refs: dict[bytes, list] = {}
        # `has(oid)`: the dict's own membership test, bound once (C speed, no Python frame:
        # borrow bookkeeping asks it for each of 10,000 refs in one object). The dict is
        # never replaced, so the binding stays right.
        self.has: Callable[[bytes], bool] = self._refs.__contains__
        self._on_zero = on_zero
        self.new_borrowed: collections.deque = collections.deque()

    def add_local(self, object_id: bytes, owner: tuple | None) -> None:
        with self._lock:
            entry = self._refs.get(object_id)
            if entry is None:
                self._refs[object_id] = [1, 0, owner, 0]
                if owner is not None:
                    self.new_borrowed.append((object_id, owner))
            else:
                entry[LOCAL] += 1

    def remove_local(self, object_id: bytes) -> None:
        with self._lock:
            entry = self._refs.get(object_id)
            if entry is None:
                return
            entry[LOCAL] -= 1
            if not self._is_zero(entry):
                return
            del self._refs[object_id]
        self._on_zero(object_id, entry[OWNER])

    @staticmethod
    def _is_zero(entry: list) -> bool:
        return entry[LOCAL] <= 0 and entry[USES] <= 0 and entry[BORROWERS] <= 0

    def add_task_uses(self, object_ids: list[bytes], owners: list[tuple | None]) -> None:
        with self._lock:
            for oid, owner in zip(object_ids, owners):
                entry = self._refs.get(oid)
                if entry is None:
                    self._refs[oid] = [0, 1, owner, 0]
                else:
                    entry[USES] += 1

    def remove_task_uses(self, object_ids: Sequence[bytes]) -> None:
        self._decrement(object_ids, USES)

    def add_borrowers(self, object_ids: list[bytes]) -> list[bool]:
        """Another process holds these owned objects; False for any already gone."""
        out = []
        with self._lock:
            for oid in object_ids:
                entry = self._refs.get(oid)
                if entry is None or entry[OWNER] is not None:
                    out.append(False)
                else:
                    entry[BORROWERS] += 1
                    out.append(True)
        return out

    def remove_borrowers(self, object_ids: list[bytes]) -> None:
        self._decrement(object_ids, BORROWERS)

    def _decrement(self, object_ids: Sequence[bytes], kind: int) -> None:
        freed = []
        with self._lock:
            for oid in object_ids:
                entry = self._refs.get(oid)
                if entry is None:
                    continue
                entry[kind] -= 1
                if self._is_zero(entry):
                    del self._refs[oid]
                    freed.append((oid, entry[OWNER]))
        for oid, owner in freed:
            self._on_zero(oid, owner)

    def counts(self, object_id: bytes) -> tuple[int, int]:
        entry = self._refs.get(object_id)
        return (entry[LOCAL], entry[USES]) if entry else (0, 0)

    def borrowers(self, object_id: bytes) -> int:
        entry = self._refs.get(object_id)
        return entry[BORROWERS] if entry else 0

    def __len__(self) -> int:
        return len(self._refs)

    def snapshot(self) -> dict[bytes, tuple[int, int, tuple | None, int]]:
        with self._lock:
            return {k: (v[LOCAL], v[USES], v[OWNER], v[BORROWERS]) for k, v in self._refs.items()}
