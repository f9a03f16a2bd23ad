"""Files another local user could read, plant or redirect: session root and sessions, spill
files, the cluster token on command lines.

Holes covered (issue 12): 5 (session root 0755 and planted sessions trusted), 6 (raylets
sharing a spill directory read each other's files; spill files follow links and are 0644),
8 (the token in argv, session details in the zygote's and workers' argv).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile

import numpy as np
import psutil
import pytest

import skate
from skate import _node
from skate._secure_files import read_token
from skate.exceptions import UnsafePathError
from skate.raylet import spill as spill_mod
from skate.scripts import attach, start_stop
from tests.integration._helpers import wait_for

MB = 1024 * 1024
OTHER_UID = 54321  # a user id that is not ours (the tests may run as root, which can chown)


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _can_chown() -> bool:
    return os.getuid() == 0


def _plant_session(root, name: str, *, uid: int | None = None, mode: int = 0o700, pids=()) -> str:
    path = os.path.join(root, name)
    os.mkdir(path, mode)
    os.chmod(path, mode)
    with open(os.path.join(path, "cluster.json"), "w") as f:
        json.dump({"gcs_address": "tcp://127.0.0.1:1", "head": True, "shared": True, "detached": True,
                   "node_id": "ff" * 14, "pids": list(pids)}, f)  # fmt: skip
    token = os.path.join(path, "token")
    with open(token, "wb") as f:
        f.write(b"planted-token")
    os.chmod(token, 0o600)
    if uid is not None:
        for p in (path, token, os.path.join(path, "cluster.json")):
            os.chown(p, uid, -1)
    return path


# -- hole 5: the session root and session discovery ------------------------------------------


def test_default_session_root_is_per_user_and_private(monkeypatch, tmp_path):
    monkeypatch.delenv("SKATE_TEMP_DIR")
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    root = _node.default_temp_root()
    assert root == os.path.join(str(tmp_path), f"skate-{os.getuid()}")
    assert _node.prepare_temp_root() == root
    assert _mode(root) == 0o700 and os.lstat(root).st_uid == os.getuid()
    # An old, open default root (the 0755 of before) is tightened on use.
    os.chmod(root, 0o755)
    _node.prepare_temp_root()
    assert _mode(root) == 0o700


def test_session_root_of_another_user_or_a_link_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.delenv("SKATE_TEMP_DIR")
    root = _node.default_temp_root()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    os.symlink(elsewhere, root)  # planted in the shared temp dir before we came
    with pytest.raises(UnsafePathError, match="symbolic link"):
        _node.prepare_temp_root()
    os.unlink(root)
    if _can_chown():
        os.mkdir(root, 0o700)
        os.chown(root, OTHER_UID, -1)
        with pytest.raises(UnsafePathError, match="belongs to user id"):
            _node.prepare_temp_root()
    # A root named by the user must not be writable by others: refused with the fix named.
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(UnsafePathError, match="chmod go-w"):
        _node.prepare_temp_root(str(shared))


def test_discovery_ignores_sessions_not_owned_by_the_caller_or_left_open(monkeypatch, tmp_path):
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    monkeypatch.setenv("SKATE_TEMP_DIR", str(root))
    mine = _plant_session(root, "session_mine")
    _plant_session(root, "session_open", mode=0o755)  # ours but other users may enter it
    os.symlink(mine, os.path.join(root, "session_link"))
    if _can_chown():
        _plant_session(root, "session_foreign", uid=OTHER_UID)
        # A foreign token file inside a session of ours is not trusted either.
        _plant_session(root, "session_foreign_token")
        os.chown(os.path.join(root, "session_foreign_token", "token"), OTHER_UID, -1)
    loose = _plant_session(root, "session_loose_token")
    os.chmod(os.path.join(loose, "token"), 0o644)
    assert _node.owned_sessions() == [
        str(p) for p in sorted(root.iterdir()) if p.name in {"session_mine", "session_loose_token"}
        or (p.name == "session_foreign_token" and _can_chown())
    ]  # fmt: skip
    found = attach.find_sessions()
    assert [info["session_dir"] for info in found] == [mine]
    assert found[0]["token"] == b"planted-token"
    with pytest.raises(UnsafePathError):
        read_token(loose)


@pytest.mark.skipif(not _can_chown(), reason="needs to plant a file owned by another user")
def test_skate_stop_does_not_act_on_a_planted_session(monkeypatch, tmp_path):
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    monkeypatch.setenv("SKATE_TEMP_DIR", str(root))
    victim = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(60)  # {root}/session_x"])
    try:
        planted = _plant_session(root, "session_x", uid=OTHER_UID, pids=[victim.pid])
        assert start_stop.stop(force=True) == 0
        assert victim.poll() is None, "skate stop killed a process named in another user's session"
        assert os.path.isdir(planted)
    finally:
        victim.kill()
        victim.wait()


def test_cluster_files_are_private(cluster):
    ctx = skate.init(ignore_reinit_error=True)
    session = ctx["session_dir"]

    @skate.remote
    def hello():
        print("a line for the worker's log")
        return os.getpid()

    skate.get(hello.remote(), timeout=60)
    root = os.path.dirname(session)
    assert os.lstat(root).st_uid == os.getuid() and not _mode(root) & 0o022
    for d in (session, os.path.join(session, "logs"), os.path.join(session, "sockets")):
        assert _mode(d) == 0o700, d
    for name in ("token", "cluster.json"):
        assert _mode(os.path.join(session, name)) == 0o600, name
    logs = os.listdir(os.path.join(session, "logs"))
    assert any(n.startswith("worker-") for n in logs) and "raylet.log" in logs
    loose = [n for n in logs if _mode(os.path.join(session, "logs", n)) & 0o077]
    assert loose == [], loose


# -- hole 8: secrets and session details off the command line ---------------------------------


def test_no_cluster_process_carries_the_token_or_session_json_in_argv(cluster):
    ctx = skate.init(ignore_reinit_error=True)
    session = ctx["session_dir"]

    @skate.remote
    def pid():
        return os.getpid(), "SKATE_ZYGOTE_INFO" in os.environ

    worker_pid, info_in_env = skate.get(pid.remote(), timeout=60)
    token = read_token(session).decode()
    procs = [
        p for p in psutil.process_iter(["pid", "cmdline"]) if session in " ".join(p.info["cmdline"] or [])
    ]
    names = " ".join(" ".join(p.info["cmdline"]) for p in procs)
    assert "skate.raylet.zygote" in names and "skate.gcs.server" in names
    for p in procs:
        cmd = " ".join(p.info["cmdline"])
        assert token not in cmd
        assert "gcs_address" not in cmd and "raylet_address" not in cmd, cmd  # no JSON of the session
    worker_cmd = " ".join(psutil.Process(worker_pid).cmdline())
    assert token not in worker_cmd and "gcs_address" not in worker_cmd
    # User code in the worker does not see the zygote's details in os.environ either (the
    # kernel's copy in /proc/<pid>/environ is readable by this user only, unlike argv).
    assert not info_in_env


def test_token_file_is_read_and_must_be_private(tmp_path, capsys):
    path = tmp_path / "token"
    path.write_bytes(b"file-token\n")
    os.chmod(path, 0o600)
    assert start_stop._token_for("127.0.0.1:1", None, str(path)) == b"file-token"
    os.chmod(path, 0o644)
    with pytest.raises(SystemExit, match="open to other users"):
        start_stop._token_for("127.0.0.1:1", None, str(path))
    link = tmp_path / "link"
    os.chmod(path, 0o600)
    os.symlink(path, link)
    with pytest.raises(SystemExit, match="token-file"):
        start_stop._token_for("127.0.0.1:1", None, str(link))


def test_token_flag_still_works_but_warns_it_is_visible(capsys, monkeypatch):
    monkeypatch.delenv("SKATE_AUTH_TOKEN", raising=False)
    assert start_stop._token_for("127.0.0.1:1", "argv-token") == b"argv-token"
    err = capsys.readouterr().err
    assert err.startswith("skate start: warning") and "ps" in err and "SKATE_AUTH_TOKEN" in err
    monkeypatch.setenv("SKATE_AUTH_TOKEN", "env-token")
    assert start_stop._token_for("127.0.0.1:1", None) == b"env-token"
    assert capsys.readouterr().err == ""


def test_token_is_prompted_for_on_a_terminal(monkeypatch, tmp_path):
    monkeypatch.delenv("SKATE_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("SKATE_TEMP_DIR", str(tmp_path))  # no local session to read it from
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("click.prompt", lambda text, hide_input=False: "typed-token" if hide_input else None)
    assert start_stop._token_for("127.0.0.1:1", None) == b"typed-token"
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    with pytest.raises(SystemExit, match="--token-file"):
        start_stop._token_for("127.0.0.1:1", None)


# -- hole 6: spill files ----------------------------------------------------------------------


def test_spill_directory_is_per_node_private_and_exclusive(tmp_path):
    base = tmp_path / "shared-spill"
    a = spill_mod.make_spill_dir(str(base), "skate-node-a")
    b = spill_mod.make_spill_dir(str(base), "skate-node-b")
    assert a != b and _mode(a) == 0o700 and _mode(b) == 0o700
    with pytest.raises(UnsafePathError, match="already exists"):
        spill_mod.make_spill_dir(str(base), "skate-node-a")  # planted or another raylet's
    link = tmp_path / "link-spill"
    os.symlink(base, link)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        spill_mod.make_spill_dir(str(link), "skate-node-c")


def test_spill_files_are_0600_and_never_written_through_a_link(tmp_path):
    d = spill_mod.make_spill_dir(str(tmp_path), "node")
    data = memoryview(b"x" * 100)
    path = os.path.join(d, "spill-1.bin")
    assert spill_mod._write_objects(path, [data, data]) == [0, 100]
    assert _mode(path) == 0o600
    with pytest.raises(FileExistsError):
        spill_mod._write_objects(path, [data])  # never over an existing file
    target = tmp_path / "precious"
    target.write_bytes(b"keep me")
    os.symlink(target, os.path.join(d, "spill-2.bin"))
    with pytest.raises(OSError):
        spill_mod._write_objects(os.path.join(d, "spill-2.bin"), [data])
    with pytest.raises(OSError):
        spill_mod._read_into(os.path.join(d, "spill-2.bin"), 0, memoryview(bytearray(7)))
    assert target.read_bytes() == b"keep me"


def test_raylet_refuses_a_symlinked_spill_directory(fresh, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "spill-link"
    os.symlink(real, link)
    config = {"type": "filesystem", "params": {"directory_path": str(link)}}
    with pytest.raises(Exception, match="symbolic link"):
        fresh.init(
            num_cpus=1,
            object_store_memory=80 * MB,
            _system_config={"object_spilling_config": json.dumps(config)},
        )


@pytest.mark.timeout(180)
def test_two_raylets_sharing_a_spill_directory_keep_their_own_objects(fresh, tmp_path):
    from skate.cluster_utils import Cluster

    spill = tmp_path / "spill"
    spill.mkdir()
    config = {
        "object_spilling_config": json.dumps({"type": "filesystem", "params": {"directory_path": str(spill)}})
    }
    cluster = Cluster(
        initialize_head=True,
        connect=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 80 * MB, "_system_config": config},
    )
    try:
        cluster.add_node(num_cpus=1, object_store_memory=80 * MB, resources={"other": 1})

        @fresh.remote(resources={"other": 1})
        class Holder:
            def fill(self, n):
                self.refs = [fresh.put(np.full(2_000_000, 1000 + i, dtype=np.int64)) for i in range(n)]
                return os.getpid()

            def check(self):
                return [int(fresh.get(r)[-1]) for r in self.refs]

        holder = Holder.remote()
        fresh.get(holder.fill.remote(8), timeout=120)  # 128 MB through an 80 MB store: spills
        mine = [fresh.put(np.full(2_000_000, i, dtype=np.int64)) for i in range(8)]  # the head spills too
        assert wait_for(lambda: len(os.listdir(spill)) == 2), os.listdir(spill)
        assert all(_mode(spill / d) == 0o700 for d in os.listdir(spill))
        assert [int(fresh.get(r, timeout=60)[-1]) for r in mine] == list(range(8))
        assert fresh.get(holder.check.remote(), timeout=120) == [1000 + i for i in range(8)]
    finally:
        cluster.shutdown()
        fresh.shutdown()
