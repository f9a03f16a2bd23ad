"""Runtime envs on a real cluster: each field, inheritance, caching, failures, GC."""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import threading
import zipfile

import pytest

import skate
from skate.core_worker import context
from tests.integration._helpers import wait_for


def _stats() -> dict:
    core = context.current
    return core.request(core.raylet, "runtime_env_stats")


def _installs_of(prefix: str) -> dict:
    return {k: v for k, v in _stats()["resources"].items() if k.startswith(prefix)}


def _wheel(tmp_path, name: str = "tiny_renv_pkg", value: str = "from a wheel") -> str:
    """A minimal pure-Python wheel written by hand (no build tool, no network)."""
    dist = f"{name}-0.1.dist-info"
    files = {
        f"{name}/__init__.py": f"VALUE = {value!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 0.1\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    out = tmp_path / f"{name}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return str(out)


@pytest.fixture
def fresh():
    if skate.is_initialized():
        skate.shutdown()
    yield skate
    skate.shutdown()


@skate.remote
def env_of(name: str):
    return os.environ.get(name)


@skate.remote
def effective_env():
    return dict(skate.get_runtime_context().runtime_env)


@pytest.mark.timeout(90)
def test_env_vars_task_actor_and_runtime_context(fresh):
    skate.init(num_cpus=2)
    env = {"env_vars": {"RENV_X": "task"}}
    assert skate.get(env_of.options(runtime_env=env).remote("RENV_X")) == "task"
    assert skate.get(env_of.remote("RENV_X")) is None  # the default pool never got it
    assert skate.get(effective_env.options(runtime_env=env).remote()) == env
    assert skate.get(effective_env.remote()) == {}

    @skate.remote
    class Reader:
        def read(self, name):
            return os.environ.get(name), dict(skate.get_runtime_context().runtime_env)

    a = Reader.options(runtime_env={"env_vars": {"RENV_A": "actor"}}).remote()
    assert skate.get(a.read.remote("RENV_A")) == ("actor", {"env_vars": {"RENV_A": "actor"}})
    assert "RENV_X" not in os.environ and "RENV_A" not in os.environ  # the driver is untouched


@pytest.mark.timeout(90)
def test_job_env_merges_with_task_env_and_children_inherit(fresh):
    skate.init(num_cpus=2, runtime_env={"env_vars": {"A": "job", "B": "job"}})

    @skate.remote
    def pair():
        return os.environ.get("A"), os.environ.get("B")

    @skate.remote
    def parent():
        # No env of its own: the child inherits this task's effective env.
        return skate.get(pair.remote()), skate.get(
            pair.options(runtime_env={"env_vars": {"A": "child"}}).remote()
        )

    assert skate.get(pair.remote()) == ("job", "job")
    assert skate.get(pair.options(runtime_env={"env_vars": {"B": "task"}}).remote()) == ("job", "task")
    inherited, overridden = skate.get(parent.options(runtime_env={"env_vars": {"B": "task"}}).remote())
    assert inherited == ("job", "task")
    assert overridden == ("child", "task")
    assert skate.get_runtime_context().runtime_env == {"env_vars": {"A": "job", "B": "job"}}
    assert os.environ.get("A") != "job"


@pytest.mark.timeout(90)
def test_working_dir_with_excludes_and_gitignore(fresh, tmp_path):
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "renv_helper_mod.py").write_text("def answer():\n    return 42\n")
    (proj / "data" / "in.txt").write_text("payload")
    (proj / "secret.key").write_text("no")
    (proj / "scratch.tmp").write_text("no")
    (proj / ".gitignore").write_text("*.tmp\n")
    cwd, path = os.getcwd(), list(sys.path)
    skate.init(num_cpus=2, runtime_env={"working_dir": str(proj), "excludes": ["secret.key"]})

    @skate.remote
    def use():
        import renv_helper_mod

        with open("data/in.txt") as f:
            data = f.read()
        return renv_helper_mod.answer(), data, sorted(os.listdir(".")), os.getcwd()

    answer, data, listing, where = skate.get(use.remote())
    assert (answer, data) == (42, "payload")
    assert "secret.key" not in listing and "scratch.tmp" not in listing
    assert where != str(proj)  # a copy unpacked on the node, not the driver's directory
    assert os.getcwd() == cwd and sys.path == path
    with pytest.raises(ImportError):
        import renv_helper_mod  # noqa: F401


