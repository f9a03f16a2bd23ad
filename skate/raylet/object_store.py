"""The node's object table: allocations, seals, pins and deferred frees; no I/O.

Each object has one primary pin held for its owner until the owner frees it, plus
read pins per client. Memory is returned to the arena only when both are gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skate.exceptions import ObjectStoreFullError
from skate.raylet.arena import Arena


@dataclass
class StoredObject:
    offset: int
    size: int
    owner: str
    sealed: bool = False
    freed: bool = False  # the owner let go; delete when unpinned
    pins: dict[str, int] = field(default_factory=dict)


class ObjectStore:
    def __init__(self, capacity: int):
        self.arena = Arena(capacity)
        self.objects: dict[bytes, StoredObject] = {}
        self.created_bytes = 0
        self.num_created = 0

    @property
    def capacity(self) -> int:
        return self.arena.capacity

    @property
    def used_bytes(self) -> int:
        return self.arena.used_bytes

    def create(self, object_id: bytes, size: int, owner: str) -> int:
        """Allocate room for an object; raises ObjectStoreFullError when it cannot fit."""
        if object_id in self.objects:
            existing = self.objects[object_id]
            if existing.size == size and not existing.sealed:
                return existing.offset
            raise ValueError(f"object {object_id.hex()} already exists in the store")
        if size > self.arena.capacity:
            raise ObjectStoreFullError(
                f"object of {size} bytes is larger than the object store ({self.arena.capacity} bytes)"
            )
        offset = self.arena.allocate(size)
        if offset is None:
            raise ObjectStoreFullError(
                f"cannot store an object of {size} bytes: {self.arena.used_bytes} of "
                f"{self.arena.capacity} bytes are in use (spilling comes with the memory issue)"
            )
        self.objects[object_id] = StoredObject(offset, size, owner)
        self.created_bytes += size
        self.num_created += 1
        return offset

    def seal(self, object_id: bytes) -> None:
        obj = self.objects.get(object_id)
        if obj is not None:
            obj.sealed = True

    def get(self, object_id: bytes, client: str) -> tuple[int, int] | None:
        """Pin a sealed object for `client`; None when it is not here."""
        obj = self.objects.get(object_id)
        if obj is None or not obj.sealed or obj.freed:
            return None
        obj.pins[client] = obj.pins.get(client, 0) + 1
        return obj.offset, obj.size

    def release(self, object_id: bytes, client: str) -> None:
        obj = self.objects.get(object_id)
        if obj is None:
            return
        n = obj.pins.get(client, 0) - 1
        if n > 0:
            obj.pins[client] = n
        else:
            obj.pins.pop(client, None)
        self._maybe_delete(object_id, obj)

    def free(self, object_id: bytes) -> None:
        obj = self.objects.get(object_id)
        if obj is not None:
            obj.freed = True
            self._maybe_delete(object_id, obj)

    def client_gone(self, client: str) -> None:
        """Drop a dead client's pins and free what it owned."""
        for oid, obj in list(self.objects.items()):
            obj.pins.pop(client, None)
            if obj.owner == client:
                obj.freed = True
            self._maybe_delete(oid, obj)

    def _maybe_delete(self, object_id: bytes, obj: StoredObject) -> None:
        if obj.freed and not obj.pins:
            del self.objects[object_id]
            self.arena.free(obj.offset)
