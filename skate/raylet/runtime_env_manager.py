"""The raylet's runtime-env manager: carries out `RuntimeEnvCache`'s decisions.

`setup(env)` makes everything an env needs ready on this node and returns its *layout* (what
a worker applies before running anything: env vars, sys.path entries, the working directory).
Packages are fetched from the GCS's KV and unpacked; pip/uv specs are installed with
`pip install --target` into one site directory per distinct spec (workers put it on
`sys.path` in front of the base interpreter's, so Skate itself stays importable and the
driver's environment is never touched). Installers run as subprocesses and unpacking on a
thread: the raylet's loop never blocks. A failure raises `RuntimeEnvSetupError` carrying the
installer's last lines; the full log stays in the session's logs directory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import zipfile
from collections.abc import Callable
from typing import Any

from skate.exceptions import RuntimeEnvSetupError
from skate.raylet.runtime_env_cache import HIT, INSTALL, RuntimeEnvCache
from skate.runtime_env.spec import package_key, resource_keys

logger = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = int(os.environ.get("SKATE_RUNTIME_ENV_CACHE_BYTES", 10 * 1024**3))
DEFAULT_SETUP_TIMEOUT_S = 600
LAST_LINES = 15


class RuntimeEnvManager:
    def __init__(
        self,
        root: str,
        logs_dir: str,
        node_id: str,
        fetch: Callable[[bytes], Any],
        budget_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        self.root = root
        self.logs_dir = logs_dir
        self.node_id = node_id
        self._fetch = fetch  # async: a KV key -> its value from the GCS (None if absent)
        self.cache = RuntimeEnvCache(budget_bytes)
        self._installs: dict[str, asyncio.Future] = {}

    # -- envs ---------------------------------------------------------------------------
    async def setup(self, env: dict) -> dict:
        """Make the env ready here and hold its resources (until `release`): its layout."""
        _check_supported(env, self.node_id)
        keys = resource_keys(env)
        timeout = (env.get("config") or {}).get("setup_timeout_seconds", DEFAULT_SETUP_TIMEOUT_S)
        work = asyncio.gather(*(self._ensure(k, env) for k in keys), return_exceptions=True)
        try:
            results = await asyncio.wait_for(work, None if timeout == -1 else timeout)
        except asyncio.TimeoutError:
            raise RuntimeEnvSetupError(
                f"setting up the runtime env timed out after {timeout} s "
                "(runtime_env['config']['setup_timeout_seconds'])"
            ) from None
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            for key, result in zip(keys, results):
                if not isinstance(result, BaseException):
                    self._delete(self.cache.release(key))
            err = errors[0]
            if isinstance(err, RuntimeEnvSetupError):
                raise err
            raise RuntimeEnvSetupError(f"setting up the runtime env failed: {err!r}") from err
        paths = {key: str(result) for key, result in zip(keys, results)}
        layout: dict = {"env": env, "env_vars": dict(env.get("env_vars") or {}), "cwd": None, "paths": []}
        if env.get("working_dir"):
            layout["cwd"] = paths["pkg:" + env["working_dir"]]
            layout["paths"].append(layout["cwd"])
        for uri in env.get("py_modules") or ():
            layout["paths"].append(paths["pkg:" + uri])
        for tool in ("pip", "uv"):
            for key in keys:
                if key.startswith(tool + ":"):
                    layout["paths"].append(paths[key])
        # The top-level modules of installed packages: a worker whose template already
        # imported one of them starts from a fresh interpreter (see raylet.zygote).
        installed = [paths[k] for k in keys if k.startswith(("pip:", "uv:")) or k.endswith(".whl")]
        layout["modules"] = sorted({m for p in installed for m in _top_level_modules(p)})
        # Scripts the packages installed (pip --target puts them in bin/) go on PATH.
        layout["bin"] = [
            os.path.join(p, "bin") for p in layout["paths"] if os.path.isdir(os.path.join(p, "bin"))
        ]
        return layout

    def release(self, env: dict) -> None:
        """The env's last worker is gone: drop its holds (unused resources may be collected)."""
        for key in resource_keys(env):
            self._delete(self.cache.release(key))

    # -- resources ----------------------------------------------------------------------
    def path_of(self, key: str) -> str:
        kind, _, rest = key.partition(":")
        name = rest.replace("gcs://", "").replace("/", "_")
        return os.path.join(self.root, kind, name)

    async def _ensure(self, key: str, env: dict) -> str:
        decision = self.cache.acquire(key)
        path = self.path_of(key)
        if decision == HIT:
            return path
        if decision != INSTALL:
            await asyncio.shield(self._installs[key])
            return path
        fut = asyncio.get_running_loop().create_future()
        self._installs[key] = fut
        try:
            size = await self._install(key, env, path)
        except BaseException as exc:
            self.cache.failed(key)
            error = (
                exc
                if isinstance(exc, RuntimeEnvSetupError)
                else RuntimeEnvSetupError(f"installing {key} was interrupted: {exc!r}")
            )
            fut.set_exception(error)
            fut.exception()  # waiters re-raise it; nobody else must
            raise error from None
        finally:
            self._installs.pop(key, None)
        self._delete(self.cache.installed(key, size))
        fut.set_result(None)
        return path

    async def _install(self, key: str, env: dict, path: str) -> int:
        if os.path.isdir(path):  # left by an earlier holder that was collected meanwhile? start afresh
            await asyncio.to_thread(shutil.rmtree, path, True)
        tmp = path + ".tmp"
        await asyncio.to_thread(shutil.rmtree, tmp, True)
        os.makedirs(tmp, exist_ok=True)
        kind, _, rest = key.partition(":")
        logger.info("runtime env: installing %s", key)
        if kind == "pkg":
            await self._install_package(rest, tmp)
        else:
            await self._install_packages(kind, env[kind], tmp, key)
        os.rename(tmp, path)
        return await asyncio.to_thread(_tree_size, path)

    async def _install_package(self, uri: str, dest: str) -> None:
        key = package_key(uri).encode()
        manifest = await self._fetch(key)
        if manifest is None:
            raise RuntimeEnvSetupError(
                f"the package {uri} is not in the GCS (was it uploaded by this cluster?)"
            )
        info = json.loads(manifest)
        chunks = await asyncio.gather(*(self._fetch(key + b":%d" % i) for i in range(info["chunks"])))
        if any(c is None for c in chunks):
            raise RuntimeEnvSetupError(f"the package {uri} is incomplete in the GCS")
        data = b"".join(chunks)
        if uri.endswith(".whl"):
            wheel = os.path.join(dest + ".whl", uri.rsplit("/", 1)[1])
            os.makedirs(os.path.dirname(wheel), exist_ok=True)
            with open(wheel, "wb") as f:
                f.write(data)
            try:
                await self._install_packages("pip", {"packages": [wheel]}, dest, "pkg:" + uri)
            finally:
                await asyncio.to_thread(shutil.rmtree, os.path.dirname(wheel), True)
            return
        await asyncio.to_thread(_unzip, data, dest, uri)

    async def _install_packages(self, tool: str, spec: dict, target: str, key: str) -> None:
        """pip (or uv) install into `target`, in a subprocess; its output goes to a log file."""
        packages = list(spec.get("packages") or ())
        if not packages:
            return
        if tool == "uv":
            uv = shutil.which("uv")
            if uv is None:
                raise RuntimeEnvSetupError(
                    "runtime_env['uv'] needs the `uv` tool, which is not installed on node "
                    f"{self.node_id[:12]} (not on PATH); install it there or use runtime_env['pip']"
                )
            cmd = [uv, "pip", "install", "--python", sys.executable, "--target", target]
            cmd += list(spec.get("uv_pip_install_options") or ())
        else:
            cmd = [sys.executable, "-m", "pip", "install", "--target", target, "--disable-pip-version-check"]
            cmd += ["--no-input", "--no-warn-script-location"]
            cmd += list(spec.get("pip_install_options") or ())
        cmd += packages
        log_path = os.path.join(
            self.logs_dir, f"runtime_env_setup-{key.replace('/', '_').replace(':', '_')}.log"
        )
        with open(log_path, "ab") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            )
            try:
                code = await proc.wait()
            except BaseException:
                proc.kill()
                await proc.wait()
                raise
        if code != 0:
            last = _last_lines(log_path, LAST_LINES)
            raise RuntimeEnvSetupError(
                f"{tool} install of {packages} failed on node {self.node_id[:12]} (exit code {code}); "
                f"the full log is {log_path}. Its last lines:\n{last}"
            )

    def _delete(self, keys: list[str]) -> None:
        for key in keys:
            path = self.path_of(key)
            logger.info("runtime env: collecting %s", key)
            asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, path, True)


