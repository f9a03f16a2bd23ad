"""Values across the client's wire (skate.client.transfer): inline or chunked, same value back."""

from __future__ import annotations

import numpy as np
import pytest

from skate._serialization import serialize
from skate.client.transfer import Assembly, chunk_plan, inline_form, load, parts_of


def test_chunk_plan_covers_every_byte_once():
    plan = chunk_plan([0, 10, 25], chunk=10)
    assert plan == [(1, 0, 10), (2, 0, 10), (2, 10, 10), (2, 20, 5)]


def test_inline_round_trip():
    value = {"a": np.arange(10), "b": "text"}
    form = inline_form(parts_of(serialize(value)))
    back = load(form["i"], form["b"])
    assert np.array_equal(back["a"], value["a"]) and back["b"] == "text"


def test_chunked_round_trip_and_range_checks():
    value = np.arange(1000, dtype=np.int64)
    parts = parts_of(serialize(value))
    sizes = [p.nbytes for p in parts]
    assembly = Assembly(sizes)
    for part, off, n in chunk_plan(sizes, chunk=777):
        assembly.write(part, off, bytes(parts[part][off : off + n]))
    assert assembly.complete
    assert np.array_equal(load(assembly.parts[0], assembly.parts[1:]), value)
    with pytest.raises(ValueError, match="out of range"):
        assembly.write(1, sizes[1], b"x")
