"""Scale (issue 19) at test size: many queued tasks, many ref arguments, many refs in one get,
many actors in batches. Each must finish within a generous bound; the full-size figures are
`python -m skate._scale_benchmark` (docs/benchmarks.md, "Scale")."""

from __future__ import annotations

import time

import psutil
import pytest

import skate
from skate.cluster_utils import Cluster
from skate.exceptions import ActorDiedError, TaskCancelledError
from skate.util import state
from tests.integration._cluster_helpers import node_args
from tests.integration._helpers import wait_for


@skate.remote
def noop():
    return None


@skate.remote
def total(*values):
    return len(values), sum(values)


@skate.remote
def square(i):
    return i * i


@pytest.mark.timeout(90)
def test_20k_queued_noop_tasks_all_complete(cluster):
    refs = [noop.remote() for _ in range(20_000)]  # every one queued before the first get
    values = skate.get(refs, timeout=80)
    assert len(values) == 20_000 and all(v is None for v in values)


@pytest.mark.timeout(60)
def test_a_task_with_2000_ref_args_gets_every_value(cluster):
    refs = [skate.put(i) for i in range(2_000)]
    assert skate.get(total.remote(*refs), timeout=50) == (2_000, sum(range(2_000)))


@pytest.mark.timeout(60)
def test_get_of_5000_task_results_at_once(cluster):
    refs = [square.remote(i) for i in range(5_000)]
    assert skate.get(refs, timeout=50) == [i * i for i in range(5_000)]


class _Tiny:
    def pid(self):
        import os

        return os.getpid()


# Not importable by name, so sent by value: a new worker then need not import this test module
# (and pytest with it), which made each of these actors several times slower to start.
Tiny = skate.remote(num_cpus=0)(_Tiny)
del _Tiny


def _alive_tiny() -> list:
    return state.list_actors(filters=[("class_name", "=", "Tiny"), ("state", "=", "ALIVE")], limit=10_000)


def _our_workers(pids: set[int]) -> list[str]:
    """Which of these pids are still Skate worker processes (a pid may be reused by another)."""
    out = []
    for pid in pids:
        try:
            cmd = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            continue
        if "skate.raylet.zygote" in cmd:
            out.append(f"{pid}: {cmd[:100]}")
    return out


@pytest.mark.timeout(120)
def test_300_actors_in_batches_leave_none_behind():
    if skate.is_initialized():
        skate.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=2))
    try:
        cluster.add_node(**node_args(num_cpus=1))
        skate.init(address=cluster.address)
        pids: set[int] = set()
        # num_cpus=0 actors all land on the head (its load never rises, as in Ray), which starts
        # workers num_cpus at a time.
        for _ in range(3):  # 100 alive at a time, each called once, then killed
            actors = [Tiny.remote() for _ in range(100)]
            batch = skate.get([a.pid.remote() for a in actors], timeout=60)
            assert len(set(batch)) == 100  # one worker process each
            pids.update(batch)
            for a in actors:
                skate.kill(a)
            del actors
        assert wait_for(lambda: not _alive_tiny(), timeout=30), _alive_tiny()[:3]
        assert wait_for(lambda: not _our_workers(pids), timeout=30), _our_workers(pids)[:5]
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()


class _SlowStart:
    def __init__(self, seconds):
        time.sleep(seconds)

    def echo(self, i):
        return i


SlowStart = skate.remote(num_cpus=0)(_SlowStart)
del _SlowStart


@pytest.mark.timeout(60)
def test_cancelled_queued_actor_calls_stay_cancelled_when_the_actor_dies(cluster):
    actor = SlowStart.remote(60)  # calls wait in the caller's queue while it starts
    refs = [actor.echo.remote(i) for i in range(2_000)]
    for ref in reversed(refs[1::2]):  # newest first: each used to be searched for in the queue
        skate.cancel(ref)
    skate.kill(actor)
    for i, ref in enumerate(refs):
        expected = TaskCancelledError if i % 2 else ActorDiedError
        with pytest.raises(expected):
            skate.get(ref, timeout=30)
