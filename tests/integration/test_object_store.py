"""The shared-memory object store of a small (50 MiB) cluster: full, reuse and freeing."""

from __future__ import annotations

import numpy as np
import pytest

from skate.exceptions import ObjectStoreFullError

MiB = 1024 * 1024
STORE = 50 * MiB


def _array(nbytes: int, fill: float) -> np.ndarray:
    return np.full(nbytes // 8, fill, dtype=np.float64)


@pytest.fixture
def small_store(fresh):
    skate = fresh
    skate.init(num_cpus=2, object_store_memory=STORE)
    yield skate
    skate.shutdown()


def test_put_larger_than_the_store_raises(small_store):
    skate = small_store
    with pytest.raises(ObjectStoreFullError):
        skate.put(_array(60 * MiB, 1.0))
    # nothing broke: small and large puts still work
    assert skate.get(skate.put("small"), timeout=30) == "small"
    ref = skate.put(_array(10 * MiB, 2.0))
    assert skate.get(ref, timeout=30)[0] == 2.0


def test_put_and_drop_reuses_memory(small_store):
    skate = small_store
    for i in range(20):
        ref = skate.put(_array(30 * MiB, float(i)))
        value = skate.get(ref, timeout=30)
        assert value[0] == i and value[-1] == i
        del ref, value


def test_deleted_object_frees_its_space(small_store):
    skate = small_store
    ref = skate.put(_array(40 * MiB, 1.0))
    assert skate.get(ref, timeout=30)[123] == 1.0
    del ref
    ref = skate.put(_array(45 * MiB, 2.0))
    assert skate.get(ref, timeout=30)[456] == 2.0


def test_large_task_returns_are_freed(small_store):
    skate = small_store

    @skate.remote
    def make(n, fill):
        return np.full(n // 8, fill, dtype=np.float64)

    for i in range(8):
        value = skate.get(make.remote(30 * MiB, float(i)), timeout=30)
        assert value[0] == i
        del value


def test_large_task_arguments_are_freed(small_store):
    skate = small_store

    @skate.remote
    def first(arr):
        return float(arr[0])

    for i in range(8):
        assert skate.get(first.remote(_array(30 * MiB, float(i))), timeout=30) == i


def test_unused_task_return_is_freed(small_store):
    skate = small_store

    @skate.remote
    def make(n):
        return np.ones(n // 8)

    # The driver never holds the return: the store must not keep it.
    for _ in range(6):
        ref = make.remote(30 * MiB)
        ready, _ = skate.wait([ref], timeout=30)
        assert ready == [ref]
        del ref
    ref = skate.put(_array(40 * MiB, 3.0))
    assert skate.get(ref, timeout=30)[0] == 3.0
