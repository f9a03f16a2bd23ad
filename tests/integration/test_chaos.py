"""Chaos: thousands of tasks and actor calls while workers are SIGKILLed and a node is removed.

Nothing may be lost: retried work always arrives, and right; tasks without retries arrive or
fail with WorkerCrashedError; no process or shared-memory file is left (the autouse fixture).
"""

from __future__ import annotations

import pytest

import skate
from tests import chaos_workload


@pytest.mark.timeout(240)
def test_chaos_loses_nothing():
    if skate.is_initialized():
        skate.shutdown()
    report = chaos_workload.run(duration=25.0, kill_interval=0.1, seed=1)
    assert report.lost == 0, report.problems
    assert report.kills >= 20, f"the killer barely ran: {report}"
    assert report.nodes_removed == 1
    assert report.tasks_run >= 1000, f"too little work got through: {report}"
