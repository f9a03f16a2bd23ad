"""The life of a submitted job, as a pure state machine: statuses, events and the record.

A job's record is a plain dict (it travels as JSON through the GCS's internal KV and the REST
API), with Ray's field names: status, message, start_time/end_time (ms since the epoch),
driver_exit_code, entrypoint, metadata, runtime_env, ... Every change of status goes through
`apply`, which checks the event is allowed in the current status and returns the new record;
nothing here does I/O, so the rules have exact unit tests (tests/unit/test_job_state.py).

    PENDING --started--> RUNNING --exited(0)------------> SUCCEEDED
       |                    |----exited(n != 0)---------> FAILED
       |                    |----exited after stop------> STOPPED
       |----stopped (before it started)---------------> STOPPED
       |----start_failed-------------------------------> FAILED
    PENDING/RUNNING --supervisor_died------------------> FAILED
"""

from __future__ import annotations

import enum
import re
from typing import Any

JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
LOG_TAIL_IN_MESSAGE = 20_000  # characters of the log quoted in a failed job's message


class JobStatus(str, enum.Enum):
    """The status of a job; str-valued, and `str()` gives the bare name as Ray's does."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def __str__(self) -> str:
        return self.value

    def is_terminal(self) -> bool:
        """Whether the job has ended (it will never change status again)."""
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED})

PENDING_MESSAGE = (
    "Job has not started yet. It may be waiting for resources (CPUs, GPUs, memory, custom resources) "
    "to become available, or for its runtime environment to be set up."
)
RUNNING_MESSAGE = "Job is currently running."
SUCCEEDED_MESSAGE = "Job finished successfully."
STOPPED_MESSAGE = "Job was intentionally stopped."


class JobStateError(ValueError):
    """An event that is not allowed in the job's current status."""


# event -> the statuses it may happen in
ALLOWED: dict[str, frozenset[JobStatus]] = {
    "started": frozenset({JobStatus.PENDING}),
    "exited": frozenset({JobStatus.RUNNING}),
    "stopped": frozenset({JobStatus.PENDING}),
    "start_failed": frozenset({JobStatus.PENDING}),
    "supervisor_died": frozenset({JobStatus.PENDING, JobStatus.RUNNING}),
}


def check_submission_id(submission_id: Any) -> str:
    """A submission id must be a short string of letters, digits, '_', '-' or '.' (it names a
    log file and a KV key)."""
    if not isinstance(submission_id, str) or not JOB_ID_PATTERN.match(submission_id):
        raise ValueError(
            "submission_id must be 1-128 characters of letters, digits, '_', '-' or '.', "
            f"got {submission_id!r}"
        )
    return submission_id


