"""The dashboard's side of jobs: records in the GCS, supervisors on the cluster.

A job's record (skate._job_state) lives in the GCS's internal KV under
`job_info:<submission id>` in the `_skate_jobs` namespace, so it outlives the dashboard and
any driver. Submitting writes the PENDING record (only if the id is new: a duplicate is
refused atomically by the GCS), then starts the job's supervisor actor. For that the dashboard
joins the cluster as a driver of its own (namespace `_skate_internal_dashboard`, hidden from
`list_jobs`) when it starts, in the background, so the first job does not wait for it; then it
takes over the unfinished jobs a previous dashboard left (`recover`).

A reaper task per job waits for the supervisor's `run` (or, for a job taken over, `wait`) to
return, copies the log to the head if the supervisor ran elsewhere, then kills the supervisor;
if the supervisor died first, the job is recorded FAILED.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from typing import Any

from skate import _job_state
from skate._job_state import JobStatus
from skate._runtime_env import validate_runtime_env
from skate.dashboard.modules.job.supervisor import (
    KV_NAMESPACE,
    LOG_READ_BYTES,
    SUPERVISOR_NAMESPACE,
    JobSupervisor,
    info_key,
    supervisor_name,
)
from skate.dashboard.server import DashboardContext
from skate.runtime_env.spec import package_key

logger = logging.getLogger("skate.dashboard.jobs")

DASHBOARD_NAMESPACE = "_skate_internal_dashboard"
INTERNAL_NAMESPACE_PREFIX = "_skate_internal"
SUBMISSION_ID_PREFIX = "raysubmit_"


class BadRequest(ValueError):
    """A request the API refuses with 400 (the message says why)."""


class NotFound(KeyError):
    """No job has this id (404)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _package_uris(runtime_env: dict) -> list[str]:
    """The uploaded packages (gcs:// URIs) a job's runtime env names."""
    wd = runtime_env.get("working_dir")
    uris = [wd] if isinstance(wd, str) and "://" in wd else []
    return uris + [m for m in runtime_env.get("py_modules") or () if isinstance(m, str) and "://" in m]


def _supervisor_env(runtime_env: dict) -> dict:
    """The part of a job's env its supervisor runs in: its uploaded packages, so the raylet
    fetches and unpacks them and the supervisor starts the entrypoint in the unpacked
    working_dir, with the py_modules on PYTHONPATH (the rest is applied to the entrypoint only)."""
    out: dict = {}
    wd = runtime_env.get("working_dir")
    if isinstance(wd, str) and "://" in wd:
        out["working_dir"] = wd
    if runtime_env.get("py_modules"):
        out["py_modules"] = list(runtime_env["py_modules"])
    return out


def new_submission_id() -> str:
    alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return SUBMISSION_ID_PREFIX + "".join(secrets.choice(alphabet) for _ in range(16))