@pytest.mark.timeout(120)
def test_py_modules_dir_and_wheel(fresh, tmp_path):
    pkg = tmp_path / "renv_dir_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("VALUE = 'dir'\n")
    wheel = _wheel(tmp_path, "renv_wheel_mod", "wheel")
    skate.init(num_cpus=2)

    @skate.remote
    def use():
        import renv_dir_pkg
        import renv_wheel_mod

        return renv_dir_pkg.VALUE, renv_wheel_mod.VALUE

    env = {"py_modules": [str(pkg), wheel]}
    assert skate.get(use.options(runtime_env=env).remote(), timeout=100) == ("dir", "wheel")


@pytest.mark.timeout(150)
def test_pip_installs_once_for_concurrent_first_use_and_caches(fresh, tmp_path):
    wheel = _wheel(tmp_path, "renv_pip_pkg", "pip")
    skate.init(num_cpus=2)

    @skate.remote
    def use(i):
        import renv_pip_pkg

        return renv_pip_pkg.VALUE, os.environ.get("EXTRA")

    env = {"pip": {"packages": [wheel], "pip_install_options": ["--no-index"]}}
    refs = [use.options(runtime_env=env).remote(i) for i in range(4)]  # concurrent first use
    assert skate.get(refs, timeout=120) == [("pip", None)] * 4
    pips = _installs_of("pip:")
    assert len(pips) == 1
    installs = _stats()["installs"]
    # Second use, and another env with the same pip spec: nothing is installed again.
    assert skate.get(use.options(runtime_env=env).remote(9)) == ("pip", None)
    assert skate.get(use.options(runtime_env=dict(env, env_vars={"EXTRA": "1"})).remote(10)) == ("pip", "1")
    assert _stats()["installs"] == installs
    with pytest.raises(ImportError):  # the driver's environment never changes
        import renv_pip_pkg  # noqa: F401

    @skate.remote
    def absent():
        try:
            import renv_pip_pkg  # noqa: F401

            return False
        except ImportError:
            return True

    assert skate.get(absent.remote())


@pytest.mark.timeout(150)
def test_failures_are_clear_and_do_not_wedge_the_pool(fresh, tmp_path):
    skate.init(num_cpus=2)

    @skate.remote
    def f():
        return 1

    missing = "/nonexistent/renv_missing_pkg-0.0.0-py3-none-any.whl"
    bad = {"pip": {"packages": [missing], "pip_install_options": ["--no-index"]}}
    refs = [f.options(runtime_env=bad).remote() for _ in range(3)]
    for ref in refs:
        with pytest.raises(skate.exceptions.RuntimeEnvSetupError) as info:
            skate.get(ref, timeout=120)
    message = str(info.value)
    assert "renv_missing_pkg" in message and "runtime_env_setup" in message  # pip's lines, the log
    assert skate.get(f.remote()) == 1  # other envs still run
    assert skate.get(f.options(runtime_env={"env_vars": {"OK": "1"}}).remote()) == 1

    @skate.remote
    class A:
        def ping(self):
            return "pong"

    actor = A.options(runtime_env=bad).remote()
    with pytest.raises(skate.exceptions.RuntimeEnvSetupError, match="renv_missing_pkg"):
        skate.get(actor.ping.remote(), timeout=120)

    with pytest.raises(skate.exceptions.RuntimeEnvSetupError, match="uv"):
        skate.get(f.options(runtime_env={"uv": ["x"]}).remote(), timeout=60)
    with pytest.raises(skate.exceptions.RuntimeEnvSetupError, match="conda"):
        skate.get(f.options(runtime_env={"conda": "myenv"}).remote(), timeout=60)
    with pytest.raises(ValueError, match="working_dir"):
        f.options(runtime_env={"working_dir": str(tmp_path / "nope")}).remote()
    with pytest.raises(ValueError, match="bogus"):
        f.options(runtime_env={"bogus": 1}).remote()
    with pytest.raises(ValueError, match="pip"):
        f.options(runtime_env={"pip": ["a"], "conda": "b"}).remote()
    assert skate.get(f.remote()) == 1


