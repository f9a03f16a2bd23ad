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
