"""A driver that dies without shutdown() must not leave its cluster behind."""

from __future__ import annotations

import glob
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from tests.integration._helpers import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DRIVER = textwrap.dedent(
    """
    import os, sys, time
    import skate

    skate.init(num_cpus=2)

    @skate.remote
    def f(x):
        return x + 1

    assert skate.get(f.remote(41), timeout=30) == 42
    node = skate._api._node
    {pre}
    print(node.session_dir, node.node_id, flush=True)
    {tail}
    """
)


WAIT_STDIN = "sys.stdin.readline()"
BUSY = textwrap.dedent(
    """
    started = os.path.join(node.session_dir, "busy-started")
    busy = skate.remote(lambda path: open(path, "w").close() or time.sleep(600)).remote(started)
    deadline = time.monotonic() + 30
    while not os.path.exists(started) and time.monotonic() < deadline:
        time.sleep(0.05)
    """
)


def _start_driver(tail: str, pre: str = "") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER.format(tail=tail, pre=pre)],
        cwd=REPO,
        env=dict(os.environ),  # SKATE_TEMP_DIR from conftest
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _read_line(proc: subprocess.Popen, timeout: float = 60.0) -> str:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if sel.select(remaining):
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
    finally:
        sel.close()
    if b"\n" not in buf:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"driver printed no session line; stdout={buf!r} stderr={err.decode()[-2000:]}")
    return buf.split(b"\n", 1)[0].decode().strip()


def _shm_files(node_id: str) -> list[str]:
    """The node's shared-memory arena file(s): /dev/shm/skate-...<node id prefix>..."""
    return glob.glob(f"/dev/shm/skate-*{node_id[:16]}*")


def _cluster_processes(session_dir: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(p.info["cmdline"] or [])
        except psutil.Error:
            continue
        if session_dir in cmd:
            found.append(p)
    return found


def _assert_cluster_gone(session_dir: str, node_id: str, pids: list[int], timeout: float = 15.0) -> None:

    def alive() -> list[int]:
        out = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    out.append(pid)
            except psutil.NoSuchProcess:
                pass
        return out

    def gone() -> bool:
        return (
            not alive()
            and not _cluster_processes(session_dir)
            and not os.path.exists(session_dir)
            and not _shm_files(node_id)
        )

    wait_for(gone, timeout=timeout, interval=0.1)
    assert alive() == [], f"cluster processes still alive: {alive()}"
    assert _cluster_processes(session_dir) == []
    assert not os.path.exists(session_dir), f"session dir left behind: {os.listdir(session_dir)}"
    assert not _shm_files(node_id), f"shared memory left behind: {_shm_files(node_id)}"


def test_sigkilled_driver_leaves_nothing_behind():
    proc = _start_driver("time.sleep(600)")
    try:
        session_dir, node_id = _read_line(proc).split()
        assert os.path.isdir(session_dir)
        assert _shm_files(node_id), os.listdir("/dev/shm")
        procs = _cluster_processes(session_dir)
        pids = [p.pid for p in procs]
        # gcs, raylet, zygote and at least the worker that ran the task
        assert len(pids) >= 4, [" ".join(p.cmdline())[:100] for p in procs]
        assert proc.pid not in pids
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        _assert_cluster_gone(session_dir, node_id, pids)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_interpreter_exit_without_shutdown_cleans_up():
    proc = _start_driver(WAIT_STDIN)
    try:
        session_dir, node_id = _read_line(proc).split()
        pids = [p.pid for p in _cluster_processes(session_dir)]
        assert len(pids) >= 4
        _, err = proc.communicate(b"go\n", timeout=30)
        assert proc.returncode == 0, err.decode()[-2000:]
        # atexit ran shutdown(): everything is gone (almost) at once.
        _assert_cluster_gone(session_dir, node_id, pids, timeout=5.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def test_driver_dying_of_an_exception_cleans_up():
    proc = _start_driver(WAIT_STDIN + "; raise RuntimeError('driver failed on purpose')")
    try:
        session_dir, node_id = _read_line(proc).split()
        pids = [p.pid for p in _cluster_processes(session_dir)]
        assert len(pids) >= 4
        _, err = proc.communicate(b"go\n", timeout=30)
        assert proc.returncode == 1
        assert b"driver failed on purpose" in err
        _assert_cluster_gone(session_dir, node_id, pids, timeout=5.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def test_sigterm_driver_leaves_nothing_behind():
    proc = _start_driver("time.sleep(600)")
    try:
        session_dir, node_id = _read_line(proc).split()
        pids = [p.pid for p in _cluster_processes(session_dir)]
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        _assert_cluster_gone(session_dir, node_id, pids)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.parametrize("how", ["sigkill", "exit"])
def test_driver_gone_while_a_task_runs(how):
    # A worker busy in user code (a 600 s sleep) must go too.
    proc = _start_driver("time.sleep(600)" if how == "sigkill" else WAIT_STDIN, pre=BUSY)
    try:
        session_dir, node_id = _read_line(proc).split()
        procs = _cluster_processes(session_dir)
        pids = [p.pid for p in procs]
        assert len(pids) >= 4
        if how == "sigkill":
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        else:
            _, err = proc.communicate(b"go\n", timeout=30)
            assert proc.returncode == 0, err.decode()[-2000:]
        _assert_cluster_gone(session_dir, node_id, pids)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
