"""The raylet's runtime-env workers: which worker runs in which env, and setting envs up.

The decisions about the env cache (install once, reference counts, collection past the disk
budget) live in `raylet.runtime_env_cache`; the installing in `raylet.runtime_env_manager`.
This module keeps the raylet's side of it: each env's spec by hash, the layout of those set
up (encoded for the zygote), the workers waiting for a setup to finish, and how many workers
(started or starting) each env has, so that an env's last worker leaving releases it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from typing import Any

from skate.exceptions import RuntimeEnvSetupError
from skate.raylet.runtime_env_manager import RuntimeEnvManager
from skate.runtime_env.spec import env_hash

logger = logging.getLogger("skate.raylet")


class EnvWorkers:
    """A raylet's runtime envs and the workers started in them (I/O loop only)."""

    def __init__(self, raylet: Any):
        self.raylet = raylet
        self.manager = RuntimeEnvManager(
            os.path.join(raylet.session_dir, "runtime_resources", raylet.node_id[:12]),
            os.path.join(raylet.session_dir, "logs"),
            raylet.node_id,
            self._fetch_kv,
        )
        self.specs: dict[str, dict] = {}
        self.layouts: dict[str, str] = {}  # hash -> the layout, encoded for the zygote
        self.waiting: dict[str, list[str]] = {}  # hash -> workers to fork once it is ready
        self.users: dict[str, int] = {}
        self.worker_envs: dict[str, str] = {}  # worker id -> its env's hash (env workers only)
        self.setting_up: set[str] = set()

    def env_of(self, env: dict | None) -> str:
        """The hash of a lease request's runtime env (recording the env for its setup)."""
        if not env:
            return ""
        h = env_hash(env)
        if h:
            self.specs.setdefault(h, env)
        return h

    def start_worker(self, wid: str, env: str) -> None:
        """Fork worker `wid` in `env`, at once if the env is set up, else once it is."""
        self.worker_envs[wid] = env
        self.users[env] = self.users.get(env, 0) + 1
        layout = self.layouts.get(env)
        if layout is not None:
            self.raylet.zygote.send(f"fork {wid} {layout}")
            return
        self.waiting.setdefault(env, []).append(wid)
        if env not in self.setting_up:
            self.setting_up.add(env)
            asyncio.ensure_future(self._set_up(env))

    async def _fetch_kv(self, key: bytes) -> bytes | None:
        gcs = self.raylet.gcs
        if gcs is None or gcs.closed:
            raise RuntimeEnvSetupError("the GCS is unreachable, so the env's packages cannot be fetched")
        return await gcs.call("kv_get", {"key": key})

    async def _set_up(self, env: str) -> None:
        """Set an env up in the background, then fork the workers that wait for it; on failure,
        its lease requests fail with the error and the waiting workers are dropped."""
        raylet = self.raylet
        try:
            layout = await self.manager.setup(self.specs[env])
        except Exception as exc:
            self.setting_up.discard(env)
            error = exc if isinstance(exc, RuntimeEnvSetupError) else RuntimeEnvSetupError(repr(exc))
            logger.warning("runtime env %s failed to set up: %s", env, error)
            for wid in self.waiting.pop(env, []):
                self.worker_envs.pop(wid, None)
                self.users[env] -= 1
            if not self.users.get(env):
                self.users.pop(env, None)
            raylet.apply(raylet.scheduler.env_failed(env, str(error)))
            return
        self.setting_up.discard(env)
        encoded = base64.urlsafe_b64encode(json.dumps(layout).encode()).decode()
        self.layouts[env] = encoded
        for wid in self.waiting.pop(env, []):
            raylet.zygote.send(f"fork {wid} {encoded}")
        if not self.users.get(env):  # every waiting worker was dropped meanwhile
            self._unused(env)

    def stats(self) -> dict:
        """What the node's env cache holds (for `skate` tools and tests): installs started,
        each resource's state, holders and size, and the envs with live workers."""
        cache = self.manager.cache
        return {
            "installs": cache.installs,
            "used_bytes": cache.used_bytes(),
            "resources": {
                k: {"state": r.state, "refs": r.refs, "size": r.size, "path": self.manager.path_of(k)}
                for k, r in cache.resources.items()
            },
            "env_workers": dict(self.users),
        }

    def drop_unforked(self, worker_id: str) -> bool:
        """Forget a worker still waiting for its env's setup (nothing to kill); False if it is
        not such a worker."""
        env = self.worker_envs.get(worker_id)
        waiting = self.waiting.get(env) if env is not None else None
        if not waiting or worker_id not in waiting:
            return False
        self.worker_gone(worker_id)
        return True

    def worker_gone(self, worker_id: str) -> None:
        env = self.worker_envs.pop(worker_id, None)
        if env is None:
            return
        waiting = self.waiting.get(env)
        if waiting and worker_id in waiting:
            waiting.remove(worker_id)
        self.users[env] = self.users.get(env, 1) - 1
        if self.users[env] <= 0 and env in self.layouts:
            self._unused(env)

    def _unused(self, env: str) -> None:
        """An env's last worker is gone: release what it holds (it may be collected)."""
        self.users.pop(env, None)
        if self.layouts.pop(env, None) is not None:
            self.manager.release(self.specs[env])
