"""The ID types Ray programs import: `NodeID`, `JobID`, `ActorID`, `TaskID`, `WorkerID`.

Skate passes ids around as bytes or hex strings (`get_runtime_context().get_node_id()` is a
hex string); these classes wrap one for programs written against Ray's typed ids. Each type
has a fixed length (the length Skate mints, see skate._ids); two ids are equal only when they
are of the same type and hold the same bytes. As in Ray, the nil id is every byte 0xff, and
`repr` is `NodeID(<hex>)`. Pure values: no I/O, picklable.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, TypeVar

from skate import _ids

_ID = TypeVar("_ID", bound="BaseID")


class BaseID:
    """An immutable id of a fixed number of bytes."""

    __slots__ = ("_bytes",)
    _SIZE: ClassVar[int] = 0

    def __init__(self, id_bytes: bytes):
        if not isinstance(id_bytes, bytes):
            raise TypeError(f"{type(self).__name__} needs bytes, got {type(id_bytes).__name__}")
        if len(id_bytes) != self._SIZE:
            raise ValueError(
                f"{type(self).__name__} needs {self._SIZE} bytes, got {len(id_bytes)}: {id_bytes.hex()!r}"
            )
        self._bytes = id_bytes

    @classmethod
    def size(cls) -> int:
        """The length of this type of id, in bytes."""
        return cls._SIZE

    @classmethod
    def from_binary(cls: type[_ID], id_bytes: bytes) -> _ID:
        return cls(id_bytes)

    @classmethod
    def from_hex(cls: type[_ID], hex_id: str | bytes) -> _ID:
        if isinstance(hex_id, bytes):
            hex_id = hex_id.decode("ascii", errors="replace")
        if not isinstance(hex_id, str):
            raise TypeError(f"{cls.__name__}.from_hex needs a hex string, got {type(hex_id).__name__}")
        try:
            raw = bytes.fromhex(hex_id)
        except ValueError:
            raise ValueError(f"{cls.__name__}.from_hex: {hex_id!r} is not a hex string") from None
        return cls(raw)

    @classmethod
    def nil(cls: type[_ID]) -> _ID:
        """The id that names nothing (every byte 0xff)."""
        return cls(b"\xff" * cls._SIZE)

    @classmethod
    def from_random(cls: type[_ID]) -> _ID:
        return cls(os.urandom(cls._SIZE))

    def binary(self) -> bytes:
        return self._bytes

    def hex(self) -> str:
        return self._bytes.hex()

    def is_nil(self) -> bool:
        return self._bytes == b"\xff" * self._SIZE

    def __bytes__(self) -> bytes:
        return self._bytes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BaseID) and type(other) is type(self) and other._bytes == self._bytes

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._bytes))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._bytes.hex()})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self._bytes,)


class NodeID(BaseID):
    """A node (one raylet) of the cluster."""

    __slots__ = ()
    _SIZE = _ids.NODE_ID_BYTES


class WorkerID(BaseID):
    """A worker or driver process."""

    __slots__ = ()
    _SIZE = _ids.WORKER_ID_BYTES


class ActorID(BaseID):
    """An actor, across its restarts."""

    __slots__ = ()
    _SIZE = _ids.ACTOR_ID_BYTES


class TaskID(BaseID):
    """One task, or one actor call."""

    __slots__ = ()
    _SIZE = _ids.TASK_ID_BYTES


class JobID(BaseID):
    """A job: one driver and everything it started. Skate's job ids are a counter."""

    __slots__ = ()
    _SIZE = _ids.JOB_ID_BYTES

    @classmethod
    def from_int(cls, value: int) -> JobID:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2 ** (8 * cls._SIZE):
            raise ValueError(f"JobID.from_int needs an int in [0, 2**{8 * cls._SIZE}), got {value!r}")
        return cls(value.to_bytes(cls._SIZE, "little"))


class PlacementGroupID(BaseID):
    """A placement group (its hex form names its bundle resources, `CPU_group_<hex>`)."""

    __slots__ = ()
    _SIZE = 18


__all__ = ["ActorID", "BaseID", "JobID", "NodeID", "PlacementGroupID", "TaskID", "WorkerID"]
