"""Shared fixtures: a module-wide cluster, and a check that nothing is left behind.

Every session directory of this test run lives under one temp root, so a leftover
process is any process whose command line names that root, and a leftover file is any
session directory or shared-memory file tagged with that root.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import signal
import tempfile
import time

import psutil
import pytest

_inherited = os.environ.get("SKATE_TEMP_DIR", "")
if os.path.basename(_inherited).startswith("skate-tests-") and os.path.isdir(_inherited):
    # A process a test started (a job's entrypoint, a workload script) that imports this
    # module: it belongs to its parent's run (a root of its own would be left behind).
    _ROOT, _OWN_ROOT = _inherited, False
else:
    _ROOT, _OWN_ROOT = tempfile.mkdtemp(prefix="skate-tests-"), True
os.environ["SKATE_TEMP_DIR"] = _ROOT
# Shared-memory files of this run's clusters carry a tag of _ROOT (see plasma.arena_path).
_SHM_GLOB = "/dev/shm/skate-" + hashlib.sha1(_ROOT.encode()).hexdigest()[:8] + "-*"

import skate  # noqa: E402  (after SKATE_TEMP_DIR is set)


def _leftovers() -> tuple[list[psutil.Process], list[str]]:
    procs = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except psutil.Error:
            continue
        if _ROOT in cmd and p.pid != os.getpid():
            procs.append(p)
    files = sorted(glob.glob(_SHM_GLOB)) + glob.glob(os.path.join(_ROOT, "*"))
    return procs, files


def assert_no_leftovers(timeout: float = 10.0) -> None:
    """Fail (and clean up) if any Skate process or file of this run is still around."""
    deadline = time.monotonic() + timeout
    procs, files = _leftovers()
    while (procs or files) and time.monotonic() < deadline:
        time.sleep(0.05)
        procs, files = _leftovers()
    if procs or files:
        described = [f"{p.pid}: {' '.join(p.cmdline())[:120]}" for p in procs if p.is_running()]
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        for f in files:
            shutil.rmtree(f, ignore_errors=True) if os.path.isdir(f) else os.unlink(f)
        pytest.fail(f"left behind: processes {described}, files {files}")


@pytest.fixture(autouse=True)
def no_leftovers():
    """After each test that owns no module-wide cluster: no process, no file may remain."""
    yield
    if not skate.is_initialized():
        assert_no_leftovers()


@pytest.fixture(scope="module")
def cluster():
    """One local cluster with 4 CPUs and 2 'custom' shared by the tests of a module."""
    if skate.is_initialized():
        skate.shutdown()
    skate.init(num_cpus=4, resources={"custom": 2})
    yield skate
    skate.shutdown()
    assert_no_leftovers()


@pytest.fixture
def fresh():
    """No cluster: the test calls skate.init itself; shut down afterwards."""
    if skate.is_initialized():
        skate.shutdown()
    yield skate
    if skate.is_initialized():
        skate.shutdown()


def pytest_sessionfinish(session, exitstatus):
    if skate.is_initialized():
        skate.shutdown()
    if _OWN_ROOT:
        shutil.rmtree(_ROOT, ignore_errors=True)
