"""Scheduling across the nodes of a cluster: resources, spillback, SPREAD, node affinity."""

from __future__ import annotations

import time

import pytest

import skate
from skate.exceptions import GetTimeoutError, RayError
from skate.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tests.integration import _cluster_helpers
from tests.integration._cluster_helpers import (
    STORE,
    alive_nodes,
    node_args,
    raylets_see,
)
from tests.integration._helpers import wait_for

multinode = _cluster_helpers.multinode  # the fixture


@skate.remote
def where(seconds: float = 0.0):
    time.sleep(seconds)
    return skate.get_runtime_context().get_node_id()


@skate.remote(num_cpus=1)
def timed_where(seconds: float):
    start = time.time()
    time.sleep(seconds)
    return skate.get_runtime_context().get_node_id(), start, time.time()


def test_tasks_follow_custom_resources(multinode):
    red = multinode.add_node(**node_args(num_cpus=1, resources={"red": 2}))
    blue = multinode.add_node(**node_args(num_cpus=1, resources={"blue": 1}))
    skate.init(address=multinode.address)
    reds = skate.get([where.options(resources={"red": 1}).remote() for _ in range(4)], timeout=60)
    blues = skate.get([where.options(resources={"blue": 1}).remote() for _ in range(3)], timeout=60)
    assert set(reds) == {red.node_id}
    assert set(blues) == {blue.node_id}
    # A task that needs nothing special can run on the driver's node.
    assert skate.get(where.remote(), timeout=60) in {multinode.head_node.node_id, red.node_id, blue.node_id}


def test_node_resource_names_each_node(multinode):
    worker = multinode.add_node(**node_args(num_cpus=1))
    skate.init(address=multinode.address)
    by_id = {n["NodeID"]: n for n in skate.nodes()}
    assert "node:__internal_head__" in by_id[multinode.head_node.node_id]["Resources"]
    assert "node:__internal_head__" not in by_id[worker.node_id]["Resources"]
    head_only = where.options(resources={"node:__internal_head__": 0.01})
    assert skate.get([head_only.remote() for _ in range(3)], timeout=60) == [multinode.head_node.node_id] * 3


def test_infeasible_task_waits_for_a_node_that_fits(multinode):
    skate.init(address=multinode.address)
    ref = where.options(resources={"green": 1}).remote()
    ready, not_ready = skate.wait([ref], timeout=1.5)
    assert ready == [] and not_ready == [ref]
    green = multinode.add_node(**node_args(num_cpus=1, resources={"green": 1}))
    assert skate.get(ref, timeout=60) == green.node_id


def test_infeasible_actor_waits_for_a_node_that_fits(multinode):
    skate.init(address=multinode.address)

    @skate.remote(resources={"violet": 1})
    class Where:
        def node(self):
            return skate.get_runtime_context().get_node_id()

    actor = Where.remote()
    ref = actor.node.remote()
    assert skate.wait([ref], timeout=1.5)[0] == []
    violet = multinode.add_node(**node_args(num_cpus=1, resources={"violet": 1}))
    assert skate.get(ref, timeout=60) == violet.node_id


def test_spillback_uses_the_second_node(multinode):
    worker = multinode.add_node(**node_args(num_cpus=1))
    skate.init(address=multinode.address)
    assert raylets_see(multinode)  # else the head's raylet cannot spill to the new node yet
    start = time.monotonic()
    results = skate.get([timed_where.remote(1.0) for _ in range(2)], timeout=60)
    elapsed = time.monotonic() - start
    assert {nid for nid, _, _ in results} == {multinode.head_node.node_id, worker.node_id}, results
    assert elapsed < 1.8, elapsed


def test_queued_task_spills_when_another_node_frees_up(multinode):
    """A lease request queued on a full node moves to another node once that one has room
    (Ray re-evaluates queued work whenever the cluster's resource view changes)."""
    worker = multinode.add_node(**node_args(num_cpus=1))
    skate.init(address=multinode.address)
    pinned = timed_where.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(worker.node_id, soft=False)
    ).remote(1.0)
    # Wait until the worker node is seen busy, so the next two tasks cannot both go anywhere now.
    assert wait_for(lambda: skate.available_resources().get("CPU", 0) == 1, timeout=10)
    start = time.monotonic()
    refs = [timed_where.remote(2.0) for _ in range(2)]
    assert skate.get(pinned, timeout=60)[0] == worker.node_id
    results = skate.get(refs, timeout=60)
    elapsed = time.monotonic() - start
    # One runs on the head at once; the other starts on the worker node when it frees (~1 s),
    # instead of waiting for the head (~2 s).
    assert {nid for nid, _, _ in results} == {multinode.head_node.node_id, worker.node_id}, results
    assert elapsed < 3.6, elapsed


def test_concurrent_spillbacks_use_every_node(multinode):
    """Several lease requests spilled at once are spread over the nodes with room, not all
    sent to the one that looked freest (Ray subtracts what it sends from its view of a node)."""
    for _ in range(2):
        multinode.add_node(**node_args(num_cpus=1))
    skate.init(address=multinode.address)
    assert raylets_see(multinode)  # the head's raylet can spill to the new nodes
    results = skate.get([timed_where.remote(0.6) for _ in range(6)], timeout=60)
    assert len({nid for nid, _, _ in results}) == 3, results
    # 3 CPUs in all: 6 tasks of 0.6 s take two waves.
    span = max(e for _, _, e in results) - min(s for _, s, _ in results)
    assert 1.1 < span < 1.9, span


