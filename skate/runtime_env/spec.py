"""Resolved runtime environments: merging, the content hash, and what a node must install.

A *resolved* env is what travels in `TaskSpec.runtime_env`: local paths already replaced by
the URIs of uploaded packages (`gcs://_skate_pkg_<hash>.zip`), `pip`/`uv` in their dict form,
`excludes` applied and dropped. Its hash names the worker pool that serves it: a worker only
ever runs tasks of the env it was started for.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

PKG_SCHEME = "gcs://"
PKG_PREFIX = "_skate_pkg_"
# Fields that do not change what a worker runs in: they are left out of the hash.
_NOT_HASHED = ("config", "excludes")
# Package managers that replace one another when a child env names one of them.
_INSTALLERS = ("pip", "uv", "conda")


def merge(parent: dict | None, child: dict | None) -> dict | None:
    """The env of a call: its own fields override the parent's (job or calling task) one by one,
    except `env_vars`, which are merged (the call's own win); naming one of pip/uv/conda drops
    the parent's others."""
    if not child:
        return parent or None
    if not parent:
        return child
    out = dict(parent)
    for key, value in child.items():
        if key == "env_vars":
            out["env_vars"] = {**(parent.get("env_vars") or {}), **value}
        else:
            if key in _INSTALLERS:
                for other in _INSTALLERS:
                    out.pop(other, None)
            out[key] = value
    return out


def canonical(env: dict | None) -> dict:
    """The env without the fields that do not matter to a worker, and without empty ones."""
    if not env:
        return {}
    return {k: v for k, v in env.items() if k not in _NOT_HASHED and v not in (None, {}, [], "")}


def env_hash(env: dict | None) -> str:
    """A short content hash of the env ("" for an empty one: the default worker pool)."""
    body = canonical(env)
    if not body:
        return ""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def package_uri(digest: str, suffix: str = ".zip") -> str:
    """The URI of an uploaded package; `suffix` is ".zip" or "/<name>.whl" (a wheel keeps its
    file name, which pip needs)."""
    return f"{PKG_SCHEME}{PKG_PREFIX}{digest}{suffix}"


def is_uri(value: str) -> bool:
    return "://" in value


def package_key(uri: str) -> str:
    """The GCS KV key prefix of an uploaded package (its manifest; chunks add ':<n>')."""
    if not uri.startswith(PKG_SCHEME + PKG_PREFIX):
        raise ValueError(f"{uri!r} is not a package uploaded by Skate (expected gcs://{PKG_PREFIX}...)")
    return "pkg:" + uri[len(PKG_SCHEME) :]


def pip_spec(value: Any, key: str = "pip") -> dict:
    """The dict form of a pip/uv field whose requirements file (if any) was already read."""
    if isinstance(value, (list, tuple)):
        return {"packages": list(value), f"{key}_check": False}
    if isinstance(value, dict):
        out = dict(value)
        out["packages"] = list(out["packages"])
        out.setdefault(f"{key}_check", False)
        return out
    raise TypeError(f"runtime_env[{key!r}] must be a list or a dict here, got {value!r}")


def resource_keys(env: dict | None) -> list[str]:
    """What a node must have ready for this env, each cached on its own: packages by URI, and
    one site directory per distinct pip/uv spec."""
    if not env:
        return []
    keys: list[str] = []
    if env.get("working_dir"):
        keys.append("pkg:" + env["working_dir"])
    for uri in env.get("py_modules") or ():
        keys.append("pkg:" + uri)
    for tool in ("pip", "uv"):
        if env.get(tool):
            text = json.dumps(env[tool], sort_keys=True, separators=(",", ":"))
            keys.append(f"{tool}:" + hashlib.sha256(text.encode()).hexdigest()[:24])
    return keys
