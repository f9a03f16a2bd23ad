"""Counts the references a process holds to each object; no I/O.

Two kinds are counted: Python ObjectRef instances alive in this process, and uses by
tasks this process submitted that have not finished (arguments, refs nested in
arguments). When both reach zero the object is released through `on_zero`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class ReferenceCounter:
    def __init__(self, on_zero: Callable[[bytes, tuple | None], None]):
        self._lock = threading.Lock()
        # object id -> [local refs, task uses, owner address or None if owned here]
        self._refs: dict[bytes, list] = {}
        self._on_zero = on_zero

    def add_local(self, object_id: bytes, owner: tuple | None) -> None:
        with self._lock:
            entry = self._refs.get(object_id)
            if entry is None:
                self._refs[object_id] = [1, 0, owner]
            else:
                entry[0] += 1

    def remove_local(self, object_id: bytes) -> None:
        with self._lock:
            entry = self._refs.get(object_id)
            if entry is None:
                return
            entry[0] -= 1
            if entry[0] > 0 or entry[1] > 0:
                return
            del self._refs[object_id]
        self._on_zero(object_id, entry[2])

    def add_task_uses(self, object_ids: list[bytes], owners: list[tuple | None]) -> None:
        with self._lock:
            for oid, owner in zip(object_ids, owners):
                entry = self._refs.get(oid)
                if entry is None:
                    self._refs[oid] = [0, 1, owner]
                else:
                    entry[1] += 1

    def remove_task_uses(self, object_ids: list[bytes]) -> None:
        freed = []
        with self._lock:
            for oid in object_ids:
                entry = self._refs.get(oid)
                if entry is None:
                    continue
                entry[1] -= 1
                if entry[0] <= 0 and entry[1] <= 0:
                    del self._refs[oid]
                    freed.append((oid, entry[2]))
        for oid, owner in freed:
            self._on_zero(oid, owner)

    def has(self, object_id: bytes) -> bool:
        return object_id in self._refs

    def counts(self, object_id: bytes) -> tuple[int, int]:
        entry = self._refs.get(object_id)
        return (entry[0], entry[1]) if entry else (0, 0)

    def __len__(self) -> int:
        return len(self._refs)

    def snapshot(self) -> dict[bytes, tuple[int, int, tuple | None]]:
        with self._lock:
            return {k: (v[0], v[1], v[2]) for k, v in self._refs.items()}
