"""Turning values into bytes once: pickle protocol 5 with out-of-band buffers.

A serialized object is (kind, inband, buffers). Small objects travel inline as
[kind, inband, [buffer bytes...]]; large ones are laid out in the shared-memory store as

    u32 header length | msgpack [kind, inband length, [buffer lengths]] | pad | inband | pad | buf0 | ...

with every buffer 64-byte aligned, so numpy arrays read back as zero-copy views.
Refs met while pickling are collected, so the caller can count them as contained.
"""

from __future__ import annotations

import io
import pickle
import struct
import threading
import types
from collections import ChainMap
from collections.abc import Callable
from typing import Any

import cloudpickle
import msgspec

from skate._config import ARENA_ALIGNMENT

KIND_VALUE = 0
KIND_ERROR = 1  # a pickled exception: get raises it

_SIMPLE_TYPES = frozenset({int, float, str, bytes, bool, type(None), complex})
_U32 = struct.Struct("<I")
_pack_header = msgspec.msgpack.Encoder().encode
_unpack_header = msgspec.msgpack.Decoder().decode

_local = threading.local()

# Custom serializers (skate.util.register_serializer), per process. While none is registered,
# `_dumps` is cloudpickle.dumps itself: the put/task path pays nothing for the feature.
_custom_reducers: dict[type, Callable] = {}
_dumps: Callable = cloudpickle.dumps

# Values of these exact types never reach a dispatch table (the simple ones skip pickling's
# generic path here; the pickler writes the others itself), so a serializer for them could
# never run: registering one is refused.
_UNREGISTRABLE = _SIMPLE_TYPES | {list, tuple, dict, set, frozenset, bytearray, type, types.FunctionType}


class _CustomPickler(cloudpickle.CloudPickler):
    """cloudpickle with the registered reducers looked up first (by exact type)."""

    dispatch_table = ChainMap(_custom_reducers, cloudpickle.CloudPickler.dispatch_table)


def _dumps_custom(value: Any, protocol: int, buffer_callback: Callable | None = None) -> bytes:
    out = io.BytesIO()
    _CustomPickler(out, protocol=protocol, buffer_callback=buffer_callback).dump(value)
    return out.getvalue()


def register_reducer(cls: type, serializer: Callable, deserializer: Callable) -> None:
    """Pickle instances of exactly `cls` as deserializer(serializer(obj)) from now on, in this
    process. The deserializer travels with each object (pickled by cloudpickle), so the
    process that reads it needs no registration."""
    global _dumps
    if not isinstance(cls, type):
        raise TypeError(f"register_serializer: cls must be a class, got {type(cls).__name__} {cls!r}")
    if cls in _UNREGISTRABLE:
        raise TypeError(
            f"register_serializer: values of the built-in type {cls.__name__} are written by pickle "
            "itself and cannot have a custom serializer (register a subclass instead)"
        )
    for what, fn in (("serializer", serializer), ("deserializer", deserializer)):
        if not callable(fn):
            raise TypeError(f"register_serializer: {what} must be callable, got {type(fn).__name__} {fn!r}")

    def reduce(obj: Any) -> tuple:
        return deserializer, (serializer(obj),)

    _custom_reducers[cls] = reduce
    _dumps = _dumps_custom


def unregister_reducer(cls: type) -> None:
    """Forget the custom serializer of `cls` in this process (nothing happens if none)."""
    global _dumps
    _custom_reducers.pop(cls, None)
    if not _custom_reducers:
        _dumps = cloudpickle.dumps


class SerializedObject:
    __slots__ = ("kind", "inband", "buffers", "contained_refs", "size")

    def __init__(self, kind: int, inband: bytes, buffers: list, contained_refs: list):
        self.kind = kind
        self.inband = inband
        self.buffers = buffers
        self.contained_refs = contained_refs
        self.size = len(inband) + sum(b.nbytes for b in buffers)

    def to_inline(self) -> list:
        return [self.kind, self.inband, [bytes(b) for b in self.buffers]]


def contained_refs_sink() -> list | None:
    """The list collecting refs pickled on this thread right now, if any."""
    return getattr(_local, "refs", None)


def serialize(value: Any, kind: int = KIND_VALUE) -> SerializedObject:
    """Pickle a value once; raises TypeError naming what could not be pickled."""
    if type(value) in _SIMPLE_TYPES:
        return SerializedObject(kind, pickle.dumps(value, 5), [], [])
    refs: list = []
    buffers: list = []
    previous = getattr(_local, "refs", None)
    _local.refs = refs
    try:
        inband = _dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:
        raise TypeError(f"Could not serialize {_describe(value)}: {exc}") from exc
    finally:
        _local.refs = previous
    return SerializedObject(kind, inband, [b.raw() for b in buffers], refs)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"object of type {type(value).__name__} ({text})"


def deserialize_inline(data: list) -> tuple[int, Any]:
    kind, inband, buffers = data
    return kind, pickle.loads(inband, buffers=buffers)


def _align(n: int) -> int:
    return (n + ARENA_ALIGNMENT - 1) & ~(ARENA_ALIGNMENT - 1)


def store_layout(obj: SerializedObject) -> tuple[bytes, list[int], int]:
    """Header bytes, the offset of inband then of each buffer, and the total size."""
    return layout_for(obj.kind, len(obj.inband), [b.nbytes for b in obj.buffers])


def layout_for(kind: int, inband_len: int, buffer_lens: list[int]) -> tuple[bytes, list[int], int]:
    """`store_layout` of an object known only by its parts' sizes (one still arriving)."""
    header = _pack_header([kind, inband_len, list(buffer_lens)])
    offsets = []
    pos = _align(_U32.size + len(header))
    offsets.append(pos)
    pos = _align(pos + inband_len)
    for n in buffer_lens:
        offsets.append(pos)
        pos = _align(pos + n)
    return _U32.pack(len(header)) + header, offsets, pos


def write_to_buffer(obj: SerializedObject, dest: memoryview, layout=None) -> None:
    """Copy a serialized object into `dest` (a writable view of its store allocation)."""
    header, offsets, _ = layout or store_layout(obj)
    dest[: len(header)] = header
    start = offsets[0]
    dest[start : start + len(obj.inband)] = obj.inband
    for off, b in zip(offsets[1:], obj.buffers):
        n = b.nbytes
        if n:
            dest[off : off + n] = b.cast("B") if b.format != "B" or b.ndim != 1 else b


def read_from_buffer(view: memoryview) -> tuple[int, Any]:
    """Unpickle an object laid out by write_to_buffer; buffers stay views onto `view`."""
    (hlen,) = _U32.unpack_from(view, 0)
    kind, inband_len, buf_lens = _unpack_header(view[_U32.size : _U32.size + hlen])
    pos = _align(_U32.size + hlen)
    inband = view[pos : pos + inband_len]
    pos = _align(pos + inband_len)
    buffers = []
    for n in buf_lens:
        buffers.append(view[pos : pos + n])
        pos = _align(pos + n)
    return kind, pickle.loads(inband, buffers=buffers)
