"""Objects moving between the nodes of a cluster: task outputs, puts, many readers."""

from __future__ import annotations

import numpy as np

import skate
from tests.integration import _cluster_helpers
from tests.integration._cluster_helpers import node_args

multinode = _cluster_helpers.multinode  # the fixture

N = 10_000_000  # int64: 80 MB


@skate.remote
def make_array(n: int):
    return np.arange(n, dtype=np.int64)


@skate.remote
def summarize(a):
    return (
        int(a[0]),
        int(a[-1]),
        int(a.sum() % 1_000_003),
        a.nbytes,
        skate.get_runtime_context().get_node_id(),
    )


def _expected(n: int) -> tuple[int, int, int, int]:
    return 0, n - 1, (n * (n - 1) // 2) % 1_000_003, n * 8


def test_large_object_made_on_one_node_read_on_another_and_by_driver(multinode):
    red = multinode.add_node(**node_args(num_cpus=1, resources={"red": 1}))
    blue = multinode.add_node(**node_args(num_cpus=1, resources={"blue": 1}))
    skate.init(address=multinode.address)
    ref = make_array.options(resources={"red": 1}).remote(N)
    *summary, node = skate.get(summarize.options(resources={"blue": 1}).remote(ref), timeout=60)
    assert tuple(summary) == _expected(N)
    assert node == blue.node_id
    value = skate.get(ref, timeout=60)  # from the red node to the driver's (head) node
    assert value.dtype == np.int64 and value.shape == (N,)
    assert int(value[123_456]) == 123_456 and int(value[-1]) == N - 1
    assert np.array_equal(value[::100_000], np.arange(0, N, 100_000))
    assert red.node_id != blue.node_id


def test_driver_put_read_on_another_node(multinode):
    blue = multinode.add_node(**node_args(num_cpus=1, resources={"blue": 1}))
    skate.init(address=multinode.address)
    rng = np.random.default_rng(7)
    data = rng.integers(0, 2**31, size=3_000_000, dtype=np.int64)  # 24 MB: in the store
    ref = skate.put(data)
    small = skate.put({"k": [1, 2, 3]})  # small: travels inline

    @skate.remote(resources={"blue": 1})
    def check(a, d):
        return int(a.sum() % 1_000_003), a.shape, d, skate.get_runtime_context().get_node_id()

    got = skate.get(check.remote(ref, small), timeout=60)
    assert got == (int(data.sum() % 1_000_003), data.shape, {"k": [1, 2, 3]}, blue.node_id)


def test_refs_nested_in_arguments_are_fetched_on_the_other_node(multinode):
    blue = multinode.add_node(**node_args(num_cpus=1, resources={"blue": 1}))
    skate.init(address=multinode.address)
    refs = [skate.put(np.full(1_000_000, i, dtype=np.int64)) for i in range(3)]

    @skate.remote(resources={"blue": 1})
    def total(nested):
        arrays = skate.get(nested["refs"], timeout=60)
        return [int(a[0]) for a in arrays], skate.get_runtime_context().get_node_id()

    assert skate.get(total.remote({"refs": refs}), timeout=60) == ([0, 1, 2], blue.node_id)


def test_concurrent_readers_of_one_remote_object(multinode):
    red = multinode.add_node(**node_args(num_cpus=1, resources={"red": 1}))
    blue = multinode.add_node(**node_args(num_cpus=4, resources={"blue": 4}))
    skate.init(address=multinode.address)
    n = 5_000_000  # 40 MB
    ref = make_array.options(resources={"red": 1}).remote(n)
    skate.wait([ref], timeout=60)
    readers = [summarize.options(resources={"blue": 1}, num_cpus=0.5).remote(ref) for _ in range(6)]
    results = skate.get(readers, timeout=60)
    assert all(tuple(r[:4]) == _expected(n) for r in results), results
    assert {r[4] for r in results} == {blue.node_id}
    assert red.node_id != blue.node_id


def test_objects_returned_from_a_chain_across_three_nodes(multinode):
    multinode.add_node(**node_args(num_cpus=1, resources={"red": 1}))
    multinode.add_node(**node_args(num_cpus=1, resources={"blue": 1}))
    skate.init(address=multinode.address)

    @skate.remote
    def bump(a):
        return a + 1

    ref = skate.put(np.zeros(2_000_000, dtype=np.int64))  # 16 MB, on the head
    for color in ["red", "blue", "red", "blue"]:
        ref = bump.options(resources={color: 1}).remote(ref)
    out = skate.get(ref, timeout=60)
    assert out.shape == (2_000_000,) and int(out.min()) == 4 and int(out.max()) == 4
