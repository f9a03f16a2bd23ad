"""Validating runtime environments: field names and types, checked where they are given.

Only the shape is checked here (cheap, no file system): that a `working_dir` exists, or a
requirements file, is checked when the environment is resolved for submission
(`skate.core_worker.runtime_envs`), at `.remote()` or `init()`.
"""

from __future__ import annotations

from typing import Any

_LIST_OF_STR = ("py_modules", "excludes", "java_jars")


def validate_runtime_env(env: Any) -> dict | None:
    """Check a runtime_env dict and return a normalized copy; ValueError/TypeError names the culprit."""
    if env is None:
        return None
    if not isinstance(env, dict):
        raise TypeError(f"runtime_env must be a dict, got {type(env).__name__}")
    known = {
        "working_dir",
        "py_modules",
        "pip",
        "uv",
        "conda",
        "env_vars",
        "excludes",
        "container",
        "image_uri",
        "config",
        "java_jars",
        "nsight",
        "mpi",
        "py_executable",
        "_ray_release",
    }
    unknown = sorted(set(env) - known)
    if unknown:
        raise ValueError(f"runtime_env has unknown field(s) {unknown}; known fields: {sorted(known)}")
    out = dict(env)
    if "working_dir" in env and not isinstance(env["working_dir"], str):
        raise TypeError(f"runtime_env['working_dir'] must be a str, got {type(env['working_dir']).__name__}")
    for key in _LIST_OF_STR:
        if key in env:
            value = env[key]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise TypeError(f"runtime_env[{key!r}] must be a list of str, got {value!r}")
            out[key] = list(value)
    if "env_vars" in env:
        ev = env["env_vars"]
        if not isinstance(ev, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in ev.items()
        ):
            raise TypeError(f"runtime_env['env_vars'] must be a dict of str to str, got {ev!r}")
    for key in ("pip", "uv"):
        if key in env:
            value = env[key]
            ok = (
                isinstance(value, str)
                or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value))
                or (isinstance(value, dict) and "packages" in value)
            )
            if not ok:
                raise TypeError(
                    f"runtime_env[{key!r}] must be a str, a list of str or a dict with 'packages'"
                )
    if "conda" in env and not isinstance(env["conda"], (str, dict)):
        raise TypeError("runtime_env['conda'] must be a str or a dict")
    present = [k for k in ("pip", "uv", "conda") if k in env]
    if len(present) > 1:
        raise ValueError(f"runtime_env may specify only one of pip, uv and conda; got {present}")
    if "config" in env:
        _check_config(env["config"])
    for key, allowed in (("pip", _PIP_KEYS), ("uv", _UV_KEYS)):
        value = env.get(key)
        if isinstance(value, dict):
            extra = sorted(set(value) - allowed)
            if extra:
                raise ValueError(
                    f"runtime_env[{key!r}] has unknown field(s) {extra}; known: {sorted(allowed)}"
                )
    return out


_PIP_KEYS = {"packages", "pip_check", "pip_version", "pip_install_options"}
_UV_KEYS = {"packages", "uv_check", "uv_version", "uv_pip_install_options"}


def _check_config(config: Any) -> None:
    if not isinstance(config, dict):
        raise TypeError("runtime_env['config'] must be a dict")
    extra = sorted(set(config) - {"setup_timeout_seconds", "eager_install"})
    if extra:
        raise ValueError(
            f"runtime_env['config'] has unknown field(s) {extra}; known: eager_install, setup_timeout_seconds"
        )
    timeout = config.get("setup_timeout_seconds", 600)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or (timeout <= 0 and timeout != -1):
        raise TypeError(
            f"runtime_env['config']['setup_timeout_seconds'] must be a positive int or -1, got {timeout!r}"
        )
    if not isinstance(config.get("eager_install", True), bool):
        raise TypeError("runtime_env['config']['eager_install'] must be a bool")
