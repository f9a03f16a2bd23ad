"""ObjectRef: a reference to an immutable remote object, counted by its process."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from skate._serialization import contained_refs_sink
from skate.core_worker import context


class ObjectRef:
    """A handle to an object that may not exist yet; pass it around, `get` its value."""

    __slots__ = ("_id", "_owner", "_core", "__weakref__")

    def __init__(self, object_id: bytes, owner: tuple | None = None, _core: Any = None):
        self._id = object_id
        self._owner = owner  # (worker_id, address) of the owner, or None when owned here
        core = _core if _core is not None else context.current
        self._core = core
        if core is not None:
            core.refs.add_local(object_id, owner)

    def __del__(self) -> None:
        core = self._core
        if core is not None and not core.stopped:
            try:
                core.refs.remove_local(self._id)
            except Exception:
                pass

    def binary(self) -> bytes:
        """The object id as bytes."""
        return self._id

    def hex(self) -> str:
        """The object id as a hex string."""
        return self._id.hex()

    def task_id(self) -> bytes:
        """The id of the task that returns (or put) this object."""
        return self._id[:16]

    def owner_address(self) -> tuple | None:
        """(worker id, address) of the process that owns the object."""
        return self._owner if self._owner is not None else (self._core.owner_address if self._core else None)

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    def __reduce__(self):
        sink = contained_refs_sink()
        if sink is not None:
            sink.append(self)
        return (_rebuild_ref, (self._id, self.owner_address()))

    def __copy__(self) -> ObjectRef:
        return ObjectRef(self._id, self._owner, self._core)

    def __deepcopy__(self, memo) -> ObjectRef:
        return self.__copy__()

    def future(self) -> concurrent.futures.Future:
        """A concurrent.futures.Future that resolves to the object's value."""
        core = self._core or context.current
        if core is None:
            raise RuntimeError("skate is not initialized; call skate.init() first")
        return core.objects.future_for(self)

    def __await__(self):
        return asyncio.wrap_future(self.future()).__await__()


def _rebuild_ref(object_id: bytes, owner) -> ObjectRef:
    core = context.current
    owner = tuple(owner) if owner is not None else None
    if core is not None and owner == core.owner_address:
        owner = None
    return ObjectRef(object_id, owner, core)
