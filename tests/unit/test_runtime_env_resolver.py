"""Resolving a call's env where it is submitted: merging with the parent, packing, uploading once."""

from __future__ import annotations

import json

import pytest

from skate.core_worker.runtime_envs import RuntimeEnvResolver
from skate.runtime_env import upload
from skate.runtime_env.spec import env_hash


class FakeCore:
    """Just the GCS KV requests the resolver makes."""

    gcs = "gcs"

    def __init__(self) -> None:
        self.kv: dict[bytes, bytes] = {}
        self.calls: list[tuple[str, bytes]] = []

    def request(self, conn, method, payload, timeout=None):
        self.calls.append((method, payload["key"]))
        if method == "kv_exists":
            return payload["key"] in self.kv
        if method == "kv_put":
            self.kv[payload["key"]] = payload["value"]
            return True
        raise AssertionError(method)


def _puts(core: FakeCore) -> int:
    return sum(1 for method, _ in core.calls if method == "kv_put")


def test_no_env_costs_nothing():
    core = FakeCore()
    r = RuntimeEnvResolver(core)
    assert r.resolve(None) == (None, "")
    assert core.calls == []


def test_working_dir_is_uploaded_once_in_chunks_manifest_last(tmp_path, monkeypatch):
    monkeypatch.setattr(upload, "CHUNK_BYTES", 64)
    (tmp_path / "a.txt").write_bytes(bytes(range(256)) * 2)
    core = FakeCore()
    env, h = RuntimeEnvResolver(core).resolve({"working_dir": str(tmp_path)})
    uri = env["working_dir"]
    assert uri.startswith("gcs://_skate_pkg_") and uri.endswith(".zip") and h
    key = ("pkg:" + uri[len("gcs://") :]).encode()
    manifest = json.loads(core.kv[key])
    assert manifest["chunks"] > 1
    assert all(len(core.kv[key + b":%d" % i]) <= 64 for i in range(manifest["chunks"]))
    assert core.calls[-1] == ("kv_put", key)  # the manifest is written last
    puts = _puts(core)
    # Another process (a fresh resolver) with the same content finds it there: no upload.
    env2, _ = RuntimeEnvResolver(core).resolve({"working_dir": str(tmp_path), "env_vars": {"X": "1"}})
    assert env2["working_dir"] == uri and _puts(core) == puts


def test_missing_paths_are_value_errors_naming_the_field(tmp_path):
    r = RuntimeEnvResolver(FakeCore())
    with pytest.raises(ValueError, match="working_dir.*does not exist"):
        r.resolve({"working_dir": str(tmp_path / "nope")})
    with pytest.raises(ValueError, match="py_modules.*does not exist"):
        r.resolve({"py_modules": [str(tmp_path / "nope")]})
    with pytest.raises(ValueError, match="requirements file"):
        r.resolve({"pip": str(tmp_path / "requirements.txt")})
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match="working_dir"):
        r.resolve({"working_dir": str(tmp_path / "f.txt")})
    with pytest.raises(ValueError, match="s3://"):
        r.resolve({"working_dir": "s3://bucket/x.zip"})


def test_requirements_file_is_read_here(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("# pinned\nalpha==1.0\n\nbeta  # why\n")
    env, _ = RuntimeEnvResolver(FakeCore()).resolve({"pip": str(req)})
    assert env["pip"] == {"packages": ["alpha==1.0", "beta"], "pip_check": False}
    env, _ = RuntimeEnvResolver(FakeCore()).resolve({"uv": {"packages": str(req)}})
    assert env["uv"] == {"packages": ["alpha==1.0", "beta"], "uv_check": False}


def test_py_modules_dir_file_and_wheel(tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (tmp_path / "single.py").write_text("")
    (tmp_path / "w-1.0-py3-none-any.whl").write_bytes(b"PK")
    env, _ = RuntimeEnvResolver(FakeCore()).resolve(
        {"py_modules": [str(pkg), str(tmp_path / "single.py"), str(tmp_path / "w-1.0-py3-none-any.whl")]}
    )
    a, b, c = env["py_modules"]
    assert a.endswith(".zip") and b.endswith(".zip") and a != b
    assert c.endswith("/w-1.0-py3-none-any.whl")  # a wheel keeps its name for pip


def test_job_env_is_the_parent_and_task_env_merges_over_it():
    r = RuntimeEnvResolver(FakeCore())
    r.set_job_env({"env_vars": {"A": "job", "B": "job"}})
    job_env, job_hash = r.resolve(None)
    assert job_env == {"env_vars": {"A": "job", "B": "job"}} and job_hash == env_hash(job_env)
    env, h = r.resolve({"env_vars": {"B": "task"}})
    assert env == {"env_vars": {"A": "job", "B": "task"}} and h != job_hash
    # A worker started in an env passes it on to the calls it makes.
    child = RuntimeEnvResolver(FakeCore(), parent=env)
    assert child.resolve(None) == (env, h)


def test_resolution_is_cached_per_env_value(tmp_path):
    core = FakeCore()
    r = RuntimeEnvResolver(core)
    first = r.resolve({"working_dir": str(tmp_path)})
    calls = len(core.calls)
    assert r.resolve({"working_dir": str(tmp_path)}) == first
    assert len(core.calls) == calls


def test_excludes_are_applied_and_dropped(tmp_path):
    (tmp_path / "keep.py").write_text("")
    (tmp_path / "skip.bin").write_text("")
    env, _ = RuntimeEnvResolver(FakeCore()).resolve({"working_dir": str(tmp_path), "excludes": ["*.bin"]})
    assert "excludes" not in env
    plain, _ = RuntimeEnvResolver(FakeCore()).resolve({"working_dir": str(tmp_path)})
    assert plain["working_dir"] != env["working_dir"]
