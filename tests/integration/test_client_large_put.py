"""A client's large put of a value without refs is written by its proxy straight into the
object store as it arrives; one that holds refs takes the path that registers them."""

from __future__ import annotations

import numpy as np
import pytest

import skate
from skate.core_worker import context
from tests.integration._client_helpers import Head

MB = 1024 * 1024


@pytest.fixture
def head():
    if skate.is_initialized():
        skate.shutdown()
    h = Head(num_cpus=2)
    yield h
    if skate.is_initialized():
        skate.shutdown()
    h.stop()


@skate.remote
def total(arr):
    return int(arr.sum())


@skate.remote
def inner_value(box):
    return skate.get(box["ref"])


def _puts_into_store() -> int:
    return context.current.call("stats")["puts_into_store"]


@pytest.mark.timeout(120)
def test_a_large_put_goes_straight_into_the_store_and_reads_back(head):
    skate.init(head.client_address)
    arr = np.arange(3 * MB, dtype=np.int64)  # 24 MiB: uploaded in chunks
    ref = skate.put(arr)
    arr[0] = 99  # the put took the value as it was
    assert _puts_into_store() == 1
    back = skate.get(ref)
    assert back[0] == 0 and np.array_equal(back[1:], arr[1:])
    assert skate.get(total.remote(ref)) == int(np.arange(3 * MB, dtype=np.int64).sum())
    assert skate.get(skate.put({"a": arr, "b": [1, 2]}))["b"] == [1, 2]
    assert _puts_into_store() == 2


@pytest.mark.timeout(120)
def test_a_large_put_holding_refs_keeps_them(head):
    skate.init(head.client_address)
    inner = skate.put("inside")
    outer = skate.put({"ref": inner, "pad": np.zeros(6 * MB, dtype=np.uint8)})
    del inner
    assert _puts_into_store() == 0  # the proxy unpickled it and registered the ref
    assert skate.get(skate.get(outer)["ref"]) == "inside"
    assert skate.get(inner_value.remote(outer)) == "inside"
