"""Seeing memory: list_objects, object_store_stats, `skate memory`, `skate status`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from skate.util import state

MB = 1024 * 1024


def test_list_objects_reports_kinds_sizes_and_places(fresh, monkeypatch):
    skate = fresh
    # The switch is read at import (SKATE_RECORD_REF_CREATION_SITES=1); flip it for this test.
    monkeypatch.setattr("skate.core_worker.objects.RECORD_CALL_SITES", True)
    monkeypatch.setattr("skate.core_worker.submitter.RECORD_CALL_SITES", True)
    skate.init(num_cpus=1, object_store_memory=100 * MB)
    small = skate.put("tiny")
    big = skate.put(np.zeros(2_500_000))  # 20 MB: shared memory
    view = skate.get(big)
    rows = {r["object_id"]: r for r in state.list_objects()}
    assert rows[small.hex()]["where"] == "inline"
    assert rows[big.hex()]["where"] == "in shared memory"
    assert rows[big.hex()]["size"] >= 20_000_000
    assert "LOCAL_REFERENCE" in rows[big.hex()]["reference_kinds"]
    assert "PINNED_IN_MEMORY" in rows[big.hex()]["reference_kinds"]
    assert "test_memory_report.py" in rows[small.hex()]["call_site"]
    del view
    spilled = [skate.put(np.zeros(2_500_000)) for _ in range(6)]  # pushes older ones to disk
    where = {r["where"] for r in state.list_objects()}
    assert "spilled to disk" in where
    stats = state.object_store_stats()[0]
    assert stats["capacity_bytes"] == 100 * MB and stats["spilled_bytes"] > 0
    assert len(state.list_objects(filters=[("where", "=", "spilled to disk")])) >= 1
    del spilled


def test_pending_task_use_and_captured_kinds(cluster):
    skate = cluster
    inner = skate.put("inner")
    outer = skate.put([inner])

    @skate.remote
    def wait_for(x, box):
        import time

        time.sleep(1)
        return x

    gate = skate.put(1)
    out = wait_for.remote(gate, [inner])
    rows = {r["object_id"]: r for r in state.list_objects()}
    assert "CAPTURED_IN_OBJECT" in rows[inner.hex()]["reference_kinds"]
    assert "USED_BY_PENDING_TASK" in rows[gate.hex()]["reference_kinds"]
    assert skate.get(out, timeout=30) == 1
    del outer


def test_cli_memory_and_status_read_a_running_cluster(fresh):
    skate = fresh
    skate.init(num_cpus=2, resources={"gadget": 3})
    ref = skate.put(np.zeros(2_500_000))
    memory = subprocess.run(
        [sys.executable, "-m", "skate.scripts.cli", "memory"], capture_output=True, text=True, timeout=60
    )
    assert memory.returncode == 0, memory.stderr
    assert ref.hex() in memory.stdout and "in shared memory" in memory.stdout
    status = subprocess.run(
        [sys.executable, "-m", "skate.scripts.cli", "status"], capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0, status.stderr
    assert "CPU: 0 / 2" in status.stdout and "gadget: 0 / 3" in status.stdout
    assert "object store:" in status.stdout


def test_cli_without_a_cluster_says_so(fresh):
    out = subprocess.run(
        [sys.executable, "-m", "skate.scripts.cli", "memory", "--address", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "no running Skate cluster" in out.stderr
