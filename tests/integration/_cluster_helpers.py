"""Helpers for the multi-node tests: a `multinode` fixture and `skate` CLI runners.

Every node of these tests lives under SKATE_TEMP_DIR (set by tests/conftest.py), so the
autouse leftover check there sees any process or file a test forgets.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

import skate
from skate.cluster_utils import Cluster
from skate.protocol import connect
from tests.integration._helpers import wait_for

STORE = 200 * 1024 * 1024  # object store bytes per node


def node_args(**kwargs) -> dict:
    """Arguments of Cluster.add_node with the small object store of these tests."""
    kwargs.setdefault("object_store_memory", STORE)
    return kwargs


@pytest.fixture
def multinode():
    """A Cluster with a 1-CPU head; the test adds nodes and connects (init(address=...))."""
    if skate.is_initialized():
        skate.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1))
    try:
        yield cluster
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()


def alive_nodes() -> list[dict]:
    return [n for n in skate.nodes() if n["Alive"]]


def node_is_alive(node_id: str) -> bool | None:
    """Alive flag of `node_id` in skate.nodes() (None if the GCS does not know it)."""
    for n in skate.nodes():
        if n["NodeID"] == node_id:
            return n["Alive"]
    return None


async def _known_nodes(node) -> set[str]:
    conn = await connect(node.raylet_address, node.token, name="known-nodes-probe", timeout=5)
    try:
        return set(await conn.call("known_nodes"))
    finally:
        conn.close()


def raylets_see(cluster: Cluster, timeout: float = 10.0) -> bool:
    """Wait until every live raylet of `cluster` sees exactly the cluster's live nodes as alive
    (its spillback view has caught up with nodes added and removed); True if it did in time."""
    nodes = cluster.list_all_nodes()
    want = {n.node_id for n in nodes}

    def caught_up() -> bool:
        return all(asyncio.run(_known_nodes(n)) == want for n in nodes)

    return bool(wait_for(caught_up, timeout=timeout))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def temp_root() -> str:
    return os.environ["SKATE_TEMP_DIR"]


def cli_env(**extra: str) -> dict:
    """The environment of a `skate` subprocess: this one's (so SKATE_TEMP_DIR is inherited)."""
    env = dict(os.environ)
    env.pop("SKATE_AUTH_TOKEN", None)
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m skate.scripts.cli ARGS` to completion; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "skate.scripts.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else cli_env(),
        stdin=subprocess.DEVNULL,
    )


def processes_under(root: str) -> list[psutil.Process]:
    """Processes (other than this one) whose command line names `root`."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except psutil.Error:
            continue
        if root in cmd and p.pid != os.getpid():
            out.append(p)
    return out


def wait_gone(root: str, timeout: float = 10.0) -> list[psutil.Process]:
    """Wait for every process naming `root` to exit; return those still there."""
    deadline = time.monotonic() + timeout
    left = processes_under(root)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = processes_under(root)
    return left


def force_stop_cli() -> None:
    """Best-effort cleanup after a CLI test: `skate stop --force` (only this run's nodes)."""
    if skate.is_initialized():
        skate.shutdown()
    try:
        run_cli("stop", "--force", timeout=30)
    except subprocess.TimeoutExpired:
        pass


def session_dirs(root: str) -> list[str]:
    return sorted(d for d in os.listdir(root) if d.startswith("session_")) if os.path.isdir(root) else []


def shm_files() -> list[str]:
    """Shared-memory files of this test run's clusters (tagged with its temp root)."""
    import glob
    import hashlib

    tag = hashlib.sha1(temp_root().encode()).hexdigest()[:8]
    return glob.glob(f"/dev/shm/skate-{tag}-*")
