"""A worker flooding its output does not flood the driver (issue 12, hole 9): forwarding stops
at the line budget, the driver is told how many lines it missed, the log file has them all."""

from __future__ import annotations

import glob
import os

import pytest

import skate
from tests.integration._helpers import tapped_std_streams, wait_for


@pytest.mark.timeout(120)
def test_flooding_worker_is_limited_and_the_driver_told(cluster):
    @skate.remote
    def flood(n):
        for i in range(n):
            print(f"flood-line {i}")
        return os.getpid()

    n = 60_000  # well over the burst of 10000 lines
    with tapped_std_streams() as (out, _err):
        pid = skate.get(flood.remote(n), timeout=60)
        assert wait_for(lambda: "[skate]" in out.getvalue() and "not forwarded" in out.getvalue(), timeout=30)
        text = out.getvalue()
    forwarded = text.count("flood-line")
    assert 0 < forwarded < n / 2, forwarded
    assert "lines of output were not forwarded" in text
    session = skate.init(ignore_reinit_error=True)["session_dir"]
    logs = glob.glob(os.path.join(session, "logs", "worker-*.out"))
    total = 0
    for path in logs:
        with open(path) as f:
            total += sum(1 for line in f if line.startswith("flood-line"))
    assert total >= n  # the file keeps every line
    assert pid > 0

    @skate.remote
    def ping():
        return "pong"

    assert skate.get(ping.remote(), timeout=30) == "pong"
