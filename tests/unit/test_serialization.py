"""Serialization: inline values, cloudpickle closures, and zero-copy store layout."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

from skate._serialization import (
    KIND_ERROR,
    KIND_VALUE,
    contained_refs_sink,
    deserialize_inline,
    read_from_buffer,
    serialize,
    store_layout,
    write_to_buffer,
)


def inline_round_trip(value, kind=KIND_VALUE):
    data = serialize(value, kind).to_inline()
    # The inline form must itself survive the wire (msgpack-friendly lists of bytes).
    assert isinstance(data, list) and isinstance(data[1], bytes)
    assert all(isinstance(b, bytes) for b in data[2])
    return deserialize_inline(data)


def store_round_trip(value, kind=KIND_VALUE):
    obj = serialize(value, kind)
    header, offsets, total = store_layout(obj)
    backing = bytearray(total)
    view = memoryview(backing)
    write_to_buffer(obj, view, (header, offsets, total))
    out_kind, out = read_from_buffer(view)
    return obj, offsets, total, backing, out_kind, out


@pytest.mark.parametrize(
    "value",
    [0, -5, 2**80, 1.5, float("inf"), "text", "ünïcødé", b"\x00\xff", True, None, 3 + 4j],
)
def test_simple_values_round_trip(value):
    kind, out = inline_round_trip(value)
    assert kind == KIND_VALUE
    assert out == value and type(out) is type(value)


def test_nested_values_round_trip():
    value = {
        "list": [1, 2.0, "three", (4, 5)],
        "tuple": (None, {"deep": [b"bytes", {6, 7}]}),
        7: frozenset({1, 2}),
    }
    kind, out = inline_round_trip(value)
    assert out == value
    assert isinstance(out["tuple"], tuple) and isinstance(out["tuple"][1]["deep"][1], set)


def test_kind_is_kept():
    kind, out = inline_round_trip(ValueError("boom"), KIND_ERROR)
    assert kind == KIND_ERROR
    assert isinstance(out, ValueError) and out.args == ("boom",)


def test_size_counts_inband_and_buffers():
    arr = np.zeros(1000, dtype=np.uint8)
    obj = serialize(arr)
    assert obj.size == len(obj.inband) + 1000
    small = serialize(5)
    assert small.size == len(small.inband)


def test_lambda_and_closure_round_trip():
    offset = 10
    scale = {"factor": 3}

    def make_adder(n):
        return lambda x: x + n + offset

    def closure(x):
        return x * scale["factor"]

    _, add = inline_round_trip(make_adder(5))
    _, mul = inline_round_trip(closure)
    assert add(1) == 16
    assert mul(4) == 12
    # Defined locally, so plain pickle cannot do this: the cloudpickle path is required.
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(closure)


def test_locally_defined_class_round_trip():
    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def norm2(self):
            return self.x**2 + self.y**2

    _, out = inline_round_trip(Point(3, 4))
    assert out.norm2() == 25


def test_numpy_inline_round_trip():
    arr = np.arange(100, dtype=np.int32).reshape(10, 10)
    obj = serialize(arr)
    assert len(obj.buffers) == 1  # out of band, not copied into the pickle stream
    _, out = deserialize_inline(obj.to_inline())
    np.testing.assert_array_equal(out, arr)
    assert out.dtype == arr.dtype


def test_numpy_store_round_trip_is_zero_copy():
    arr = np.arange(10_000, dtype=np.float64).reshape(100, 100)
    obj, offsets, total, backing, kind, out = store_round_trip(arr)
    assert kind == KIND_VALUE
    np.testing.assert_array_equal(out, arr)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    raw = np.frombuffer(backing, dtype=np.uint8)
    assert np.shares_memory(out, raw)
    assert not np.shares_memory(out, arr)
    # The array's data sits exactly at the buffer offset in the layout.
    assert out.__array_interface__["data"][0] - raw.__array_interface__["data"][0] == offsets[1]
    # Writing through the backing store shows in the array: it is a view.
    backing[offsets[1] : offsets[1] + 8] = np.float64(-1.0).tobytes()
    assert out[0, 0] == -1.0


def test_store_layout_offsets_are_aligned():
    value = {
        "a": np.ones(3, dtype=np.uint8),  # odd sizes, so padding matters
        "b": np.arange(7, dtype=np.int16),
        "c": np.zeros((5, 3), dtype=np.float32),
        "meta": "x" * 13,
    }
    obj, offsets, total, backing, _, out = store_round_trip(value)
    assert len(obj.buffers) == 3
    assert len(offsets) == 1 + len(obj.buffers)
    assert all(off % 64 == 0 for off in offsets)
    assert total % 64 == 0
    assert offsets == sorted(offsets)
    assert total >= offsets[-1] + obj.buffers[-1].nbytes
    raw = np.frombuffer(backing, dtype=np.uint8)
    for key in ("a", "b", "c"):
        np.testing.assert_array_equal(out[key], value[key])
        assert np.shares_memory(out[key], raw)
    assert out["meta"] == value["meta"]


def test_arrays_are_64_byte_aligned_in_an_aligned_buffer():
    value = [np.arange(n, dtype=np.float64) for n in (1, 3, 17, 100)]
    obj = serialize(value)
    header, offsets, total = store_layout(obj)
    # Backing memory whose start is 64-byte aligned, like the shared-memory arena.
    storage = np.zeros(total + 64, dtype=np.uint8)
    start = (-storage.ctypes.data) % 64
    view = memoryview(storage[start : start + total])
    write_to_buffer(obj, view)
    _, out = read_from_buffer(view)
    for a, b in zip(out, value):
        np.testing.assert_array_equal(a, b)
        assert a.ctypes.data % 64 == 0


def test_fortran_and_noncontiguous_arrays():
    f = np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4))
    strided = np.arange(20)[::3]
    *_, out = store_round_trip({"f": f, "s": strided})
    np.testing.assert_array_equal(out["f"], f)
    assert out["f"].flags.f_contiguous
    np.testing.assert_array_equal(out["s"], strided)


def test_store_round_trip_of_plain_values_and_errors():
    *_, kind, out = store_round_trip({"x": [1, 2, 3]})
    assert out == {"x": [1, 2, 3]}
    *_, kind, out = store_round_trip(KeyError("k"), KIND_ERROR)
    assert kind == KIND_ERROR and isinstance(out, KeyError)


def test_empty_array_round_trip():
    *_, out = store_round_trip(np.zeros(0, dtype=np.float32))
    assert out.shape == (0,) and out.dtype == np.float32


def test_unpicklable_value_raises_type_error_naming_it():
    with pytest.raises(TypeError) as info:
        serialize(threading.Lock())
    assert "lock" in str(info.value).lower()


def test_unpicklable_value_nested_in_container():
    with pytest.raises(TypeError) as info:
        serialize({"ok": 1, "bad": [threading.Lock()]})
    assert "lock" in str(info.value).lower()


def test_refs_sink_is_restored_after_serialize():
    assert contained_refs_sink() is None
    serialize([1, 2, 3])
    assert contained_refs_sink() is None
    with pytest.raises(TypeError):
        serialize(threading.Lock())
    assert contained_refs_sink() is None
    assert serialize({"a": 1}).contained_refs == []
