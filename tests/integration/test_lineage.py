"""Objects whose only copy was on a dead node are rebuilt by running their task again."""

from __future__ import annotations

import numpy as np
import pytest

import skate
from tests.integration import _cluster_helpers

MB = 1024 * 1024
multinode = _cluster_helpers.multinode  # the fixture: a 1-CPU head


def test_lost_result_is_rebuilt_on_another_node(multinode):
    doomed = multinode.add_node(num_cpus=1, resources={"zone": 1}, object_store_memory=200 * MB)
    skate.init(address=multinode.address)

    @skate.remote(resources={"zone": 1}, max_retries=2)
    def make(n):
        return np.full(n, 7, dtype=np.int64)

    ref = make.remote(2_000_000)  # 16 MB: stored on the doomed node only
    skate.wait([ref], fetch_local=False, timeout=60)
    multinode.remove_node(doomed)
    multinode.add_node(num_cpus=1, resources={"zone": 1}, object_store_memory=200 * MB)
    arr = skate.get(ref, timeout=60)
    assert arr.shape == (2_000_000,) and int(arr[-1]) == 7


def test_lost_result_without_retries_raises_object_lost(multinode):
    doomed = multinode.add_node(num_cpus=1, resources={"zone": 1}, object_store_memory=200 * MB)
    skate.init(address=multinode.address)

    @skate.remote(resources={"zone": 1}, max_retries=0)
    def make(n):
        return np.zeros(n, dtype=np.int64)

    ref = make.remote(2_000_000)
    skate.wait([ref], fetch_local=False, timeout=60)
    multinode.remove_node(doomed)
    with pytest.raises(skate.exceptions.ObjectLostError):
        skate.get(ref, timeout=60)


def test_a_lost_argument_is_rebuilt_for_a_task_on_another_node(multinode):
    """Regression: the reader used to fail with AttributeError ('_IdOnly' has no '_owner')."""
    doomed = multinode.add_node(num_cpus=1, resources={"zone": 1}, object_store_memory=200 * MB)
    skate.init(address=multinode.address)

    @skate.remote(resources={"zone": 1}, max_retries=2)
    def make(n):
        return np.full(n, 7, dtype=np.int64)

    @skate.remote(num_cpus=1)
    def total(arr):
        return int(arr.sum())

    ref = make.remote(2_000_000)
    skate.wait([ref], fetch_local=False, timeout=60)
    multinode.remove_node(doomed)
    multinode.add_node(num_cpus=1, resources={"zone": 1}, object_store_memory=200 * MB)
    assert skate.get(total.remote(ref), timeout=90) == 7 * 2_000_000


def test_a_borrower_reading_a_lost_object_gets_it_rebuilt_by_the_owner(multinode):
    doomed = multinode.add_node(num_cpus=1, resources={"zone": 1}, object_store_memory=200 * MB)
    skate.init(address=multinode.address)

    @skate.remote(resources={"zone": 1}, max_retries=2)
    def make(n):
        return np.full(n, 3, dtype=np.int64)

    @skate.remote(num_cpus=1)
    def read_nested(refs):
        return int(skate.get(refs[0]).sum())  # a borrowed ref: this worker is not its owner

    ref = make.remote(2_000_000)
    skate.wait([ref], fetch_local=False, timeout=60)
    multinode.remove_node(doomed)
    multinode.add_node(num_cpus=1, resources={"zone": 1}, object_store_memory=200 * MB)
    assert skate.get(read_nested.remote([ref]), timeout=90) == 3 * 2_000_000


def test_lineage_pins_the_arguments_a_rebuild_needs(multinode):
    doomed = multinode.add_node(num_cpus=1, resources={"zone": 1}, object_store_memory=200 * MB)
    skate.init(address=multinode.address)

    @skate.remote(resources={"zone": 1}, max_retries=2)
    def double(arr):
        return arr * 2

    arg = skate.put(np.full(2_000_000, 5, dtype=np.int64))  # in the head's store
    ref = double.remote(arg)
    skate.wait([ref], fetch_local=False, timeout=60)
    del arg  # only the lineage of `ref` still needs it
    multinode.remove_node(doomed)
    multinode.add_node(num_cpus=1, resources={"zone": 1}, object_store_memory=200 * MB)
    arr = skate.get(ref, timeout=90)
    assert int(arr[0]) == 10 and arr.shape == (2_000_000,)


def test_a_put_object_lost_with_its_node_names_the_object(multinode):
    doomed = multinode.add_node(num_cpus=1, resources={"zone": 1}, object_store_memory=200 * MB)
    skate.init(address=multinode.address)

    @skate.remote(resources={"zone": 1})
    class Keeper:
        def make(self, n):
            self.ref = skate.put(np.zeros(n, dtype=np.int64))
            return [self.ref]

    k = Keeper.remote()
    inner = skate.get(k.make.remote(2_000_000), timeout=60)[0]
    multinode.remove_node(doomed)
    with pytest.raises(skate.exceptions.ObjectLostError) as info:
        skate.get(inner, timeout=60)
    assert inner.hex() in str(info.value)