def new_record(
    submission_id: str,
    entrypoint: Any,
    now_ms: int,
    *,
    metadata: Any = None,
    runtime_env: Any = None,
    entrypoint_num_cpus: Any = None,
    entrypoint_num_gpus: Any = None,
    entrypoint_memory: Any = None,
    entrypoint_resources: Any = None,
) -> dict:
    """The record of a job just submitted (PENDING); ValueError/TypeError name a bad field."""
    check_submission_id(submission_id)
    if not isinstance(entrypoint, str):
        raise TypeError(f"entrypoint must be a str, got {type(entrypoint).__name__}")
    if not entrypoint.strip():
        raise ValueError("entrypoint must be a non-empty shell command, e.g. 'python script.py'")
    if metadata is not None and (
        not isinstance(metadata, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise TypeError(f"metadata must be a dict of str to str, got {metadata!r:.200}")
    for name, value in (
        ("entrypoint_num_cpus", entrypoint_num_cpus),
        ("entrypoint_num_gpus", entrypoint_num_gpus),
        ("entrypoint_memory", entrypoint_memory),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
        ):
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    if entrypoint_resources is not None and (
        not isinstance(entrypoint_resources, dict)
        or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for k, v in entrypoint_resources.items()
        )
    ):
        raise ValueError(
            f"entrypoint_resources must map names to non-negative numbers, got {entrypoint_resources!r}"
        )
    return {
        "type": "SUBMISSION",
        "job_id": None,
        "submission_id": submission_id,
        "status": JobStatus.PENDING.value,
        "entrypoint": entrypoint,
        "message": PENDING_MESSAGE,
        "error_type": None,
        "start_time": now_ms,
        "end_time": None,
        "metadata": dict(metadata or {}),
        "runtime_env": runtime_env or {},
        "driver_info": None,
        "driver_agent_http_address": None,
        "driver_node_id": None,
        "driver_exit_code": None,
        "entrypoint_num_cpus": entrypoint_num_cpus,
        "entrypoint_num_gpus": entrypoint_num_gpus,
        "entrypoint_memory": entrypoint_memory,
        "entrypoint_resources": entrypoint_resources,
    }


def status_of(record: dict) -> JobStatus:
    return JobStatus(record["status"])


def apply(
    record: dict,
    event: str,
    now_ms: int,
    *,
    exit_code: int | None = None,
    stop_requested: bool = False,
    log_tail: str = "",
    reason: str = "",
    node_id: str | None = None,
) -> dict:
    """The record after `event`; JobStateError if the event cannot happen in its status.

    started:         the entrypoint's process is running (on node_id).
    exited:          it ended with exit_code; STOPPED if a stop was asked for, else SUCCEEDED
                     for 0 and FAILED otherwise (the message quotes the log's tail).
    stopped:         stopped before it started.
    start_failed:    the entrypoint could not be started (reason).
    supervisor_died: the actor running it is gone (reason).
    """
    status = status_of(record)
    allowed = ALLOWED.get(event)
    if allowed is None:
        raise JobStateError(f"unknown job event {event!r}; known: {sorted(ALLOWED)}")
    if status not in allowed:
        raise JobStateError(
            f"job {record.get('submission_id')!r} cannot take event {event!r} while {status.value}"
        )
    out = dict(record)
    if event == "started":
        out.update(status=JobStatus.RUNNING.value, message=RUNNING_MESSAGE, driver_node_id=node_id)
        return out
    out["end_time"] = now_ms
    if event == "exited":
        out["driver_exit_code"] = exit_code
        if stop_requested:
            out.update(status=JobStatus.STOPPED.value, message=STOPPED_MESSAGE)
        elif exit_code == 0:
            out.update(status=JobStatus.SUCCEEDED.value, message=SUCCEEDED_MESSAGE)
        else:
            message = f"Job entrypoint command failed with exit code {exit_code}"
            tail = log_tail[-LOG_TAIL_IN_MESSAGE:]
            if tail:
                message += f", last available logs (truncated to {LOG_TAIL_IN_MESSAGE:,} chars):\n{tail}"
            out.update(
                status=JobStatus.FAILED.value, message=message, error_type="JOB_ENTRYPOINT_COMMAND_ERROR"
            )
    elif event == "stopped":
        out.update(status=JobStatus.STOPPED.value, message=STOPPED_MESSAGE)
    elif event == "start_failed":
        out.update(
            status=JobStatus.FAILED.value,
            message=f"Job entrypoint command could not be started: {reason}",
            error_type="JOB_ENTRYPOINT_COMMAND_START_ERROR",
        )
    else:  # supervisor_died
        out.update(
            status=JobStatus.FAILED.value,
            message=f"Job supervisor actor died: {reason}" if reason else "Job supervisor actor died.",
            error_type="JOB_SUPERVISOR_ACTOR_DIED",
        )
    return out


def exit_code_for(record: dict) -> int:
    """The exit status `skate job submit` (following the job) ends with: 0 when it succeeded,
    its entrypoint's exit code when that failed, 1 otherwise (stopped, or no code)."""
    status = status_of(record)
    if status is JobStatus.SUCCEEDED:
        return 0
    code = record.get("driver_exit_code")
    if status is JobStatus.FAILED and isinstance(code, int) and 0 < code < 256:
        return code
    return 1