def _check_supported(env: dict, node_id: str) -> None:
    """Fields that need a tool Skate does not drive: a clear error naming what is missing."""
    if env.get("conda"):
        tool = shutil.which("conda")
        missing = (
            "the `conda` tool is not installed on node"
            if tool is None
            else "Skate cannot drive conda on node"
        )
        raise RuntimeEnvSetupError(
            f"runtime_env['conda'] failed: {missing} {node_id[:12]}; use 'pip' instead"
        )
    for field in ("container", "image_uri"):
        if env.get(field):
            tool = shutil.which("podman")
            missing = (
                "`podman` is not installed on node"
                if tool is None
                else "Skate does not run workers in containers on node"
            )
            raise RuntimeEnvSetupError(f"runtime_env[{field!r}] failed: {missing} {node_id[:12]}")


def _unzip(data: bytes, dest: str, uri: str) -> None:
    import io

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                name = os.path.normpath(info.filename)
                if name.startswith("..") or os.path.isabs(name):
                    raise RuntimeEnvSetupError(f"the package {uri} has an unsafe path {info.filename!r}")
                zf.extract(info, dest)
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    os.chmod(os.path.join(dest, name), mode)
    except zipfile.BadZipFile as exc:
        raise RuntimeEnvSetupError(f"the package {uri} is not a valid zip: {exc}") from None


def _top_level_modules(path: str) -> list[str]:
    """The importable top-level names in a site directory (packages, modules, extensions)."""
    names = []
    try:
        entries = os.listdir(path)
    except OSError:
        return []
    for entry in entries:
        full = os.path.join(path, entry)
        if entry.endswith((".dist-info", ".egg-info", ".pth")) or entry in ("bin", "__pycache__"):
            continue
        if os.path.isdir(full):
            names.append(entry)
        elif entry.endswith(".py"):
            names.append(entry[:-3])
        elif entry.endswith(".so"):
            names.append(entry.split(".", 1)[0])
    return names


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _last_lines(path: str, count: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            tail = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    lines = [line for line in tail.splitlines() if line.strip()]
    return "\n".join(lines[-count:])
