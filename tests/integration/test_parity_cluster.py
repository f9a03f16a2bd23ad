"""Ray parity of cluster behaviour: actors' resources while blocked, names freed by kill(),
actor placement by load, restarts away from a node being removed, freeing pulled copies."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import skate
from skate.exceptions import GetTimeoutError
from skate.util import state
from skate.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tests.integration import _cluster_helpers
from tests.integration._cluster_helpers import node_args
from tests.integration._helpers import wait_for

multinode = _cluster_helpers.multinode  # the fixture


@skate.remote(num_cpus=1)
def needs_cpu():
    return "ran"


@skate.remote(num_cpus=1)
class BlocksInMethod:
    def run_nested(self):
        ref = needs_cpu.remote()
        try:
            return skate.get(ref, timeout=2)
        except GetTimeoutError:
            return "pending"


@skate.remote(num_cpus=1)
class BlocksInConstructor:
    def __init__(self):
        try:
            self.result = skate.get(needs_cpu.remote(), timeout=2)
        except GetTimeoutError:
            self.result = "pending"

    def result_of_init(self):
        return self.result


@skate.remote(num_cpus=1)
def task_runs_nested():
    return skate.get(needs_cpu.remote(), timeout=30)


# -- 1. an actor keeps its CPU while blocked in get ----------------------------------------
@pytest.mark.timeout(90)
def test_actor_blocked_in_get_keeps_its_cpu(fresh):
    skate = fresh
    skate.init(num_cpus=1)
    # A normal task lends its CPU while it waits: the nested task runs.
    assert skate.get(task_runs_nested.remote(), timeout=60) == "ran"
    # An actor's method does not: the nested task stays pending on a 1-CPU node.
    actor = BlocksInMethod.remote()
    assert skate.get(actor.run_nested.remote(), timeout=60) == "pending"
    waiting = needs_cpu.remote()
    assert skate.wait([waiting], timeout=1.0)[0] == []  # the actor still holds the CPU
    skate.kill(actor)
    assert skate.get(waiting, timeout=60) == "ran"


@pytest.mark.timeout(90)
def test_actor_constructor_blocked_in_get_keeps_its_cpu(fresh):
    skate = fresh
    skate.init(num_cpus=1)
    actor = BlocksInConstructor.remote()
    assert skate.get(actor.result_of_init.remote(), timeout=60) == "pending"


# -- 2. kill() of a named actor frees its name before it returns ---------------------------
@skate.remote
class Named:
    def __init__(self, tag):
        self.tag = tag

    def get_tag(self):
        return self.tag


@pytest.mark.timeout(90)
def test_kill_frees_the_name_at_once(fresh):
    skate = fresh
    skate.init(num_cpus=2)
    for detached in (False, True):
        lifetime = "detached" if detached else None
        old = Named.options(name="svc", lifetime=lifetime).remote("old")
        assert skate.get(old.get_tag.remote(), timeout=60) == "old"
        skate.kill(old)
        # No wait: the name is free as soon as kill() returns.
        with pytest.raises(ValueError):
            skate.get_actor("svc")
        new = Named.options(name="svc", lifetime=lifetime).remote("new")
        assert skate.get(skate.get_actor("svc").get_tag.remote(), timeout=60) == "new"
        assert skate.get(new.get_tag.remote(), timeout=60) == "new"
        skate.kill(new)


# -- 3. actors spread by load ---------------------------------------------------------------
@skate.remote
class Placed:
    def node(self):
        return skate.get_runtime_context().get_node_id()


@pytest.mark.timeout(120)
def test_default_actors_spread_over_all_nodes(multinode):
    nodes = [multinode.head_node] + [multinode.add_node(**node_args(num_cpus=1)) for _ in range(2)]
    skate.init(address=multinode.address)
    actors = [Placed.remote() for _ in range(12)]
    where = Counter(skate.get([a.node.remote() for a in actors], timeout=90))
    print("actors per node:", {nid[:8]: n for nid, n in where.items()})
    assert set(where) == {n.node_id for n in nodes}
    assert max(where.values()) - min(where.values()) <= 1


# -- 4. restarts are not spent on a node that is going away ---------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("max_restarts,graceful", [(1, True), (-1, True), (1, False)])
def test_restart_is_not_spent_on_a_node_being_removed(multinode, max_restarts, graceful):
    head = multinode.head_node
    doomed = multinode.add_node(**node_args(num_cpus=1))
    skate.init(address=multinode.address)
    strategy = NodeAffinitySchedulingStrategy(doomed.node_id, soft=True)
    actor = Placed.options(scheduling_strategy=strategy, max_restarts=max_restarts).remote()
    assert skate.get(actor.node.remote(), timeout=60) == doomed.node_id
    multinode.remove_node(doomed, allow_graceful=graceful)
    assert skate.get(actor.node.options(max_task_retries=-1).remote(), timeout=60) == head.node_id
    [row] = [a for a in state.list_actors() if a["actor_id"] == actor._actor_id.hex()]
    assert (row["state"], row["num_restarts"]) == ("ALIVE", 1)


# -- 5. copies pulled to other nodes go when the owner frees the object ---------------------
@skate.remote(resources={"b": 1})
def total_on_b(a):
    return int(a.sum())


@skate.remote(resources={"b": 1})
class HoldsOnB:
    def hold(self, a):
        self.a = a  # a zero-copy view: pins the node's copy
        return int(a[0])

    def drop(self):
        self.a = None


def _store_objects(node_id: str) -> tuple[int, int]:
    """(objects, bytes used) in `node_id`'s store."""
    [stats] = [s for s in state.object_store_stats() if s["node_id"] == node_id]
    return stats["num_objects"], stats["used_bytes"]


