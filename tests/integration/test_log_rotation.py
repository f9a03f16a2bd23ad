"""A worker that prints without end cannot fill the disk: its log file rotates."""

from __future__ import annotations

import glob
import os

import pytest


@pytest.mark.timeout(90)
def test_a_flooding_worker_rotates_its_output_file(fresh, monkeypatch):
    skate = fresh
    monkeypatch.setenv("SKATE_LOG_MAX_BYTES", "200000")
    monkeypatch.setenv("SKATE_LOG_BACKUP_COUNT", "2")
    skate.init(num_cpus=1, log_to_driver=False)

    @skate.remote
    def flood(n):
        for i in range(n):
            print(f"line {i} " + "z" * 90)
        return os.getpid()

    skate.get(flood.remote(20_000), timeout=60)  # about 2 MB of output
    logs = os.path.join(skate._api._core().session_dir, "logs")
    outs = glob.glob(os.path.join(logs, "worker-*.out*"))
    assert any(p.endswith(".out.1") for p in outs) and any(p.endswith(".out.2") for p in outs)
    assert not any(p.endswith(".out.3") for p in outs)  # only two backups are kept
    assert sum(os.path.getsize(p) for p in outs) < 4 * 200_000