def test_spread_uses_several_nodes(multinode):
    for _ in range(2):
        multinode.add_node(**node_args(num_cpus=2))
    skate.init(address=multinode.address)
    assert raylets_see(multinode)  # the head's raylet can spill to the new nodes
    # Small tasks: any one node could run them all at once, so only SPREAD spreads them.
    spread = where.options(scheduling_strategy="SPREAD", num_cpus=0.25)
    nodes = skate.get([spread.remote(0.3) for _ in range(4)], timeout=60)
    assert len(set(nodes)) >= 2, nodes

    @skate.remote(num_cpus=0.25, scheduling_strategy="SPREAD")
    def where_spread(seconds):
        time.sleep(seconds)
        return skate.get_runtime_context().get_node_id()

    nodes = skate.get([where_spread.remote(0.3) for _ in range(6)], timeout=60)
    assert len(set(nodes)) == 3, nodes


def test_node_affinity_hard_runs_on_that_node(multinode):
    worker = multinode.add_node(**node_args(num_cpus=1))
    skate.init(address=multinode.address)
    for node_id in (worker.node_id, multinode.head_node.node_id):
        strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
        got = skate.get([where.options(scheduling_strategy=strategy).remote() for _ in range(3)], timeout=60)
        assert got == [node_id] * 3


def test_node_affinity_hard_waits_for_a_busy_node(multinode):
    worker = multinode.add_node(**node_args(num_cpus=1))
    skate.init(address=multinode.address)
    strategy = NodeAffinitySchedulingStrategy(worker.node_id, soft=False)
    refs = [timed_where.options(scheduling_strategy=strategy).remote(0.5) for _ in range(3)]
    results = skate.get(refs, timeout=60)
    assert [nid for nid, _, _ in results] == [worker.node_id] * 3  # queued there, never spilled
    intervals = sorted((s, e) for _, s, e in results)
    assert all(intervals[i][1] <= intervals[i + 1][0] + 0.05 for i in range(2)), intervals


def test_node_affinity_soft_to_dead_or_unknown_node_runs_elsewhere(multinode):
    doomed = multinode.add_node(**node_args(num_cpus=1))
    other = multinode.add_node(**node_args(num_cpus=1))
    skate.init(address=multinode.address)
    dead_id = doomed.node_id
    multinode.remove_node(doomed)
    assert wait_for(lambda: not any(n["NodeID"] == dead_id and n["Alive"] for n in skate.nodes()), 10)
    assert raylets_see(multinode)  # and every raylet heard of it (test_cluster_failure covers a stale view)
    allowed = {multinode.head_node.node_id, other.node_id}
    for node_id in (dead_id, "ab" * 14):
        strategy = NodeAffinitySchedulingStrategy(node_id, soft=True)
        assert skate.get(where.options(scheduling_strategy=strategy).remote(), timeout=60) in allowed


def test_node_affinity_hard_to_unknown_or_dead_node_fails(multinode):
    doomed = multinode.add_node(**node_args(num_cpus=1))
    skate.init(address=multinode.address)
    dead_id = doomed.node_id
    multinode.remove_node(doomed)
    assert wait_for(lambda: not any(n["NodeID"] == dead_id and n["Alive"] for n in skate.nodes()), 10)
    assert raylets_see(multinode)  # and every raylet heard of it (test_cluster_failure covers a stale view)
    for node_id in ("cd" * 14, dead_id):
        strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
        ref = where.options(scheduling_strategy=strategy).remote()
        with pytest.raises(RayError) as info:
            skate.get(ref, timeout=30)
        assert not isinstance(info.value, GetTimeoutError), (
            "hard affinity to a missing node must fail, not hang"
        )
    # The cluster is still fine.
    assert skate.get(where.remote(), timeout=60) == multinode.head_node.node_id


def test_cluster_wide_resources(multinode):
    worker = multinode.add_node(**node_args(num_cpus=2, resources={"red": 1}))
    skate.init(address=multinode.address)
    nodes = alive_nodes()
    assert {n["NodeID"] for n in nodes} == {multinode.head_node.node_id, worker.node_id}
    total = skate.cluster_resources()
    assert total["CPU"] == 3
    assert total["red"] == 1
    assert total["object_store_memory"] == pytest.approx(2 * STORE)
    assert total["node:127.0.0.1"] == 2  # both nodes are on loopback
    assert sum(n["Resources"]["CPU"] for n in nodes) == 3

    def available_is(cpu: float, red: float | None):
        def check():
            avail = skate.available_resources()
            return avail.get("CPU", 0) == cpu and avail.get("red") == red

        return check

    assert wait_for(available_is(3, 1), timeout=10), skate.available_resources()

    @skate.remote(num_cpus=2, resources={"red": 1})
    class Busy:
        def node(self):
            return skate.get_runtime_context().get_node_id()

    busy = Busy.remote()
    assert skate.get(busy.node.remote(), timeout=60) == worker.node_id
    assert wait_for(available_is(1, None), timeout=10), skate.available_resources()
    skate.kill(busy)
    assert wait_for(available_is(3, 1), timeout=10), skate.available_resources()
    multinode.remove_node(worker)
    assert wait_for(lambda: skate.cluster_resources().get("CPU") == 1, timeout=10)
    assert "red" not in skate.cluster_resources()
    assert len(skate.nodes()) == 2  # the dead node is still listed, as not alive
