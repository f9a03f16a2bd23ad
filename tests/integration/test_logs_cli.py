"""`skate logs` on a two-node cluster on one machine: listing per node, one file of either node,
an actor's and a task's worker log, --tail, --follow, and names that try to leave the logs
directory (refused by the raylet, whatever the client sends)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

import skate
from skate.cluster_utils import Cluster
from skate.exceptions import UnsafePathError
from skate.protocol import connect
from skate.protocol.connection import RemoteError
from skate.raylet.introspect import read_log, safe_log_path
from skate.util import state
from tests.integration._cluster_helpers import cli_env, node_args, run_cli
from tests.integration._helpers import wait_for

MARK = uuid.uuid4().hex[:10]


@skate.remote(resources={"b": 1}, num_cpus=0)
class Talker:
    def say(self, text):
        print(f"actor-out {text}", flush=True)
        print(f"actor-err {text}", file=sys.stderr, flush=True)
        return True


@skate.remote(resources={"b": 1}, num_cpus=0)
def shout(text):
    print(f"task-out {text}", flush=True)
    return True


@pytest.fixture(scope="module")
def logged():
    if skate.is_initialized():
        skate.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1))
    try:
        other = cluster.add_node(**node_args(num_cpus=1, resources={"b": 2}))
        skate.init(address=cluster.address)
        talker = Talker.remote()
        assert skate.get(talker.say.remote(MARK))
        ref = shout.remote(MARK)
        assert skate.get(ref)
        task_id = ref.task_id().hex()
        assert wait_for(
            lambda: (state.list_tasks(filters=[("task_id", "=", task_id)]) or [{}])[0].get("worker_id"), 15
        )
        yield {
            "cluster": cluster,
            "head": cluster.head_node,
            "other": other,
            "talker": talker,
            "actor_id": talker._actor_id.hex(),
            "task_id": task_id,
        }
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()


def _logs(logged, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return run_cli("logs", "--address", logged["cluster"].address, *args, timeout=timeout)


@pytest.mark.timeout(90)
def test_lists_every_nodes_files(logged):
    out = _logs(logged)
    assert out.returncode == 0, out.stderr
    head, other = logged["head"].node_id, logged["other"].node_id
    assert f"Node {head} (head)" in out.stdout and f"Node {other} " in out.stdout
    sections = out.stdout.split(f"Node {other} ")
    assert len(sections) == 2
    # Each node's own raylet log, listed under that node (their session directories differ).
    assert "raylet.log" in sections[0] + sections[1].split("Node ")[0]
    assert "raylet.log" in sections[1].split("\nNode ")[0]
    only = _logs(logged, "--node-id", other[:10])
    assert only.returncode == 0 and f"Node {other}" in only.stdout and head not in only.stdout


@pytest.mark.timeout(90)
def test_prints_a_file_of_the_head_or_another_node(logged):
    other = logged["other"]
    path = os.path.join(other.session_dir, "logs", "raylet.log")
    with open(path) as f:
        last = f.read().splitlines()[-1]
    out = _logs(logged, "raylet.log", "--node-id", other.node_id, "--tail", "5")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert 1 <= len(lines) <= 5 and last in lines
    head = _logs(logged, "raylet.log", "--tail", "-1")
    with open(os.path.join(logged["head"].session_dir, "logs", "raylet.log")) as f:
        first = f.readline().rstrip("\n")
    assert head.returncode == 0 and head.stdout.startswith(first)


@pytest.mark.timeout(90)
def test_actor_and_task_logs(logged):
    out = _logs(logged, "--actor-id", logged["actor_id"])
    assert out.returncode == 0, out.stderr
    assert f"actor-out {MARK}" in out.stdout and "actor-err" not in out.stdout
    err = _logs(logged, "--actor-id", logged["actor_id"], "--err")
    assert err.returncode == 0 and f"actor-err {MARK}" in err.stdout
    task = _logs(logged, "--task-id", logged["task_id"])
    assert task.returncode == 0 and f"task-out {MARK}" in task.stdout, task.stderr
    missing = _logs(logged, "--actor-id", "ab" * 16)
    assert missing.returncode == 1 and "no actor with id" in missing.stderr


@pytest.mark.timeout(90)
def test_follow_prints_what_is_appended(logged):
    proc = subprocess.Popen(
        [sys.executable, "-m", "skate.scripts.cli", "logs", "--address", logged["cluster"].address]
        + ["--actor-id", logged["actor_id"], "--tail", "0", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        later = f"{MARK}-later"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(later in line for line in seen):
            skate.get(logged["talker"].say.remote(later))  # keep talking until the follower shows it
            time.sleep(0.3)
        assert any(f"actor-out {later}" in line for line in seen), (seen, proc.poll())
        assert not any(f"actor-out {MARK}" == line.strip() for line in seen)  # --tail 0: nothing old
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "name", ["../token", "../../etc/passwd", "/etc/passwd", "..", "logs/../token", "a\x00b", "missing.log"]
)
def test_bad_names_are_refused(logged, name):
    if "\x00" not in name:  # the command line cannot carry a NUL; the raylet is asked below
        out = _logs(logged, name)
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert ("no log file" if name == "missing.log" else "refused log file") in out.stderr, out.stderr
    head = logged["head"]

    async def ask() -> None:
        conn = await connect(head.raylet_address, head.token, name="logs-probe", timeout=5)
        try:
            await conn.call("read_log", {"name": name})
        finally:
            conn.close()

    with pytest.raises(RemoteError) as info:
        asyncio.run(ask())
    assert info.value.kind == ("FileNotFoundError" if name == "missing.log" else "UnsafePathError")


def test_symlinks_in_the_logs_directory_are_refused(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (tmp_path / "secret").write_text("secret")
    os.symlink(tmp_path / "secret", logs / "link.log")
    (logs / "ok.log").write_text("one\ntwo\nthree\n")
    with pytest.raises(UnsafePathError):
        safe_log_path(str(logs), "link.log")
    assert read_log(str(logs), {"name": "ok.log", "tail_lines": 2})["data"] == b"two\nthree\n"
    assert read_log(str(logs), {"name": "ok.log", "offset": -6})["data"] == b"three\n"
    reply = read_log(str(logs), {"name": "ok.log", "offset": 4, "max_bytes": 3})
    assert reply == {"name": "ok.log", "data": b"two", "offset": 7, "size": 14}
