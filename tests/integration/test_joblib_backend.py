"""The joblib backend: `joblib.parallel_backend("ray")` / ("skate") runs on a Skate Pool."""

from __future__ import annotations

import builtins
import os
import sys

import pytest

import skate

joblib = pytest.importorskip("joblib")

pytestmark = pytest.mark.timeout(60)


def square(x):
    return x * x


def fail_on_three(x):
    if x == 3:
        raise KeyError(f"bad {x}")
    return x


def pid(_):
    return os.getpid()


@pytest.fixture(scope="module")
def registered(cluster):
    from skate.util.joblib import register_ray

    register_ray()
    yield cluster


@pytest.mark.parametrize("name", ["ray", "skate"])
def test_parallel_runs_on_actors(registered, name):
    with joblib.parallel_backend(name, n_jobs=2):
        out = joblib.Parallel()(joblib.delayed(square)(i) for i in range(50))
        pids = set(joblib.Parallel(batch_size=1)(joblib.delayed(pid)(i) for i in range(8)))
    assert out == [i * i for i in range(50)]
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_n_jobs_minus_one_is_the_cluster_cpus(registered):
    from skate.util.joblib.backend import SkateBackend

    assert SkateBackend().effective_n_jobs(-1) == 4
    assert SkateBackend().effective_n_jobs(-2) == 3
    with pytest.raises(ValueError):
        SkateBackend().effective_n_jobs(0)
    with joblib.parallel_backend("ray"):
        assert joblib.Parallel()(joblib.delayed(square)(i) for i in range(3)) == [0, 1, 4]


def test_error_keeps_its_type_and_pool_recovers(registered):
    with joblib.parallel_backend("ray", n_jobs=2):
        with pytest.raises(KeyError, match="bad 3"):
            joblib.Parallel()(joblib.delayed(fail_on_three)(i) for i in range(6))
        assert joblib.Parallel()(joblib.delayed(square)(i) for i in range(3)) == [0, 1, 4]


def test_n_jobs_one_runs_here(registered):
    with joblib.parallel_backend("skate", n_jobs=1):
        assert joblib.Parallel()(joblib.delayed(pid)(i) for i in range(2)) == [os.getpid()] * 2


def free_cpus(_):
    return skate.available_resources().get("CPU", 0)


def test_ray_remote_args_reach_the_actors(registered):
    with joblib.parallel_backend("ray", n_jobs=2):
        assert set(joblib.Parallel()(joblib.delayed(free_cpus)(i) for i in range(2))) == {4}
    with joblib.parallel_backend("ray", n_jobs=2, ray_remote_args={"num_cpus": 1}):
        assert set(joblib.Parallel()(joblib.delayed(free_cpus)(i) for i in range(2))) == {2}


def test_missing_joblib_names_pip_install(monkeypatch):
    from skate.util import joblib as skate_joblib

    real_import = builtins.__import__

    def no_joblib(name, *args, **kwargs):
        if name == "joblib" or name.startswith("joblib."):
            raise ImportError("No module named 'joblib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_joblib)
    for mod in [m for m in sys.modules if m == "joblib" or m.startswith("joblib.")]:
        monkeypatch.delitem(sys.modules, mod)
    with pytest.raises(ImportError, match="pip install joblib"):
        skate_joblib.register_skate()
    with pytest.raises(ImportError, match="pip install joblib"):
        skate_joblib.register_ray()


def test_importing_skate_does_not_import_joblib():
    import subprocess

    code = "import skate, skate.util, skate.util.joblib, sys; print('joblib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
    assert skate is not None
