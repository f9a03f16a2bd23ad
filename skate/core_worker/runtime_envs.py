"""Resolving a call's runtime env where it is submitted: local paths become uploaded packages.

The effective env of a call is its own env merged over its parent's (`spec.merge`): the job's
env for the driver's calls, the calling task's own env inside a worker (a worker runs one env
only, so that is the env it was started with). Local `working_dir`/`py_modules` are packed
and uploaded to the GCS's KV in chunks (`runtime_env.upload`), once per content hash; a
requirements file is read here. Results are cached per distinct `runtime_env` value for the
life of the process, so repeated `.remote()` calls cost a dict lookup.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from skate.runtime_env import upload
from skate.runtime_env.spec import env_hash, merge, package_key, pip_spec


class RuntimeEnvResolver:
    """Per process: the parent env, and the resolved form of each env used here."""

    def __init__(self, core: Any, parent: dict | None = None):
        self.core = core
        self.parent: dict | None = parent or None
        self.parent_hash = env_hash(self.parent)
        self._cache: dict[str, tuple[dict | None, str]] = {}
        self._uploaded: set[str] = set()
        self._lock = threading.Lock()

    def set_job_env(self, raw: dict | None) -> None:
        """The driver's job-level env (`init(runtime_env=...)`): the parent of all its calls."""
        self.parent = self.prepare(raw) if raw else None
        self.parent_hash = env_hash(self.parent)
        self._cache.clear()

    def resolve(self, raw: dict | None) -> tuple[dict | None, str]:
        """A call's effective env and its hash ("" for none: the default worker pool)."""
        if not raw:
            return self.parent, self.parent_hash
        key = json.dumps(raw, sort_keys=True, default=str)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                env = merge(self.parent, self.prepare(raw))
                hit = self._cache[key] = (env, env_hash(env))
        return hit

    # -- packaging ----------------------------------------------------------------------
    def prepare(self, raw: dict) -> dict:
        """The resolved form of one env as given (no merging): ValueError names a bad path."""
        out: dict = {}
        for key, value in upload.localize(raw, self._upload).items():
            if key in ("pip", "uv"):
                out[key] = pip_spec(_read_requirements(value, key), key)
            elif key == "env_vars":
                if value:
                    out[key] = dict(value)
            else:
                out[key] = value
        return out

    def _upload(self, data: bytes, uri: str) -> str:
        """Put a package in the GCS (chunks first, the manifest last), once per content hash."""
        if uri in self._uploaded:
            return uri
        core = self.core
        if not core.request(core.gcs, "kv_exists", {"key": package_key(uri).encode()}):
            for key, value in upload.kv_entries(uri, data):
                core.request(core.gcs, "kv_put", {"key": key, "value": value})
        self._uploaded.add(uri)
        return uri


def _read_requirements(value: Any, key: str) -> Any:
    """A pip/uv field with its requirements file (a str, or `packages` as a str) read."""
    if isinstance(value, str):
        return _requirements_lines(value, key)
    if isinstance(value, dict) and isinstance(value.get("packages"), str):
        return dict(value, packages=_requirements_lines(value["packages"], key))
    return value


def _requirements_lines(path: str, key: str) -> list[str]:
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise ValueError(
            f"runtime_env[{key!r}] names the requirements file {path!r}, which does not exist"
        ) from None
    out = []
    for line in lines:
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out
