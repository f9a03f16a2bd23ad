"""Losing a node: retries elsewhere, clear errors without retries, the GCS noticing."""

from __future__ import annotations

import os
import signal
import time

import pytest

import skate
from skate.exceptions import GetTimeoutError, NodeDiedError, ObjectLostError, RayError, WorkerCrashedError
from tests.integration import _cluster_helpers
from tests.integration._cluster_helpers import (
    alive_nodes,
    node_args,
    node_is_alive,
)
from tests.integration._helpers import wait_for

multinode = _cluster_helpers.multinode  # the fixture


@skate.remote
def slow(i: int, seconds: float):
    time.sleep(seconds)
    return i, skate.get_runtime_context().get_node_id()


@skate.remote
def slow_marked(marker: str, seconds: float):
    """`slow`, saying it started by creating `marker` (the tests share the nodes' machine)."""
    open(marker, "w").close()
    time.sleep(seconds)
    return skate.get_runtime_context().get_node_id()


@skate.remote
def node_pid():
    return skate.get_runtime_context().get_node_id(), os.getpid()


def test_tasks_on_a_removed_node_are_retried_elsewhere(multinode):
    doomed = multinode.add_node(**node_args(num_cpus=1, resources={"spot": 1}))
    skate.init(address=multinode.address)
    refs = [slow.options(resources={"spot": 1}, max_retries=3).remote(i, 1.0) for i in range(3)]
    assert wait_for(lambda: skate.available_resources().get("spot", 0) == 0, timeout=10)  # one runs
    survivor = multinode.add_node(**node_args(num_cpus=1, resources={"spot": 1}))
    multinode.remove_node(doomed)
    results = skate.get(refs, timeout=60)
    assert sorted(i for i, _ in results) == [0, 1, 2]
    assert {nid for _, nid in results} == {survivor.node_id}


def test_tasks_spread_over_two_nodes_survive_losing_one(multinode):
    doomed = multinode.add_node(**node_args(num_cpus=1, resources={"spot": 1}))
    survivor = multinode.add_node(**node_args(num_cpus=1, resources={"spot": 1}))
    skate.init(address=multinode.address)
    refs = [slow.options(resources={"spot": 1}, max_retries=3).remote(i, 1.0) for i in range(4)]
    assert wait_for(lambda: skate.available_resources().get("spot", 0) < 2, timeout=10)
    multinode.remove_node(doomed)
    results = skate.get(refs, timeout=60)
    assert sorted(i for i, _ in results) == [0, 1, 2, 3]
    assert survivor.node_id in {nid for _, nid in results}


def test_task_without_retries_fails_with_a_ray_error(multinode, tmp_path):
    doomed = multinode.add_node(**node_args(num_cpus=1, resources={"spot": 1}))
    skate.init(address=multinode.address)
    marker = tmp_path / "started"
    ref = slow_marked.options(resources={"spot": 1}, max_retries=0).remote(str(marker), 30)
    # Running, not only leased: a task whose node goes before its worker gets it never ran,
    # and waits for another node (as in Ray) instead of failing.
    assert wait_for(marker.exists, timeout=30)
    multinode.remove_node(doomed)
    start = time.monotonic()
    with pytest.raises((WorkerCrashedError, NodeDiedError)) as info:
        skate.get(ref, timeout=30)
    assert not isinstance(info.value, GetTimeoutError)
    assert time.monotonic() - start < 15


def test_task_without_retries_fails_when_the_raylet_is_killed(multinode, tmp_path):
    doomed = multinode.add_node(**node_args(num_cpus=1, resources={"spot": 1}))
    skate.init(address=multinode.address)
    marker = tmp_path / "started"
    ref = slow_marked.options(resources={"spot": 1}, max_retries=0).remote(str(marker), 30)
    assert wait_for(marker.exists, timeout=30)  # running (see the test above)
    multinode.remove_node(doomed, allow_graceful=False)
    with pytest.raises((WorkerCrashedError, NodeDiedError)):
        skate.get(ref, timeout=30)


def test_pending_task_for_a_removed_node_waits_then_runs_on_a_new_one(multinode):
    doomed = multinode.add_node(**node_args(num_cpus=1, resources={"spot": 1}))
    skate.init(address=multinode.address)
    busy = slow.options(resources={"spot": 1}, max_retries=2).remote(0, 1.0)
    queued = slow.options(resources={"spot": 1}, max_retries=2).remote(1, 0.1)
    assert wait_for(lambda: skate.available_resources().get("spot", 0) == 0, timeout=10)
    multinode.remove_node(doomed)
    ready, _ = skate.wait([busy, queued], num_returns=2, timeout=1.5)
    for ref in ready:  # there is no spot node now: both must wait (retried), not fail
        try:
            pytest.fail(f"a retriable task finished while no node could run it: {skate.get(ref, timeout=1)}")
        except RayError as exc:
            pytest.fail(f"a retriable task failed instead of waiting for a node: {exc!r}")
    fresh = multinode.add_node(**node_args(num_cpus=1, resources={"spot": 1}))
    assert skate.get([busy, queued], timeout=60) == [(0, fresh.node_id), (1, fresh.node_id)]


