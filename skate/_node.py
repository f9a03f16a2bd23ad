"""Starting and stopping the processes of one node: a GCS (head only) and a raylet.

Everything of a node lives in one session directory (logs, sockets, the 0600 cluster
token, cluster.json), 0700 under a per-user root (`<tmp>/skate-<uid>`, 0700); both are
checked (ours, closed to other users, not a link) every time they are used. Owned nodes
(a private cluster of `init()`, or `cluster_utils`)
watch a pipe from the process that started them, so they stop even if it is killed;
detached nodes (`skate start`) record their pids for `skate stop`. `shutdown` stops the
processes and removes the session directory and shared memory.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from skate._config import STARTUP_TIMEOUT
from skate._secure_files import check_private, open_private_append, private_dir, write_private
from skate._system_config import SystemConfig
from skate.core_worker.plasma import arena_path

logger = logging.getLogger(__name__)

DEFAULT_DASHBOARD_PORT = 8265


def default_temp_root() -> str:
    """Where session directories go: $SKATE_TEMP_DIR, else <system temp>/skate-<uid> (one
    root per user, so no user's sessions sit in a directory another user can write)."""
    return os.environ.get("SKATE_TEMP_DIR") or os.path.join(tempfile.gettempdir(), f"skate-{os.getuid()}")


def prepare_temp_root(root: str | None = None) -> str:
    """Create (0700) or check the session root: ours and closed to other users. The default
    root is tightened to 0700 if it was left open; a root named by the user must be ours and
    not writable by others (it is refused, with the fix in the message, rather than changed)."""
    root = root or default_temp_root()
    default = root == os.path.join(tempfile.gettempdir(), f"skate-{os.getuid()}")
    return private_dir(root, fix_mode=default, allow_group_read=not default)


def owned_sessions(root: str | None = None) -> list[str]:
    """Session directories under the root that this user owns and nobody else can enter;
    anything else found there (planted by another user, a link, left open) is skipped."""
    root = root or default_temp_root()
    try:
        check_private(root, os.lstat(root), allow_group_read=True)
    except OSError:
        return []
    found = []
    for name in sorted(os.listdir(root)):
        if not name.startswith("session_"):
            continue
        path = os.path.join(root, name)
        try:
            check_private(path, os.lstat(path))
        except OSError as exc:
            logger.warning("ignoring session directory %s: %s", path, exc)
            continue
        found.append(path)
    return found


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalNode:
    """One node on this machine: the head (GCS and raylet) or a worker node joining a GCS."""

    def __init__(
        self,
        *,
        resources: dict[str, float],
        object_store_memory: int,
        logging_level: int = logging.INFO,
        temp_dir: str | None = None,
        spill_dir: str | None = None,
        spill_limit: int | None = None,
        head: bool = True,
        gcs_address: str | None = None,
        token: bytes | None = None,
        node_ip: str = "127.0.0.1",
        listen_ip: str | None = None,
        gcs_port: int = 0,
        shared: bool = False,
        detached: bool = False,
        system_config: SystemConfig | None = None,
        labels: dict[str, str] | None = None,
        include_dashboard: bool = False,
        dashboard_host: str = "127.0.0.1",
        dashboard_port: int | None = None,
        client_server_port: int | None = None,
        storage: str = "memory",
        redis_password: str | None = None,
        metrics_export_port: int = 0,
    ):
        # Where the GCS keeps its tables (skate.gcs.storage): memory for private clusters.
        self.storage = storage
        self._redis_password = redis_password
        self._gcs_args: list[str] = []
        self.labels = dict(labels or {})  # custom labels (checked by the caller, see skate._labels)
        root = prepare_temp_root(temp_dir)
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
        self.session_dir = tempfile.mkdtemp(prefix=f"session_{stamp}_{os.getpid()}_", dir=root)  # 0700
        os.mkdir(os.path.join(self.session_dir, "logs"), 0o700)
        os.mkdir(os.path.join(self.session_dir, "sockets"), 0o700)
        self.head = head
        self.token = token or secrets.token_hex(32).encode()
        write_private(os.path.join(self.session_dir, "token"), self.token)
        if head:
            self.gcs_address = f"tcp://{node_ip}:{gcs_port or _free_port(node_ip)}"
        elif gcs_address:
            self.gcs_address = gcs_address if "://" in gcs_address else f"tcp://{gcs_address}"
        else:
            raise ValueError("a worker node needs the GCS address of its head")
        self.node_ip = node_ip
        self.listen_ip = listen_ip  # where services bind, when not the advertised node_ip
        # The raylet's Prometheus endpoint (raylet.metrics_server): 0 any free port, -1 none.
        self.metrics_export_port = metrics_export_port
        self.resources = resources
        self.object_store_memory = object_store_memory
        self.shared = shared
        self.detached = detached
        self.processes: list[subprocess.Popen] = []
        self.client_server_port = client_server_port if head else None
        self.client_server_address = ""  # tcp://host:port of the client server, when it runs
        self.raylet_address = ""
        self.node_id = ""
        # The dashboard (head only): port None means 8265 if free, else any free port.
        self.include_dashboard = include_dashboard and head
        self.dashboard_host = dashboard_host
        self.dashboard_port = dashboard_port
        self.dashboard_url = ""
        # Settings from Ray's `_system_config` (see skate._system_config); explicit arguments win.
        self.system_config = system_config or SystemConfig()
        self.spill_dir = spill_dir or self.system_config.spill_dir
        self.spill_limit = spill_limit if spill_limit is not None else self.system_config.spill_limit
        self._watch_r, self._watch_w = (-1, -1) if detached else os.pipe()
        try:
            self._start(logging_level)
        except BaseException:
            self.shutdown()
            raise

    @property
    def address(self) -> str:
        """The cluster's address, host:port of the GCS."""
        return self.gcs_address.replace("tcp://", "")

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        err = os.fdopen(open_private_append(os.path.join(self.session_dir, "logs", f"{name}.err")), "ab")
        extra = [] if self.detached else ["--watch-fd", str(self._watch_r)]
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", *args, *extra],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                pass_fds=() if self.detached else (self._watch_r,),
                start_new_session=True,  # Ctrl-C at the driver's terminal is the driver's to handle
                env={**(env if env is not None else os.environ), **dict(self.system_config.env)}
                if self.system_config.env
                else env,
            )
        finally:
            err.close()
        self.processes.append(proc)
        return proc

    def _start(self, logging_level: int) -> None:
        level = str(logging_level)
        procs = {}
        if self.head:
            self._gcs_args = [
                "skate.gcs.server",
                "--session-dir",
                self.session_dir,
                "--address",
                f"tcp://{self.listen_ip}:{self.gcs_address.rpartition(':')[2]}"
                if self.listen_ip
                else self.gcs_address,
                "--logging-level",
                level,
                *self._flag("--node-timeout-s", self.system_config.node_timeout_s),
                "--storage",
                self.storage,
            ]
            procs["gcs"] = self._spawn("gcs", self._gcs_args, self._gcs_env())
        procs["raylet"] = self._spawn(
            "raylet",
            [
                "skate.raylet.server",
                "--session-dir",
                self.session_dir,
                "--gcs-address",
                self.gcs_address,
                "--resources",
                json.dumps(self.resources),
                "--labels",
                json.dumps(self.labels),
                "--object-store-memory",
                str(self.object_store_memory),
                "--logging-level",
                level,
                "--spill-dir",
                self.spill_dir or "",
                "--spill-limit",
                str(self.spill_limit or ""),
                "--node-ip",
                self.node_ip,
                "--listen-ip",
                self.listen_ip or "",
                "--metrics-export-port",
                str(self.metrics_export_port),
                *self._flag("--heartbeat-s", self.system_config.heartbeat_s),
                *(["--head"] if self.head else []),
            ],
            self._raylet_env(),
        )
        if self.include_dashboard:
            procs["dashboard"] = self._spawn(
                "dashboard",
                [
                    "skate.dashboard.main",
                    "--session-dir",
                    self.session_dir,
                    "--gcs-address",
                    self.gcs_address,
                    "--host",
                    self.dashboard_host,
                    "--port",
                    str(self.dashboard_port or DEFAULT_DASHBOARD_PORT),
                    *([] if self.dashboard_port else ["--port-fallback"]),
                    "--logging-level",
                    level,
                ],
            )
        if self.client_server_port:  # remote drivers' door (skate.client.server)
            procs["client_server"] = self._spawn(
                "client_server",
                [
                    "skate.client.server",
                    "--session-dir",
                    self.session_dir,
                    "--gcs-address",
                    self.gcs_address,
                    "--address",
                    f"tcp://{self.listen_ip or self.node_ip}:{self.client_server_port}",
                    "--logging-level",
                    level,
                ],
            )
        lines = self._read_ready(procs)
        _, self.raylet_address, self.node_id = lines["raylet"].split()
        if "dashboard" in lines:
            self.dashboard_url = lines["dashboard"].split()[1]
        if "client_server" in lines:
            self.client_server_address = lines["client_server"].split()[1]
        info = {
            "gcs_address": self.gcs_address,
            "driver_pid": os.getpid(),
            "head": self.head,
            "shared": self.shared,
            "detached": self.detached,
            "node_id": self.node_id,
            "pids": [p.pid for p in self.processes],
            "dashboard_url": self.dashboard_url,
            "client_server_address": self.client_server_address,
        }
        write_private(os.path.join(self.session_dir, "cluster.json"), json.dumps(info).encode())

    @staticmethod
    def _flag(name: str, value: float | None) -> list[str]:
        return [] if value is None else [name, repr(float(value))]

    def _read_ready(self, procs: dict[str, subprocess.Popen]) -> dict[str, str]:
        sel = selectors.DefaultSelector()
        bufs = {}
        pipes = {}
        for name, proc in procs.items():
            if proc.stdout is None:
                raise RuntimeError(f"skate: the {name} process was started without a stdout pipe")
            pipes[name] = proc.stdout
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
                    chunk = os.read(key.fd, 4096)
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
        for pipe in pipes.values():
            pipe.close()
        return ready

    def _tail(self, name: str) -> str:
        try:
            with open(os.path.join(self.session_dir, "logs", name + ".err"), errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def _gcs_env(self) -> dict[str, str] | None:
        """The GCS's environment: the Redis password travels here, never in argv (ps shows argv)."""
        if not self._redis_password:
            return None
        return {**os.environ, "SKATE_GCS_REDIS_PASSWORD": self._redis_password}

    def _raylet_env(self) -> dict[str, str] | None:
        """`gcs_rpc_server_reconnect_timeout_s` reaches the raylet and, through it, its workers."""
        timeout = self.system_config.gcs_reconnect_timeout_s
        return None if timeout is None else {**os.environ, "SKATE_GCS_RECONNECT_TIMEOUT_S": repr(timeout)}

    def gcs_process(self) -> subprocess.Popen | None:
        return next((p for p in self.processes if "skate.gcs.server" in _cmdline(p)), None)

    def kill_gcs(self) -> None:
        """SIGKILL this head's GCS, as a crash would (for tests and drills)."""
        proc = self.gcs_process()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def restart_gcs(self) -> None:
        """Start the GCS again at the same address, with the same storage (as a supervisor
        would): it reloads its tables (skate.gcs.recovery). RuntimeError, with the GCS's own
        message, if it cannot (e.g. its storage was `memory`)."""
        if not self.head:
            raise RuntimeError("only a head node runs a GCS")
        old = self.gcs_process()
        if old is not None:
            if old.poll() is None:
                raise RuntimeError(f"the GCS (pid {old.pid}) is still running")
            self.processes.remove(old)
        proc = self._spawn("gcs", self._gcs_args, self._gcs_env())
        self.processes.remove(proc)
        self.processes.insert(0, proc)  # stopped last, as at first start
        self._read_ready({"gcs": proc})

    def kill_raylet(self) -> None:
        """Kill this node's raylet abruptly, as a crashed machine would be (for tests)."""
        for proc in self.processes:
            if "skate.raylet.server" in _cmdline(proc) and proc.poll() is None:
                proc.kill()

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
            if fd >= 0:
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


def stop_detached(session_dir: str, force: bool = False, timeout: float = 10.0) -> list[int]:
    """Stop the processes a `skate start` recorded in `session_dir`; remove its files."""
    import psutil

    try:
        with open(os.path.join(session_dir, "cluster.json")) as f:
            info = json.load(f)
    except (OSError, ValueError):
        shutil.rmtree(session_dir, ignore_errors=True)
        return []
    procs = []
    for pid in info.get("pids", []):
        try:
            proc = psutil.Process(pid)
            if session_dir in " ".join(proc.cmdline()):
                procs.append(proc)
        except psutil.Error:
            continue
    for proc in reversed(procs):  # raylet before GCS
        try:
            proc.send_signal(signal.SIGKILL if force else signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    if info.get("node_id"):
        try:
            os.unlink(arena_path(session_dir, info["node_id"]))
        except OSError:
            pass
    shutil.rmtree(session_dir, ignore_errors=True)
    return [p.pid for p in procs]


def _cmdline(proc: subprocess.Popen) -> str:
    """The command line a process was started with, as one string."""
    args = proc.args
    return " ".join(str(arg) for arg in args) if isinstance(args, (list, tuple)) else str(args)
