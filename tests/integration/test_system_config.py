"""Ray's `_system_config` at init() and Cluster nodes: accepted, applied, fate sharing kept."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

import skate
from skate.cluster_utils import Cluster
from tests.integration._cluster_helpers import node_args, node_is_alive, processes_under
from tests.integration._helpers import wait_for

# A node silent for 0 + 200 ms * 5 = 1 s is dead (Skate's default is 10 s).
FAST_DEATH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 200,
    "health_check_failure_threshold": 5,
}


@skate.remote
def pid_and_node():
    return os.getpid(), skate.get_runtime_context().get_node_id()


def test_ray_tuning_keys_are_accepted_with_one_warning(fresh):
    skate = fresh
    with pytest.warns(RuntimeWarning, match="task_retry_delay_ms") as record:
        skate.init(
            num_cpus=1,
            _system_config={
                "task_retry_delay_ms": 100,
                "object_timeout_milliseconds": 200,
                "enable_timeline": False,
                "num_heartbeats_timeout": 20,
            },
        )
    assert len([w for w in record if "_system_config" in str(w.message)]) == 1
    assert "num_heartbeats_timeout" not in str(record[0].message)  # applied, not ignored
    assert skate.get(pid_and_node.remote(), timeout=60)[1]


def test_a_name_ray_does_not_have_is_rejected_with_a_hint(fresh):
    skate = fresh
    with pytest.raises(ValueError, match="Did you mean 'object_timeout_milliseconds'"):
        skate.init(num_cpus=1, _system_config={"object_timeout_miliseconds": 100})
    assert not skate.is_initialized()


@pytest.fixture
def fast_death_cluster():
    if skate.is_initialized():
        skate.shutdown()
    cluster = Cluster(
        initialize_head=True, head_node_args=node_args(num_cpus=1, _system_config=dict(FAST_DEATH))
    )
    try:
        yield cluster
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()


def _raylet(node):
    return next(p for p in node.processes if "skate.raylet.server" in " ".join(p.args))


@pytest.mark.timeout(120)
def test_healthy_nodes_stay_alive_with_a_short_timeout(fast_death_cluster):
    other = fast_death_cluster.add_node(**node_args(num_cpus=1, _system_config=dict(FAST_DEATH)))
    skate.init(address=fast_death_cluster.address)
    deadline = time.monotonic() + 4  # four timeouts
    while time.monotonic() < deadline:
        assert node_is_alive(other.node_id) is True
        assert node_is_alive(fast_death_cluster.head_node.node_id) is True
        time.sleep(0.2)


@pytest.mark.timeout(120)
def test_hung_node_is_dead_within_the_configured_time_and_its_workers_exit(fast_death_cluster):
    doomed = fast_death_cluster.add_node(**node_args(num_cpus=1, resources={"doomed": 1}))
    skate.init(address=fast_death_cluster.address)
    pid, node = skate.get(pid_and_node.options(resources={"doomed": 1}).remote(), timeout=60)
    assert node == doomed.node_id
    raylet = _raylet(doomed)
    os.kill(raylet.pid, signal.SIGSTOP)  # hung: connections open, no heartbeats
    start = time.monotonic()
    try:
        assert wait_for(lambda: node_is_alive(doomed.node_id) is False, timeout=8)
        took = time.monotonic() - start
        assert took < 3.0, f"declared dead after {took:.1f} s; configured 1 s"
    finally:
        os.kill(raylet.pid, signal.SIGCONT)
    # Fate sharing: a raylet declared dead stops, and its workers with it (no zombie node).
    assert wait_for(lambda: not psutil.pid_exists(pid), timeout=15), "the dead node's worker is still running"
    assert wait_for(lambda: raylet.poll() is not None, timeout=15), "the dead node's raylet is still running"
    assert wait_for(lambda: processes_under(doomed.session_dir) == [], timeout=15)
    assert node_is_alive(doomed.node_id) is False  # it did not come back


@pytest.mark.timeout(120)
def test_killed_node_takes_its_workers_with_it(fast_death_cluster):
    doomed = fast_death_cluster.add_node(**node_args(num_cpus=1, resources={"doomed": 1}))
    skate.init(address=fast_death_cluster.address)
    pid, _ = skate.get(pid_and_node.options(resources={"doomed": 1}).remote(), timeout=60)
    _raylet(doomed).kill()
    assert wait_for(lambda: node_is_alive(doomed.node_id) is False, timeout=3)
    assert wait_for(lambda: not psutil.pid_exists(pid), timeout=15)
    assert wait_for(lambda: processes_under(doomed.session_dir) == [], timeout=15)


def test_add_node_rejects_unknown_keys(fast_death_cluster):
    with pytest.raises(ValueError, match="Did you mean"):
        fast_death_cluster.add_node(**node_args(num_cpus=1, _system_config={"health_check_period": 1}))
