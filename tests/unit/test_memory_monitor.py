"""The memory monitor's choice of victim, with injected memory readings."""

from __future__ import annotations

import pytest

from skate.raylet.memory_monitor import LeaseView, MemoryMonitor


def _leases():
    return [
        LeaseView(1, "old-task", "driver", False),
        LeaseView(7, "new-task", "driver", False),
        LeaseView(9, "actor", "gcs", True),
    ]


def test_no_victim_below_threshold():
    monitor = MemoryMonitor(0.9, reader=lambda: 0.5)
    assert monitor.choose_victim(_leases()) is None
    assert monitor.kills == 0


def test_newest_task_is_killed_first_and_actors_are_spared():
    monitor = MemoryMonitor(0.9, reader=lambda: 0.97)
    victim = monitor.choose_victim(_leases())
    assert victim.worker_id == "new-task"
    assert monitor.kills == 1


def test_nothing_to_kill_when_only_actors_run():
    monitor = MemoryMonitor(0.9, reader=lambda: 0.99)
    assert monitor.choose_victim([LeaseView(3, "a", "gcs", True)]) is None


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_bad_threshold_is_rejected(bad):
    with pytest.raises(ValueError):
        MemoryMonitor(bad)
