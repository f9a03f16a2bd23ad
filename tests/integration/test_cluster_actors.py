"""Actors on the nodes of a cluster: placement by resources, restart after node loss."""

from __future__ import annotations

import time

import pytest

import skate
from skate.exceptions import RayActorError
from skate.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tests.integration import _cluster_helpers
from tests.integration._cluster_helpers import node_args
from tests.integration._helpers import wait_for

multinode = _cluster_helpers.multinode  # the fixture


@skate.remote
class Where:
    def __init__(self):
        self.calls = 0

    def node(self):
        self.calls += 1
        return skate.get_runtime_context().get_node_id()

    def count(self):
        return self.calls


def test_actor_placed_on_the_node_with_its_resource(multinode):
    multinode.add_node(**node_args(num_cpus=1, resources={"red": 1}))
    blue = multinode.add_node(**node_args(num_cpus=1, resources={"blue": 1}))
    skate.init(address=multinode.address)
    actor = Where.options(resources={"blue": 1}).remote()
    assert skate.get(actor.node.remote(), timeout=60) == blue.node_id
    assert skate.get([actor.node.remote() for _ in range(5)], timeout=60) == [blue.node_id] * 5
    assert skate.get(actor.count.remote(), timeout=60) == 6


def test_actors_and_tasks_share_node_resources(multinode):
    blue = multinode.add_node(**node_args(num_cpus=2, resources={"blue": 1}))
    skate.init(address=multinode.address)
    holder = Where.options(resources={"blue": 1}).remote()
    assert skate.get(holder.node.remote(), timeout=60) == blue.node_id

    @skate.remote(resources={"blue": 1})
    def needs_blue():
        return skate.get_runtime_context().get_node_id()

    waiting = needs_blue.remote()
    assert skate.wait([waiting], timeout=1.0)[0] == []  # the actor holds the only "blue"
    skate.kill(holder)
    assert skate.get(waiting, timeout=60) == blue.node_id


def test_actor_node_affinity(multinode):
    worker = multinode.add_node(**node_args(num_cpus=1))
    skate.init(address=multinode.address)
    for node_id in (worker.node_id, multinode.head_node.node_id):
        strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
        actor = Where.options(scheduling_strategy=strategy, num_cpus=0).remote()
        assert skate.get(actor.node.remote(), timeout=60) == node_id


def test_actor_restarts_on_another_node_when_its_node_is_removed(multinode):
    spot = [multinode.add_node(**node_args(num_cpus=1, resources={"spot": 1})) for _ in range(2)]
    skate.init(address=multinode.address)
    actor = Where.options(resources={"spot": 1}, max_restarts=1, max_task_retries=-1).remote()
    first = skate.get(actor.node.remote(), timeout=60)
    assert first in {n.node_id for n in spot}
    doomed = next(n for n in spot if n.node_id == first)
    survivor = next(n for n in spot if n.node_id != first)
    multinode.remove_node(doomed)
    assert skate.get(actor.node.remote(), timeout=60) == survivor.node_id
    assert skate.get(actor.count.remote(), timeout=60) == 1  # a new incarnation: fresh state


def test_actor_without_restarts_dies_with_its_node(multinode):
    spot = multinode.add_node(**node_args(num_cpus=1, resources={"spot": 1}))
    multinode.add_node(**node_args(num_cpus=1, resources={"spot": 1}))
    skate.init(address=multinode.address)
    actor = Where.options(resources={"spot": 1}, max_restarts=0).remote()
    node = skate.get(actor.node.remote(), timeout=60)
    doomed = spot if node == spot.node_id else multinode.worker_nodes[1]
    multinode.remove_node(doomed, allow_graceful=False)
    with pytest.raises(RayActorError):
        skate.get(actor.node.remote(), timeout=30)


def test_actor_call_from_a_task_on_another_node(multinode):
    red = multinode.add_node(**node_args(num_cpus=1, resources={"red": 1}))
    blue = multinode.add_node(**node_args(num_cpus=1, resources={"blue": 1}))
    skate.init(address=multinode.address)
    actor = Where.options(resources={"red": 1}, num_cpus=0).remote()

    @skate.remote(resources={"blue": 1})
    def call(handle):
        return skate.get_runtime_context().get_node_id(), skate.get(handle.node.remote(), timeout=60)

    assert skate.get(call.remote(actor), timeout=60) == (blue.node_id, red.node_id)


def test_pending_actor_is_placed_when_a_node_joins_and_restarts_there(multinode):
    skate.init(address=multinode.address)
    actor = Where.options(resources={"gold": 1}, max_restarts=1, max_task_retries=-1).remote()
    ref = actor.node.remote()
    assert skate.wait([ref], timeout=1.0)[0] == []
    first = multinode.add_node(**node_args(num_cpus=1, resources={"gold": 1}))
    assert skate.get(ref, timeout=60) == first.node_id
    second = multinode.add_node(**node_args(num_cpus=1, resources={"gold": 1}))
    multinode.remove_node(first)
    start = time.monotonic()
    assert skate.get(actor.node.remote(), timeout=60) == second.node_id
    assert time.monotonic() - start < 15
    assert wait_for(lambda: any(n["NodeID"] == first.node_id and not n["Alive"] for n in skate.nodes()), 10)