def test_removed_node_is_reported_dead(multinode):
    doomed = multinode.add_node(**node_args(num_cpus=1))
    other = multinode.add_node(**node_args(num_cpus=1))
    skate.init(address=multinode.address)
    assert len(alive_nodes()) == 3
    multinode.remove_node(doomed)
    start = time.monotonic()
    assert wait_for(lambda: node_is_alive(doomed.node_id) is False, timeout=5)
    assert time.monotonic() - start < 5
    assert node_is_alive(other.node_id) is True
    assert skate.cluster_resources()["CPU"] == 2
    multinode.wait_for_nodes(timeout=5)  # cluster_utils agrees


def test_killed_raylet_is_detected(multinode):
    doomed = multinode.add_node(**node_args(num_cpus=1, resources={"spot": 1}))
    skate.init(address=multinode.address)
    assert skate.get(slow.options(resources={"spot": 1}).remote(0, 0), timeout=60)[1] == doomed.node_id
    multinode.remove_node(doomed, allow_graceful=False)
    assert wait_for(lambda: node_is_alive(doomed.node_id) is False, timeout=5)
    assert "spot" not in skate.cluster_resources()
    assert skate.get(slow.remote(1, 0), timeout=60) == (1, multinode.head_node.node_id)


def test_stopped_raylet_is_declared_dead_by_heartbeat_timeout(multinode):
    """A raylet that hangs (SIGSTOP: connection open, no heartbeats) is dead after the timeout."""
    doomed = multinode.add_node(**node_args(num_cpus=1))
    skate.init(address=multinode.address)
    raylet = next(p for p in doomed.processes if "skate.raylet.server" in " ".join(p.args))
    os.kill(raylet.pid, signal.SIGSTOP)
    try:
        # SKATE_NODE_TIMEOUT_S defaults to 10 s.
        assert wait_for(lambda: node_is_alive(doomed.node_id) is False, timeout=20)
        assert skate.cluster_resources()["CPU"] == 1
    finally:
        os.kill(raylet.pid, signal.SIGCONT)


def test_spillback_to_a_node_that_just_died_is_retried(multinode):
    """The head's view of the cluster may lag a node's death by a moment; a lease spilled to the
    dead node must be retried elsewhere, not fail the tasks."""
    doomed = multinode.add_node(**node_args(num_cpus=1))
    survivor = multinode.add_node(**node_args(num_cpus=1))
    skate.init(address=multinode.address)
    head_busy = slow.options(resources={"node:__internal_head__": 0.01}).remote(-1, 1.5)
    assert wait_for(lambda: skate.available_resources().get("CPU", 0) == 2, timeout=10)
    multinode.remove_node(doomed)
    refs = [slow.remote(i, 0.2) for i in range(4)]  # the head is full: they must spill
    try:
        results = skate.get(refs, timeout=60)
    except RayError as exc:
        pytest.fail(f"tasks failed because a spillback went to the dead node: {exc}")
    assert sorted(i for i, _ in results) == [0, 1, 2, 3]
    assert doomed.node_id not in {nid for _, nid in results}
    assert {nid for _, nid in results} <= {survivor.node_id, multinode.head_node.node_id}
    assert skate.get(head_busy, timeout=60)[0] == -1


def test_driver_keeps_working_after_its_objects_node_dies(multinode):
    """An object whose only copy was on a dead node is rebuilt from lineage (Ray reconstructs
    task outputs) or reported lost with an ObjectLostError, never a hang."""
    doomed = multinode.add_node(**node_args(num_cpus=1, resources={"spot": 1}))
    skate.init(address=multinode.address)

    @skate.remote(resources={"spot": 1}, max_retries=1)
    def big():
        return b"x" * (8 * 1024 * 1024)

    ref = big.remote()
    skate.wait([ref], timeout=60, fetch_local=False)
    multinode.remove_node(doomed)
    multinode.add_node(**node_args(num_cpus=1, resources={"spot": 1}))
    try:
        value = skate.get(ref, timeout=30)
    except GetTimeoutError:
        pytest.fail("get of an object lost with its node hung")
    except ObjectLostError:
        pass
    else:
        assert value == b"x" * (8 * 1024 * 1024)
