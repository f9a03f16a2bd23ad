"""Starting and stopping the processes of a private local cluster: a GCS and a raylet.

Everything lives in one session directory (logs, sockets, the 0600 cluster token). The
cluster's processes watch a pipe from the driver, so they stop even if the driver is
killed; `shutdown` stops them, and removes the session directory and shared memory.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from skate._config import STARTUP_TIMEOUT
from skate.core_worker.plasma import arena_path

logger = logging.getLogger(__name__)


def default_temp_root() -> str:
    """Where session directories go: $SKATE_TEMP_DIR, else <system temp>/skate."""
    return os.environ.get("SKATE_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "skate")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalNode:
    """A head node on this machine, owned by the current process."""

    def __init__(
        self,
        *,
        resources: dict[str, float],
        object_store_memory: int,
        logging_level: int = logging.INFO,
        temp_dir: str | None = None,
        spill_dir: str | None = None,
        spill_limit: int | None = None,
    ):
        root = temp_dir or default_temp_root()
        os.makedirs(root, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
        self.session_dir = tempfile.mkdtemp(prefix=f"session_{stamp}_{os.getpid()}_", dir=root)
        os.makedirs(os.path.join(self.session_dir, "logs"))
        os.makedirs(os.path.join(self.session_dir, "sockets"))
        self.token = secrets.token_hex(32).encode()
        token_path = os.path.join(self.session_dir, "token")
        fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.token)
        self.gcs_address = f"tcp://127.0.0.1:{_free_port()}"
        self.resources = resources
        self.object_store_memory = object_store_memory
        self.processes: list[subprocess.Popen] = []
        self.raylet_address = ""
        self.node_id = ""
        self.arena_path = ""
        self.spill_dir = spill_dir
        self.spill_limit = spill_limit
        self._watch_r, self._watch_w = os.pipe()
        try:
            self._start(logging_level)
        except BaseException:
            self.shutdown()
            raise

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        err = open(os.path.join(self.session_dir, "logs", f"{name}.err"), "ab")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", *args, "--watch-fd", str(self._watch_r)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                pass_fds=(self._watch_r,),
                start_new_session=True,  # Ctrl-C at the driver's terminal is the driver's to handle
            )
        finally:
            err.close()
        self.processes.append(proc)
        return proc

    def _start(self, logging_level: int) -> None:
        level = str(logging_level)
        gcs = self._spawn(
            "gcs",
            [
                "skate.gcs.server",
                "--session-dir",
                self.session_dir,
                "--address",
                self.gcs_address,
                "--logging-level",
                level,
            ],
        )
        raylet = self._spawn(
            "raylet",
            [
                "skate.raylet.server",
                "--session-dir",
                self.session_dir,
                "--gcs-address",
                self.gcs_address,
                "--resources",
                json.dumps(self.resources),
                "--object-store-memory",
                str(self.object_store_memory),
                "--logging-level",
                level,
                "--spill-dir",
                self.spill_dir or "",
                "--spill-limit",
                str(self.spill_limit or ""),
            ],
        )
        lines = self._read_ready({"gcs": gcs, "raylet": raylet})
        _, self.raylet_address, self.node_id = lines["raylet"].split()
        with open(os.path.join(self.session_dir, "cluster.json"), "w") as f:
            json.dump({"gcs_address": self.gcs_address, "driver_pid": os.getpid()}, f)
        self.arena_path = ""  # reported by the raylet at registration

    def _read_ready(self, procs: dict[str, subprocess.Popen]) -> dict[str, str]:
        sel = selectors.DefaultSelector()
        bufs = {}
        for name, proc in procs.items():
            sel.register(proc.stdout, selectors.EVENT_READ, name)
            bufs[name] = b""
        ready: dict[str, str] = {}
        deadline = time.monotonic() + STARTUP_TIMEOUT
        try:
            while len(ready) < len(procs):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"skate: {sorted(set(procs) - set(ready))} did not start in time")
                for key, _ in sel.select(min(remaining, 0.5)):
                    name = key.data
                    chunk = os.read(key.fileobj.fileno(), 4096)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        raise RuntimeError(
                            f"skate: the {name} process exited during startup; see "
                            f"{os.path.join(self.session_dir, 'logs', name + '.err')}:\n{self._tail(name)}"
                        )
                    bufs[name] += chunk
                    if b"\n" in bufs[name]:
                        line = bufs[name].split(b"\n", 1)[0].decode()
                        if not line.startswith("READY"):
                            raise RuntimeError(f"skate: unexpected output from {name}: {line!r}")
                        ready[name] = line
                        sel.unregister(key.fileobj)
        finally:
            sel.close()
        for proc in procs.values():
            proc.stdout.close()
        return ready

    def _tail(self, name: str) -> str:
        try:
            with open(os.path.join(self.session_dir, "logs", name + ".err"), errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def shutdown(self) -> None:
        """Stop the raylet (and through it every worker), then the GCS; remove all files."""
        for proc in reversed(self.processes):  # raylet first
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.processes.clear()
        for fd in (self._watch_r, self._watch_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._watch_r = self._watch_w = -1
        if self.node_id:
            try:
                os.unlink(arena_path(self.session_dir, self.node_id))
            except OSError:
                pass
        shutil.rmtree(self.session_dir, ignore_errors=True)