class JobManager:
    def __init__(self, ctx: DashboardContext):
        self.ctx = ctx
        self._driver_lock = asyncio.Lock()
        self._driver = False
        self.head_node_id: str | None = None  # the node this dashboard's driver is on
        self._reapers: dict[str, asyncio.Task] = {}  # by submission id
        self._submitting: set[str] = set()
        self._start_task: asyncio.Task | None = None
        self._handles: dict[str, Any] = {}  # supervisors whose logs are read remotely

    def start_in_background(self) -> None:
        """At dashboard start: join the cluster now, off the request path (so the first job does
        not wait for it), then take over the jobs a previous dashboard left unfinished."""
        self._start_task = asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        try:
            await self._ensure_driver()
            await self.recover()
        except Exception:
            logger.exception("could not join the cluster at start; the first job will try again")

    async def recover(self) -> None:
        """Watch every unfinished job's supervisor again; a job whose supervisor is gone (it
        died with its node, or with the head while no dashboard watched) is recorded FAILED."""
        import skate

        for key in await self.ctx.gcs.kv_keys(KV_NAMESPACE, b"job_info:"):
            sid = key.decode().partition(":")[2]
            if sid in self._reapers or sid in self._submitting:
                continue
            record = await self.get_record(sid)
            if record is None or _job_state.status_of(record).is_terminal():
                continue
            try:
                handle = await asyncio.to_thread(skate.get_actor, supervisor_name(sid), SUPERVISOR_NAMESPACE)
            except ValueError:
                handle = None
            record = await self.get_record(sid)  # it may have ended meanwhile
            if record is None or _job_state.status_of(record).is_terminal():
                continue
            if handle is None:
                reason = (
                    "it is gone (it died with its node, or with the head node, while no dashboard "
                    "watched it); the job's processes ended with it"
                )
                await self._put(_job_state.apply(record, "supervisor_died", _now_ms(), reason=reason))
                logger.warning("job %s: its supervisor is gone; recorded FAILED", sid)
                continue
            logger.info("job %s: watching its supervisor again", sid)
            self._watch(sid, handle, handle.wait.remote())

    def _watch(self, submission_id: str, handle: Any, ref: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._reap(submission_id, handle, ref))
        self._reapers[submission_id] = task
        self._handles[submission_id] = handle
        task.add_done_callback(lambda _t: self._reapers.pop(submission_id, None))

    # -- records ---------------------------------------------------------------------------

    async def get_record(self, submission_id: str) -> dict | None:
        raw = await self.ctx.gcs.kv_get(KV_NAMESPACE, info_key(submission_id))
        return None if raw is None else json.loads(raw)

    async def require(self, job_id: str) -> dict:
        """The record of a submission id (or of the submission a driver job id belongs to)."""
        record = await self.get_record(job_id)
        if record is None:
            for driver in await self._driver_jobs():
                if driver["job_id"] == job_id:
                    if driver.get("submission_id"):
                        record = await self.get_record(driver["submission_id"])
                    if record is None:
                        return self._driver_details(driver)
                    break
        if record is None:
            raise NotFound(f"Job {job_id} does not exist.")
        return record

    async def _put(self, record: dict, overwrite: bool = True) -> bool:
        return await self.ctx.gcs.kv_put(
            KV_NAMESPACE, info_key(record["submission_id"]), json.dumps(record).encode(), overwrite
        )

    async def _driver_jobs(self) -> list[dict]:
        jobs = await self.ctx.gcs.call("get_jobs")
        return [j for j in jobs if not str(j.get("namespace", "")).startswith(INTERNAL_NAMESPACE_PREFIX)]

    @staticmethod
    def _driver_details(job: dict) -> dict:
        dead = job.get("is_dead")
        return {
            "type": "DRIVER",
            "job_id": job["job_id"],
            "submission_id": None,
            "status": (JobStatus.SUCCEEDED if dead else JobStatus.RUNNING).value,
            "entrypoint": job.get("entrypoint", ""),
            "message": "Job finished." if dead else "Job is currently running.",
            "error_type": None,
            "start_time": int(job.get("start_time", 0) * 1000),
            "end_time": int(job["end_time"] * 1000) if job.get("end_time") else None,
            "metadata": {},
            "runtime_env": {},
            "driver_info": {"id": job.get("driver_id"), "pid": str(job.get("driver_pid", ""))},
            "driver_exit_code": None,
        }

    async def list_jobs(self) -> list[dict]:
        keys = await self.ctx.gcs.kv_keys(KV_NAMESPACE, b"job_info:")
        records = []
        for key in keys:
            raw = await self.ctx.gcs.kv_get(KV_NAMESPACE, key)
            if raw is not None:
                records.append(json.loads(raw))
        by_submission = {r["submission_id"]: r for r in records}
        out = list(records)
        for driver in await self._driver_jobs():
            sid = driver.get("submission_id")
            if sid and sid in by_submission:
                record = by_submission[sid]
                record["job_id"] = driver["job_id"]
                record["driver_info"] = {"id": driver.get("driver_id"), "pid": str(driver.get("driver_pid"))}
            else:
                out.append(self._driver_details(driver))
        return out

    async def with_driver(self, record: dict) -> dict:
        """The record with its driver's job id, once the entrypoint's driver joined."""
        if record.get("job_id") is None and record.get("type") == "SUBMISSION":
            for driver in await self._driver_jobs():
                if driver.get("submission_id") == record["submission_id"]:
                    record = dict(record, job_id=driver["job_id"])
                    record["driver_info"] = {
                        "id": driver.get("driver_id"),
                        "pid": str(driver.get("driver_pid")),
                    }
        return record

    # -- submitting --------------------------------------------------------------------------

    async def submit(self, body: Any) -> str:
        if not isinstance(body, dict):
            raise BadRequest(f"the request body must be a JSON object, got {type(body).__name__}")
        known = {
            "entrypoint",
            "submission_id",
            "job_id",
            "runtime_env",
            "metadata",
            "entrypoint_num_cpus",
            "entrypoint_num_gpus",
            "entrypoint_memory",
            "entrypoint_resources",
        }
        unknown = sorted(set(body) - known)
        if unknown:
            raise BadRequest(f"unknown field(s) {unknown}; known: {sorted(known)}")
        submission_id = body.get("submission_id") or body.get("job_id") or new_submission_id()
        try:
            runtime_env = validate_runtime_env(body.get("runtime_env")) or {}
            working_dir = runtime_env.get("working_dir")
            if working_dir and "://" not in working_dir and not os.path.isdir(working_dir):
                raise ValueError(
                    f"runtime_env['working_dir'] {working_dir!r} is not a directory on the head node"
                )
            for uri in _package_uris(runtime_env):
                if not await self.ctx.gcs.kv_exists(None, package_key(uri).encode()):
                    raise ValueError(
                        f"the package {uri} of the runtime env is not stored on this cluster: upload it "
                        "first (PUT /api/packages/...; JobSubmissionClient does it for local paths)"
                    )
            record = _job_state.new_record(
                submission_id,
                body.get("entrypoint"),
                _now_ms(),
                metadata=body.get("metadata"),
                runtime_env=runtime_env,
                entrypoint_num_cpus=body.get("entrypoint_num_cpus"),
                entrypoint_num_gpus=body.get("entrypoint_num_gpus"),
                entrypoint_memory=body.get("entrypoint_memory"),
                entrypoint_resources=body.get("entrypoint_resources"),
            )
        except (TypeError, ValueError) as exc:
            raise BadRequest(str(exc)) from None
        self._submitting.add(submission_id)
        try:
            if not await self._put(record, overwrite=False):
                raise BadRequest(
                    f"Job with submission_id {submission_id} already exists. "
                    "Please use a different submission_id."
                )
            try:
                await self._ensure_driver()
                handle, ref = await asyncio.to_thread(self._start_supervisor, record)
            except Exception as exc:
                logger.exception("could not start the supervisor of job %s", submission_id)
                failed = _job_state.apply(
                    record, "start_failed", _now_ms(), reason=f"{type(exc).__name__}: {exc}"
                )
                await self._put(failed)
                return submission_id
            self._watch(submission_id, handle, ref)
        finally:
            self._submitting.discard(submission_id)
        logger.info("job %s: supervisor started", submission_id)
        return submission_id

    async def _ensure_driver(self) -> None:
        async with self._driver_lock:
            if self._driver:
                return
            import skate

            await asyncio.to_thread(
                skate.init,
                address=self.ctx.gcs_address.replace("tcp://", ""),
                namespace=DASHBOARD_NAMESPACE,
                log_to_driver=False,
            )
            self.head_node_id = skate.get_runtime_context().get_node_id()
            self._driver = True

    def _start_supervisor(self, record: dict) -> tuple[Any, Any]:
        import skate

        options: dict[str, Any] = {
            "name": supervisor_name(record["submission_id"]),
            "namespace": SUPERVISOR_NAMESPACE,
            "lifetime": "detached",
            "max_concurrency": 4,
            "num_cpus": record.get("entrypoint_num_cpus") or 0,
        }
        if record.get("entrypoint_num_gpus"):
            options["num_gpus"] = record["entrypoint_num_gpus"]
        if record.get("entrypoint_memory"):
            options["memory"] = record["entrypoint_memory"]
        resources = dict(record.get("entrypoint_resources") or {})
        if not any(
            record.get(k) for k in ("entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_memory")
        ):
            if not resources:
                resources["node:__internal_head__"] = 0.001  # on the head, as Ray runs its drivers
        if resources:
            options["resources"] = resources
        packages = _supervisor_env(record.get("runtime_env") or {})
        if packages:  # the supervisor's worker unpacks them: the entrypoint runs in its directory
            options["runtime_env"] = packages
        handle = (
            skate.remote(JobSupervisor)
            .options(**options)
            .remote(record["submission_id"], self.ctx.gcs_address)
        )
        return handle, handle.run.remote()

    async def _reap(self, submission_id: str, handle: Any, ref: Any) -> None:
        import skate

        try:
            await ref
        except Exception as exc:
            record = await self.get_record(submission_id)
            if record is not None and not _job_state.status_of(record).is_terminal():
                reason = f"{str(exc)[:2000]} (the job's processes ended with it)"
                await self._put(_job_state.apply(record, "supervisor_died", _now_ms(), reason=reason))
        else:
            record = await self.get_record(submission_id)
            if record is not None and self._is_remote(record):
                try:
                    await self._copy_log_to_head(record)
                except Exception:
                    logger.exception("job %s: could not copy its log to the head", submission_id)
        try:
            await asyncio.to_thread(skate.kill, handle)
        except Exception:  # already gone
            pass
        self._handles.pop(submission_id, None)

    # -- stopping, deleting, logs ------------------------------------------------------------

    async def stop(self, job_id: str) -> bool:
        record = await self.require(job_id)
        if record.get("type") == "DRIVER":
            raise BadRequest(f"Job {job_id} is a driver job, not a submitted one: it cannot be stopped here.")
        if _job_state.status_of(record).is_terminal():
            return False
        sid = record["submission_id"]
        handle = None
        if self._driver:
            import skate

            try:
                handle = await asyncio.to_thread(skate.get_actor, supervisor_name(sid), SUPERVISOR_NAMESPACE)
            except ValueError:
                handle = None
        if handle is None:
            if _job_state.status_of(record) is JobStatus.PENDING:
                await self._put(_job_state.apply(record, "stopped", _now_ms()))
                return True
            await self._put(_job_state.apply(record, "supervisor_died", _now_ms(), reason="it is gone"))
            return False
        if _job_state.status_of(record) is JobStatus.PENDING:
            # Not started: its supervisor may never be placed (entrypoint resources no node has),
            # and a stop sent to it would wait for it forever. Record the stop first (so the
            # reaper sees a finished job, not a dead supervisor), then end the supervisor; the
            # entrypoint's process group, if it had just started, goes with it.
            await self._put(_job_state.apply(record, "stopped", _now_ms()))
            await asyncio.to_thread(skate.kill, handle)
            return True
        handle.stop.remote()
        return True

    async def delete(self, job_id: str) -> bool:
        record = await self.require(job_id)
        if record.get("type") == "DRIVER":
            raise BadRequest(f"Job {job_id} is a driver job, not a submitted one: it cannot be deleted.")
        status = _job_state.status_of(record)
        if not status.is_terminal():
            raise BadRequest(
                f"Attempted to delete job with id '{job_id}', but it is in a non-terminal state "
                f"{status.value}."
            )
        await self.ctx.gcs.kv_del(KV_NAMESPACE, info_key(record["submission_id"]))
        for path in {record.get("driver_log_path"), self._head_copy(record["submission_id"])}:
            if path and (path == self._head_copy(record["submission_id"]) or not self._is_remote(record)):
                try:
                    os.unlink(path)
                except OSError:
                    pass
        return True

    # -- logs ----------------------------------------------------------------------------------
    # A job's log is written where its supervisor runs. On the head the dashboard reads the
    # file; from another node it asks the supervisor (`read_log`, a piece at a time), and once
    # the job has ended it reads the copy the reaper made on the head before the supervisor
    # went (`<session>/logs/job-driver-<id>.log`, renamed into place only when complete).

    def _head_copy(self, submission_id: str) -> str:
        return os.path.join(self.ctx.session_dir, "logs", f"job-driver-{submission_id}.log")

    def _is_remote(self, record: dict) -> bool:
        node = record.get("driver_node_id")
        return bool(node and self.head_node_id and node != self.head_node_id)

    async def _supervisor(self, submission_id: str) -> Any:
        import skate

        handle = self._handles.get(submission_id)
        if handle is None:
            handle = await asyncio.to_thread(
                skate.get_actor, supervisor_name(submission_id), SUPERVISOR_NAMESPACE
            )
            self._handles[submission_id] = handle
        return handle

    async def _read_remote(self, submission_id: str, offset: int, whole: bool) -> bytes:
        handle = await self._supervisor(submission_id)
        parts: list[bytes] = []
        while True:
            chunk = await handle.read_log.remote(offset, LOG_READ_BYTES)
            if not chunk:
                break
            parts.append(chunk)
            offset += len(chunk)
            if not whole:
                break
        return b"".join(parts)

    async def read_logs(self, record: dict, offset: int = 0, whole: bool = True) -> bytes:
        """The job's log from offset: all of it, or (whole=False) the next piece."""
        sid = record["submission_id"]
        if not self._is_remote(record):
            return _read_file(record.get("driver_log_path"), offset)
        copy = self._head_copy(sid)
        if not os.path.exists(copy):
            try:
                return await self._read_remote(sid, offset, whole)
            except Exception:  # the supervisor is gone: its copy may have just been made
                self._handles.pop(sid, None)
        return _read_file(copy, offset)

    async def _copy_log_to_head(self, record: dict) -> None:
        """Before an off-head supervisor goes: its job's log, copied to the head."""
        copy = self._head_copy(record["submission_id"])
        partial = copy + ".partial"
        data = await self._read_remote(record["submission_id"], 0, True)
        await asyncio.to_thread(_write_private, partial, data)
        os.replace(partial, copy)

    async def close(self) -> None:
        if self._start_task is not None:
            self._start_task.cancel()
        for task in list(self._reapers.values()):
            task.cancel()
        if self._driver:
            import skate

            await asyncio.to_thread(skate.shutdown)
            self._driver = False


def _read_file(path: str | None, offset: int) -> bytes:
    if not path:
        return b""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return b""


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