@pytest.mark.timeout(120)
def test_pulled_copy_is_freed_with_the_primary(multinode):
    b = multinode.add_node(**node_args(num_cpus=1, resources={"b": 1}))
    skate.init(address=multinode.address)
    head = multinode.head_node.node_id
    ref = skate.put(np.ones(3_000_000, dtype=np.int64))  # 24 MB: in the head's store
    assert skate.get(total_on_b.remote(ref), timeout=60) == 3_000_000
    assert _store_objects(b.node_id)[0] == 1  # the copy pulled to b
    del ref
    assert wait_for(lambda: _store_objects(b.node_id) == (0, 0), timeout=15), _store_objects(b.node_id)
    assert wait_for(lambda: _store_objects(head) == (0, 0), timeout=15), _store_objects(head)


@pytest.mark.timeout(120)
def test_pinned_copy_is_freed_when_its_reader_lets_go(multinode):
    b = multinode.add_node(**node_args(num_cpus=1, resources={"b": 1}))
    skate.init(address=multinode.address)
    ref = skate.put(np.full(3_000_000, 7, dtype=np.int64))
    holder = HoldsOnB.remote()
    assert skate.get(holder.hold.remote(ref), timeout=60) == 7
    del ref
    # The owner freed it, but a reader on b still uses the copy: it stays while pinned.
    assert wait_for(lambda: _store_objects(multinode.head_node.node_id) == (0, 0), timeout=15)
    assert _store_objects(b.node_id)[0] == 1
    skate.get(holder.drop.remote(), timeout=60)
    assert wait_for(lambda: _store_objects(b.node_id) == (0, 0), timeout=15), _store_objects(b.node_id)


@skate.remote(resources={"b": 1})
def make_on_b():
    return np.ones(3_000_000, dtype=np.int64)


@pytest.mark.timeout(120)
def test_remote_primary_and_its_copies_are_freed(multinode):
    """The primary is on b (a task's return value) and the driver's node pulled a copy."""
    b = multinode.add_node(**node_args(num_cpus=1, resources={"b": 1}))
    skate.init(address=multinode.address)
    head = multinode.head_node.node_id
    ref = make_on_b.remote()
    assert int(skate.get(ref, timeout=60).sum()) == 3_000_000
    unread = make_on_b.remote()  # never read: only on b
    skate.wait([unread], timeout=60)
    assert _store_objects(b.node_id)[0] == 2
    del ref, unread
    assert wait_for(lambda: _store_objects(b.node_id) == (0, 0), timeout=15), _store_objects(b.node_id)
    assert wait_for(lambda: _store_objects(head) == (0, 0), timeout=15), _store_objects(head)
