"""Objects whose only copy was on a dead node are rebuilt by running their task again."""

from __future__ import annotations

import numpy as np
import pytest

import skate
from skate.cluster_utils import Cluster

MB = 1024 * 1024


@pytest.fixture
def two_nodes():
    if skate.is_initialized():
        skate.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 200 * MB})
    try:
        yield cluster
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()


def test_lost_result_is_rebuilt_on_another_node(two_nodes):
    doomed = two_nodes.add_node(num_cpus=1, resources={"zone": 1}, object_store_memory=200 * MB)
    skate.init(address=two_nodes.address)

    @skate.remote(resources={"zone": 1}, max_retries=2)
    def make(n):
        return np.full(n, 7, dtype=np.int64)

    ref = make.remote(2_000_000)  # 16 MB: stored on the doomed node only
    skate.wait([ref], fetch_local=False, timeout=60)
    two_nodes.remove_node(doomed)
    two_nodes.add_node(num_cpus=1, resources={"zone": 1}, object_store_memory=200 * MB)
    arr = skate.get(ref, timeout=60)
    assert arr.shape == (2_000_000,) and int(arr[-1]) == 7


def test_lost_result_without_retries_raises_object_lost(two_nodes):
    doomed = two_nodes.add_node(num_cpus=1, resources={"zone": 1}, object_store_memory=200 * MB)
    skate.init(address=two_nodes.address)

    @skate.remote(resources={"zone": 1}, max_retries=0)
    def make(n):
        return np.zeros(n, dtype=np.int64)

    ref = make.remote(2_000_000)
    skate.wait([ref], fetch_local=False, timeout=60)
    two_nodes.remove_node(doomed)
    with pytest.raises(skate.exceptions.ObjectLostError):
        skate.get(ref, timeout=60)
