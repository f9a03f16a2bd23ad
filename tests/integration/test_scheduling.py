"""Resource-based scheduling on a 4-CPU, 2-'custom' node."""

from __future__ import annotations

import time

import pytest

import skate
from skate.exceptions import TaskCancelledError
from tests.integration._helpers import max_overlap, tapped_std_streams, wait_for


@skate.remote
def timed(seconds):
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


def test_cpu_limits_parallelism(cluster):
    intervals = skate.get([timed.options(num_cpus=2).remote(0.6) for _ in range(4)], timeout=60)
    assert max_overlap(intervals) == 2, intervals
    span = max(e for _, e in intervals) - min(s for s, _ in intervals)
    assert span >= 1.15  # two waves of 0.6 s


def test_four_cpus_run_four_at_once(cluster):
    intervals = skate.get([timed.remote(0.8) for _ in range(6)], timeout=60)
    assert max_overlap(intervals) == 4, intervals


def test_fractional_cpus(cluster):
    intervals = skate.get([timed.options(num_cpus=0.5).remote(2.0) for _ in range(8)], timeout=60)
    assert max_overlap(intervals) == 8, intervals


def test_fractional_cpus_do_not_exceed_capacity(cluster):
    intervals = skate.get([timed.options(num_cpus=0.5).remote(0.6) for _ in range(10)], timeout=60)
    assert max_overlap(intervals) <= 8, intervals


def test_custom_resources(cluster):
    intervals = skate.get([timed.options(resources={"custom": 1}).remote(0.6) for _ in range(4)], timeout=60)
    assert max_overlap(intervals) == 2, intervals

    @skate.remote(resources={"custom": 2}, num_cpus=0)
    def assigned():
        return skate.get_runtime_context().get_assigned_resources()

    res = skate.get(assigned.remote(), timeout=30)
    assert res.get("custom") == 2
    assert "CPU" not in res or res["CPU"] == 0


def test_infeasible_task_stays_pending_and_warns_once(cluster, capfd):
    with tapped_std_streams() as (_, err):
        too_big = timed.options(resources={"custom": 5})
        a = too_big.remote(0)
        b = too_big.remote(0)
        ready, not_ready = skate.wait([a, b], num_returns=1, timeout=1.0)
        assert ready == [] and not_ready == [a, b]
        with pytest.raises(skate.exceptions.GetTimeoutError):
            skate.get(a, timeout=0.2)
        assert wait_for(lambda: "custom" in err.getvalue(), timeout=5), err.getvalue()
        # A negative check, so a bounded wait: no event marks "no more warnings will come". The
        # raylet reports each request INFEASIBLE_GRACE_S (0.5 s) after queueing it; a second
        # lets the report of `b` arrive. The wait orders nothing: too short can only miss a
        # duplicate, never fail a correct run.
        time.sleep(1.0)
        text = err.getvalue()
    warnings = [line for line in text.splitlines() if "custom" in line and "arning" in line]
    assert len(warnings) == 1, text
    # feasible work still runs meanwhile
    assert skate.get(timed.remote(0), timeout=30)
    # and the pending tasks can be cancelled
    skate.cancel(a)
    skate.cancel(b)
    for ref in (a, b):
        with pytest.raises(TaskCancelledError):
            skate.get(ref, timeout=30)


def test_zero_cpu_tasks_run_beyond_cpu_count(cluster):
    intervals = skate.get([timed.options(num_cpus=0).remote(1.5) for _ in range(6)], timeout=60)
    assert max_overlap(intervals) == 6, intervals


def test_available_resources_follow_running_tasks(cluster, tmp_path):
    marker = tmp_path / "started"

    @skate.remote(num_cpus=3)
    def hold(path):
        with open(path, "w") as f:
            f.write("x")
        time.sleep(1.5)
        return True

    ref = hold.remote(str(marker))
    assert wait_for(marker.exists, timeout=30)
    assert wait_for(lambda: skate.available_resources().get("CPU", 0) <= 1, timeout=5), (
        skate.available_resources()
    )
    assert skate.get(ref, timeout=30)
    assert wait_for(lambda: skate.available_resources().get("CPU") == 4, timeout=5), (
        skate.available_resources()
    )
