"""Runtime envs as values: the RuntimeEnv class, validation, merging, hashing, resources."""

from __future__ import annotations

import pytest

from skate._runtime_env import validate_runtime_env
from skate.runtime_env import RuntimeEnv, RuntimeEnvConfig
from skate.runtime_env.spec import canonical, env_hash, merge, package_key, pip_spec, resource_keys


def test_runtime_env_is_a_checked_dict():
    env = RuntimeEnv(env_vars={"A": "1"}, pip=["pkg"])
    assert env == {"env_vars": {"A": "1"}, "pip": ["pkg"]}
    assert isinstance(env, dict)
    assert env.env_vars() == {"A": "1"}
    assert RuntimeEnv.deserialize(env.serialize()) == env
    with pytest.raises(ValueError, match="bogus"):
        RuntimeEnv(bogus=1)
    with pytest.raises(TypeError, match="env_vars"):
        RuntimeEnv(env_vars={"A": 1})


def test_runtime_env_config():
    assert RuntimeEnvConfig() == {"setup_timeout_seconds": 600, "eager_install": True}
    with pytest.raises(ValueError, match="setup_timeout_seconds"):
        RuntimeEnvConfig(setup_timeout_seconds=0)
    with pytest.raises(TypeError, match="eager_install"):
        RuntimeEnvConfig(eager_install="yes")


@pytest.mark.parametrize(
    "config, error, match",
    [
        ({"setup_timeout_seconds": "5"}, TypeError, "setup_timeout_seconds"),
        ({"setup_timeout_seconds": -5}, TypeError, "setup_timeout_seconds"),
        ({"eager_install": 1}, TypeError, "eager_install"),
        ({"timeout": 5}, ValueError, "timeout"),
    ],
)
def test_bad_config(config, error, match):
    with pytest.raises(error, match=match):
        validate_runtime_env({"config": config})


def test_config_minus_one_means_no_timeout():
    assert validate_runtime_env({"config": {"setup_timeout_seconds": -1}})


def test_pip_dict_unknown_field_named():
    with pytest.raises(ValueError, match="pip_versoin"):
        validate_runtime_env({"pip": {"packages": ["a"], "pip_versoin": "1"}})
    with pytest.raises(ValueError, match="pip_check"):
        validate_runtime_env({"uv": {"packages": ["a"], "pip_check": True}})


def test_merge_fields_override_and_env_vars_merge():
    job = {
        "env_vars": {"A": "job", "B": "job"},
        "working_dir": "gcs://_skate_pkg_1.zip",
        "pip": {"packages": ["x"]},
    }
    task = {"env_vars": {"B": "task", "C": "task"}, "pip": {"packages": ["y"]}}
    out = merge(job, task)
    assert out == {
        "env_vars": {"A": "job", "B": "task", "C": "task"},
        "working_dir": "gcs://_skate_pkg_1.zip",
        "pip": {"packages": ["y"]},
    }
    assert job["env_vars"] == {"A": "job", "B": "job"}  # inputs untouched


def test_merge_installer_replaces_the_parents_other_installer():
    assert merge({"conda": "base", "env_vars": {"A": "1"}}, {"pip": ["x"]}) == {
        "env_vars": {"A": "1"},
        "pip": ["x"],
    }


def test_merge_with_nothing():
    assert merge(None, None) is None
    assert merge({"env_vars": {"A": "1"}}, None) == {"env_vars": {"A": "1"}}
    assert merge(None, {"env_vars": {"A": "1"}}) == {"env_vars": {"A": "1"}}
    assert merge({}, {}) is None


def test_hash_ignores_order_config_and_empty_fields():
    a = {"env_vars": {"A": "1", "B": "2"}, "config": {"setup_timeout_seconds": 5}}
    b = {"env_vars": {"B": "2", "A": "1"}, "py_modules": []}
    assert env_hash(a) == env_hash(b) != ""
    assert env_hash({"env_vars": {"A": "2"}}) != env_hash(a)
    assert env_hash(None) == env_hash({}) == env_hash({"env_vars": {}, "config": {}}) == ""
    assert canonical({"excludes": ["x"], "env_vars": {"A": "1"}}) == {"env_vars": {"A": "1"}}


def test_resource_keys_one_per_package_and_pip_spec():
    env = {
        "working_dir": "gcs://_skate_pkg_aa.zip",
        "py_modules": ["gcs://_skate_pkg_bb.zip", "gcs://_skate_pkg_cc/x-1-py3-none-any.whl"],
        "pip": {"packages": ["p"], "pip_check": False},
        "env_vars": {"A": "1"},
    }
    keys = resource_keys(env)
    assert keys[:3] == [
        "pkg:gcs://_skate_pkg_aa.zip",
        "pkg:gcs://_skate_pkg_bb.zip",
        "pkg:gcs://_skate_pkg_cc/x-1-py3-none-any.whl",
    ]
    assert keys[3].startswith("pip:")
    # The same pip spec in another env is the same resource (installed once).
    assert resource_keys({"pip": {"packages": ["p"], "pip_check": False}}) == keys[3:]
    assert resource_keys({"env_vars": {"A": "1"}}) == []


def test_pip_spec_forms():
    assert pip_spec(["a", "b"]) == {"packages": ["a", "b"], "pip_check": False}
    assert pip_spec({"packages": ("a",), "pip_install_options": ["--no-index"]}) == {
        "packages": ["a"],
        "pip_install_options": ["--no-index"],
        "pip_check": False,
    }
    assert pip_spec(["a"], "uv") == {"packages": ["a"], "uv_check": False}


def test_package_key_refuses_foreign_uris():
    assert package_key("gcs://_skate_pkg_ab.zip") == "pkg:_skate_pkg_ab.zip"
    with pytest.raises(ValueError, match="s3://bucket/x.zip"):
        package_key("s3://bucket/x.zip")
