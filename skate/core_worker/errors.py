"""Result entries that make `get` raise: how errors are stored as a call's results."""

from __future__ import annotations

from skate._serialization import KIND_ERROR, deserialize_inline, serialize
from skate.exceptions import RayTaskError
from skate.protocol.messages import INLINE


def error_entry(exc: BaseException) -> tuple:
    """A memory-store entry that makes `get` raise `exc`."""
    return (INLINE, serialize(exc, KIND_ERROR).to_inline())


def is_error_entry(entry: tuple | list) -> bool:
    return entry[0] == INLINE and entry[1][0] == KIND_ERROR


def task_error_entry(function_name: str, exc: BaseException, pid: int, ip: str) -> tuple:
    """The entry for a task that raised `exc`: a RayTaskError that is sure to unpickle.

    An exception that cannot be pickled, or cannot be rebuilt from its pickle (a custom
    __init__ with other arguments), is replaced by an error saying it "isn't serializable"
    and naming its type, so the caller still sees the remote traceback.
    """
    err = RayTaskError.from_exception(function_name, exc, pid, ip)
    try:
        data = serialize(err, KIND_ERROR).to_inline()
        deserialize_inline(data)
        return (INLINE, data)
    except Exception as problem:
        err = err.with_unserializable_cause(problem)
        return (INLINE, serialize(err, KIND_ERROR).to_inline())