@pytest.mark.timeout(60)
def test_bad_job_env_fails_init_and_starts_nothing(fresh, tmp_path):
    with pytest.raises(ValueError, match="working_dir"):
        skate.init(num_cpus=1, runtime_env={"working_dir": str(tmp_path / "nope")})
    assert not skate.is_initialized()


@pytest.mark.timeout(120)
def test_unused_envs_are_collected_past_the_disk_budget(fresh, tmp_path, monkeypatch):
    monkeypatch.setenv("SKATE_RUNTIME_ENV_CACHE_BYTES", "1")  # every unused env is over budget
    monkeypatch.setenv("SKATE_RUNTIME_ENV_WORKER_IDLE_S", "0.5")  # idle env workers go soon
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "f.txt").write_text("x" * 1000)
    skate.init(num_cpus=2)

    @skate.remote
    def read():
        with open("f.txt") as f:
            return len(f.read())

    assert skate.get(read.options(runtime_env={"working_dir": str(proj)}).remote()) == 1000
    pkgs = _installs_of("pkg:")
    assert len(pkgs) == 1
    path = next(iter(pkgs.values()))["path"]
    assert os.path.isdir(path)
    # Its worker, idle, is stopped; the env is then unused and its files go.
    wait_for(lambda: not _installs_of("pkg:"), timeout=30)
    wait_for(lambda: not os.path.exists(path), timeout=10)
    # Used again: installed again, and it works.
    assert skate.get(read.options(runtime_env={"working_dir": str(proj)}).remote()) == 1000


@pytest.mark.timeout(90)
def test_env_setup_runs_in_the_background(fresh, tmp_path):
    """While a slow env installs, other tasks keep running (the raylet's loop never blocks)."""
    skate.init(num_cpus=2)
    slow_dir = tmp_path / "slowpkg"
    slow_dir.mkdir()
    # A local "package" whose setup.py sleeps: pip builds it in its subprocess.
    (slow_dir / "setup.py").write_text(
        "import time\ntime.sleep(4)\nfrom setuptools import setup\nsetup(name='renv-slow', version='0.1')\n"
    )

    @skate.remote
    def f():
        return 1

    slow = f.options(
        runtime_env={
            "pip": {
                "packages": [str(slow_dir)],
                "pip_install_options": ["--no-index", "--no-build-isolation"],
            }
        }
    ).remote()
    done = threading.Event()
    results = []

    def others():
        for _ in range(20):
            results.append(skate.get(f.remote(), timeout=10))
        done.set()

    t = threading.Thread(target=others)
    t.start()
    assert done.wait(30)
    t.join()
    assert results == [1] * 20
    ready, _ = skate.wait([slow], timeout=0)
    assert not ready  # the slow install was still going while the others ran
    try:
        skate.get(slow, timeout=60)
    except skate.exceptions.RuntimeEnvSetupError:
        pass  # without setuptools here the build fails; what matters is that it did not block


@pytest.mark.timeout(150)
def test_pip_env_worker_from_a_fresh_interpreter(fresh, tmp_path, monkeypatch):
    """A pip env whose packages the worker template already loaded runs in a fresh interpreter
    (forced here for any pip env), where the env's packages come first."""
    monkeypatch.setenv("SKATE_RUNTIME_ENV_FRESH_WORKERS", "1")
    wheel = _wheel(tmp_path, "renv_fresh_pkg", "fresh")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "renv_wd_mod.py").write_text("X = 7\n")
    skate.init(num_cpus=2)

    @skate.remote
    def use():
        import renv_fresh_pkg
        import renv_wd_mod

        return renv_fresh_pkg.VALUE, renv_wd_mod.X, "--worker" in sys.argv, os.environ.get("E")

    env = {"pip": [wheel], "working_dir": str(proj), "env_vars": {"E": "1"}}
    assert skate.get(use.options(runtime_env=env).remote(), timeout=120) == ("fresh", 7, True, "1")

    @skate.remote
    def plain():
        return "--worker" in sys.argv

    assert skate.get(plain.remote()) is False  # default workers still fork from the template
