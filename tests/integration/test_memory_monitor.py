"""The node memory monitor kills the newest task and reports OutOfMemoryError."""

from __future__ import annotations

import time

import pytest


def test_task_killed_for_memory_raises_out_of_memory(fresh, monkeypatch):
    skate = fresh
    # Any usage is "too much": the monitor kills every running task's worker.
    monkeypatch.setenv("SKATE_MEMORY_USAGE_THRESHOLD", "0.0001")
    monkeypatch.setenv("SKATE_MEMORY_MONITOR_INTERVAL_S", "0.05")
    skate.init(num_cpus=1)

    @skate.remote(max_retries=0)
    def hog():
        time.sleep(30)
        return "finished"

    start = time.monotonic()
    with pytest.raises(skate.exceptions.OutOfMemoryError) as info:
        skate.get(hog.remote(), timeout=60)
    assert time.monotonic() - start < 20
    assert "memory" in str(info.value)
