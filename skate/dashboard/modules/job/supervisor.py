"""The job supervisor: a detached actor per submitted job that runs its entrypoint.

The dashboard creates one per job (named `job_supervisor:<submission id>` in its own
namespace, so no user name can clash) and calls `run`, which:

1. starts the entrypoint through `_runner.py` in a new session (its own process group), with
   the cluster's address in SKATE_ADDRESS/RAY_ADDRESS (so `init()` inside joins this cluster),
   the job's runtime env (env_vars applied here, the whole env handed to the driver's `init()`
   through SKATE_JOB_RUNTIME_ENV) and its working_dir as the current directory;
2. sends stdout and stderr to `<session>/logs/job-driver-<submission id>.log`;
3. records each change of status (see skate._job_state) in the GCS's internal KV;
4. returns the final record once the entrypoint has ended.

`read_log` returns a piece of the log from an offset: the dashboard reads the log of a job
whose supervisor runs on another node through it. `stop` (a concurrent call: the actor runs
calls on threads) sends SIGTERM to the whole
process group, waits a grace period (SKATE_JOB_STOP_WAIT_TIME_S, or RAY_..., 3 s), then
SIGKILL. If this actor's process dies, the runner sees its pipe close and kills the group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from skate import _config, _job_state
from skate._job_state import JobStatus
from skate.experimental import internal_kv
from skate.protocol import ConnectionClosed

T = TypeVar("T")

KV_NAMESPACE = b"_skate_jobs"
SUPERVISOR_NAMESPACE = "_skate_internal_job_supervisors"
LOG_READ_BYTES = 1024 * 1024  # per read_log call: far below the frame limit
RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_runner.py")


def info_key(submission_id: str) -> bytes:
    return f"job_info:{submission_id}".encode()


def supervisor_name(submission_id: str) -> str:
    return f"job_supervisor:{submission_id}"


def now_ms() -> int:
    return int(time.time() * 1000)


def stop_wait_seconds() -> float:
    for var in ("SKATE_JOB_STOP_WAIT_TIME_S", "RAY_JOB_STOP_WAIT_TIME_S"):
        if os.environ.get(var):
            return float(os.environ[var])
    return 3.0


def _across_gcs_restarts(fn: Callable[[], T]) -> T:
    """fn(), made again while the GCS connection is lost (a restarting GCS comes back with its
    tables), until the reconnect timeout: a job must not fail because it ended while the GCS
    was restarting. KV reads and whole-record writes are idempotent, so a repeat is safe."""
    deadline = time.monotonic() + _config.GCS_RECONNECT_TIMEOUT_S
    delay = 0.05
    while True:
        try:
            return fn()
        except (ConnectionError, ConnectionClosed):
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _read_record(submission_id: str) -> dict:
    raw = _across_gcs_restarts(
        lambda: internal_kv._internal_kv_get(info_key(submission_id), namespace=KV_NAMESPACE)
    )
    if raw is None:
        raise KeyError(f"no record of job {submission_id!r}")
    return json.loads(raw)


def _write_record(record: dict) -> None:
    data = json.dumps(record).encode()
    _across_gcs_restarts(
        lambda: internal_kv._internal_kv_put(info_key(record["submission_id"]), data, namespace=KV_NAMESPACE)
    )


def _tail(path: str, chars: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - chars * 4))
            return f.read().decode(errors="replace")[-chars:]
    except OSError:
        return ""


class JobSupervisor:
    """Runs one job's entrypoint; see the module's docstring."""

    def __init__(self, submission_id: str, gcs_address: str, token: str | None = None):
        self.submission_id = submission_id
        self.gcs_address = gcs_address
        self.token = token
        self._lock = threading.Lock()
        self._stop_requested = False
        self._proc: subprocess.Popen | None = None
        self._done = threading.Event()
        self._log_path: str | None = None

    def _env(self, runtime_env: dict) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("CUDA_VISIBLE_DEVICES", None)  # the supervisor's, not the job's
        address = self.gcs_address.replace("tcp://", "")
        env.update(
            SKATE_ADDRESS=address,
            RAY_ADDRESS=address,
            SKATE_JOB_SUBMISSION_ID=self.submission_id,
            PYTHONUNBUFFERED="1",  # log lines appear as they are printed
        )
        if self.token:  # this node holds no session of the head: the driver needs the token
            env["SKATE_AUTH_TOKEN"] = self.token
        if runtime_env:
            env["SKATE_JOB_RUNTIME_ENV"] = json.dumps(runtime_env)
        env.update((runtime_env or {}).get("env_vars") or {})
        return env

    def run(self) -> dict:
        """Run the job to its end; the final record."""
        try:
            return self._run()
        finally:
            self._done.set()

    def wait(self) -> bool:
        """Block until `run` has returned (a dashboard that did not call `run` waits here)."""
        self._done.wait()
        return True

    def _run(self) -> dict:
        from skate import _api

        core = _api._core()
        record = _read_record(self.submission_id)
        if _job_state.status_of(record) is not JobStatus.PENDING:
            return record  # stopped before it could start
        runtime_env = record.get("runtime_env") or {}
        log_path = os.path.join(core.session_dir, "logs", f"job-driver-{self.submission_id}.log")
        self._log_path = log_path
        cwd = runtime_env.get("working_dir") or None
        if cwd and "://" in cwd:  # uploaded: this actor's worker runs in the unpacked copy
            cwd = os.getcwd()
        with self._lock:
            if self._stop_requested:
                record = _job_state.apply(record, "stopped", now_ms())
                _write_record(record)
                return record
            watch_r, watch_w = os.pipe()
            try:
                with open(log_path, "ab") as log:
                    os.chmod(log_path, 0o600)
                    self._proc = subprocess.Popen(
                        # -I -S: the runner needs only the standard library; site (.pth files) costs ~30 ms
                        [sys.executable, "-I", "-S", RUNNER, str(watch_r), record["entrypoint"]],
                        cwd=cwd,
                        env=self._env(runtime_env),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        pass_fds=(watch_r,),
                    )
            except OSError as exc:
                os.close(watch_w)
                record = _job_state.apply(record, "start_failed", now_ms(), reason=str(exc))
                _write_record(record)
                return record
            finally:
                os.close(watch_r)
            proc = self._proc
        record = _job_state.apply(record, "started", now_ms(), node_id=core.node_id)
        record["driver_log_path"] = log_path
        _write_record(record)
        try:
            code = proc.wait()
        finally:
            os.close(watch_w)  # the runner is gone; anything left of its group is on its own
        record = _job_state.apply(
            _read_record(self.submission_id),
            "exited",
            now_ms(),
            exit_code=128 - code if code < 0 else code,
            stop_requested=self._stop_requested,
            log_tail=_tail(log_path, _job_state.LOG_TAIL_IN_MESSAGE),
        )
        _write_record(record)
        return record

    def stop(self) -> bool:
        """Stop the job: SIGTERM to its process group, SIGKILL after the grace period."""
        with self._lock:
            self._stop_requested = True
            proc = self._proc
        if proc is None:
            return True  # not started: `run` records it as stopped
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(stop_wait_seconds())
        except subprocess.TimeoutExpired:
            pass
        _signal_group(proc.pid, signal.SIGKILL)  # the stragglers too
        return True

    def read_log(self, offset: int = 0, max_bytes: int = LOG_READ_BYTES) -> bytes:
        """Up to max_bytes of the job's log from offset (b"" at its end): how the dashboard reads
        the log of a job whose supervisor runs on another node."""
        if self._log_path is None:
            return b""
        try:
            with open(self._log_path, "rb") as f:
                f.seek(offset)
                return f.read(min(max_bytes, LOG_READ_BYTES))
        except OSError:
            return b""

    def ping(self) -> Any:
        return self.submission_id


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
