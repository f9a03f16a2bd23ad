"""The node's object table: allocations, seals, pins, spilled copies and deferred frees; no I/O.

Each object has one primary pin held for its owner until the owner frees it, plus read
pins per client. An object may live in memory, in a spill file, or both (a restored
object keeps its spill copy, so evicting it again costs no write). Memory is returned to
the arena only when no reader pins it; the object is forgotten once its owner freed it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from skate.exceptions import ObjectStoreFullError
from skate.raylet.arena import Arena

SPILLER = "\x00spiller"  # the pin the spiller holds while it copies an object out


@dataclass
class StoredObject:
    offset: int | None  # None while the object is only on disk
    size: int
    owner: str
    sealed: bool = False
    freed: bool = False  # the owner let go; delete when unpinned
    pins: dict[str, int] = field(default_factory=dict)
    spilled: tuple[str, int] | None = None  # (spill file, offset in it)
    last_use: int = 0
    secondary: bool = False  # a copy pulled from another node: dropped, never spilled


class ObjectStore:
    def __init__(self, capacity: int):
        self.arena = Arena(capacity)
        self.objects: dict[bytes, StoredObject] = {}
        self.created_bytes = 0
        self.num_created = 0
        self.spilled_bytes = 0  # bytes written to spill files, in all
        self.restored_bytes = 0
        self._clock = itertools.count(1)

    @property
    def capacity(self) -> int:
        return self.arena.capacity

    @property
    def used_bytes(self) -> int:
        return self.arena.used_bytes

    def _full(self, size: int) -> ObjectStoreFullError:
        return ObjectStoreFullError(
            f"cannot store an object of {size} bytes: {self.arena.used_bytes} of "
            f"{self.arena.capacity} bytes are in use and nothing more can be spilled"
        )

    def create(self, object_id: bytes, size: int, owner: str) -> int:
        """Allocate room for an object; raises ObjectStoreFullError when it does not fit now."""
        existing = self.objects.get(object_id)
        if existing is not None:
            if existing.size == size and not existing.sealed and existing.offset is not None:
                return existing.offset
            raise ValueError(f"object {object_id.hex()} already exists in the store")
        if size > self.arena.capacity:
            raise ObjectStoreFullError(
                f"object of {size} bytes is larger than the object store ({self.arena.capacity} bytes)"
            )
        offset = self.arena.allocate(size)
        if offset is None:
            raise self._full(size)
        self.objects[object_id] = StoredObject(offset, size, owner, last_use=next(self._clock))
        self.created_bytes += size
        self.num_created += 1
        return offset

    def seal(self, object_id: bytes, secondary: bool = False) -> None:
        obj = self.objects.get(object_id)
        if obj is not None:
            obj.sealed = True
            obj.secondary = secondary

    def discard_unsealed(self, object_id: bytes) -> None:
        """A transfer into this object failed: forget it."""
        obj = self.objects.get(object_id)
        if obj is not None and not obj.sealed:
            del self.objects[object_id]
            if obj.offset is not None:
                self.arena.free(obj.offset)

    def evict_secondary(self, need: int) -> int:
        """Drop unpinned pulled copies, least recently used first; returns bytes freed."""
        freed = 0
        for _, oid, offset in sorted(
            (o.last_use, oid, o.offset)
            for oid, o in self.objects.items()
            if o.secondary and not o.pins and o.offset is not None  # pulled copies are never spilled
        ):
            obj = self.objects.pop(oid)
            self.arena.free(offset)
            freed += obj.size
            if freed >= need:
                break
        return freed

    def status(self, object_id: bytes) -> str:
        """'memory', 'spilled' or 'missing' (unknown, unsealed or freed)."""
        obj = self.objects.get(object_id)
        if obj is None or not obj.sealed or obj.freed:
            return "missing"
        return "memory" if obj.offset is not None else "spilled"

    def get(self, object_id: bytes, client: str) -> tuple[int, int] | None:
        """Pin an object in memory for `client`; None when it is not in memory here."""
        obj = self.objects.get(object_id)
        if obj is None or not obj.sealed or obj.freed or obj.offset is None:
            return None
        obj.pins[client] = obj.pins.get(client, 0) + 1
        obj.last_use = next(self._clock)
        return obj.offset, obj.size

    def release(self, object_id: bytes, client: str) -> list[str]:
        obj = self.objects.get(object_id)
        if obj is None:
            return []
        n = obj.pins.get(client, 0) - 1
        if n > 0:
            obj.pins[client] = n
        else:
            obj.pins.pop(client, None)
        return self._maybe_delete(object_id, obj)

    def free(self, object_id: bytes) -> list[str]:
        """The owner let go. Returns spill files that lost an object (for their reference counts)."""
        obj = self.objects.get(object_id)
        if obj is None:
            return []
        obj.freed = True
        return self._maybe_delete(object_id, obj)

    def client_gone(self, client: str) -> list[str]:
        """Drop a dead client's pins and free what it owned."""
        released = []
        for oid, obj in list(self.objects.items()):
            obj.pins.pop(client, None)
            if obj.owner == client:
                obj.freed = True
            released += self._maybe_delete(oid, obj)
        return released

    def _maybe_delete(self, object_id: bytes, obj: StoredObject) -> list[str]:
        if not obj.freed or obj.pins:
            return []
        del self.objects[object_id]
        if obj.offset is not None:
            self.arena.free(obj.offset)
        return [obj.spilled[0]] if obj.spilled else []

    # -- spilling -----------------------------------------------------------------------
    def spill_candidates(self, need: int, exclude: bytes | None = None) -> list[bytes]:
        """Least recently used objects in memory, unpinned, sealed, totalling at least `need`."""
        pool = sorted(
            (o.last_use, oid)
            for oid, o in self.objects.items()
            if o.offset is not None
            and o.sealed
            and not o.pins
            and not o.freed
            and not o.secondary
            and oid != exclude
        )
        chosen, total = [], 0
        for _, oid in pool:
            chosen.append(oid)
            total += self.objects[oid].size
            if total >= need:
                break
        return chosen

    def pin_for_spill(self, object_id: bytes) -> tuple[int, int]:
        obj = self.objects[object_id]
        if obj.offset is None:
            raise ValueError(f"object {object_id.hex()} cannot be spilled: it is not in memory")
        obj.pins[SPILLER] = 1
        return obj.offset, obj.size

    def cancel_spill(self, object_id: bytes) -> list[str]:
        """The spill write failed: the object stays in memory as it was."""
        obj = self.objects.get(object_id)
        if obj is None:
            return []
        obj.pins.pop(SPILLER, None)
        return self._maybe_delete(object_id, obj)

    def spilled_to(self, object_id: bytes, path: str, file_offset: int, wrote: bool) -> list[str]:
        """The object's bytes are safe in `path`: give its memory back unless a reader came."""
        obj = self.objects.get(object_id)
        if obj is None:
            return [path] if wrote else []
        obj.pins.pop(SPILLER, None)
        if wrote:
            obj.spilled = (path, file_offset)
            self.spilled_bytes += obj.size
        if obj.freed:
            return self._maybe_delete(object_id, obj)
        if not obj.pins and obj.offset is not None:
            self.arena.free(obj.offset)
            obj.offset = None
        return []

    def restore_allocate(self, object_id: bytes) -> int:
        """Room in memory for a spilled object; raises ObjectStoreFullError if none now."""
        obj = self.objects[object_id]
        offset = self.arena.allocate(obj.size)
        if offset is None:
            raise self._full(obj.size)
        return offset

    def restored(self, object_id: bytes, offset: int) -> None:
        obj = self.objects.get(object_id)
        if obj is None or obj.offset is not None:
            self.arena.free(offset)  # freed, or restored by someone else meanwhile
            return
        obj.offset = offset
        obj.last_use = next(self._clock)
        self.restored_bytes += obj.size

    def spilled_objects(self) -> int:
        return sum(1 for o in self.objects.values() if o.offset is None and o.spilled)
