"""The job SDK's value types, in Ray's shapes: JobStatus, JobType, DriverInfo, JobInfo, JobDetails."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from skate._job_state import JobStatus

__all__ = ["DriverInfo", "JobDetails", "JobInfo", "JobStatus", "JobType"]


class JobType(str, enum.Enum):
    """A job submitted through the job API, or a driver that called init() itself."""

    SUBMISSION = "SUBMISSION"
    DRIVER = "DRIVER"

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass
class DriverInfo:
    """The driver process of a job."""

    id: str | None = None
    node_ip_address: str | None = None
    pid: str | None = None


@dataclasses.dataclass
class JobInfo:
    """A job's status and what it was submitted with; times are ms since the epoch."""

    status: JobStatus = JobStatus.PENDING
    entrypoint: str = ""
    message: str | None = None
    error_type: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    metadata: dict[str, str] | None = None
    runtime_env: dict[str, Any] | None = None
    driver_agent_http_address: str | None = None
    driver_node_id: str | None = None
    driver_exit_code: int | None = None
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    entrypoint_resources: dict[str, float] | None = None


@dataclasses.dataclass
class JobDetails(JobInfo):
    """A job as the API lists it: JobInfo plus its type, ids and driver."""

    type: JobType = JobType.SUBMISSION
    job_id: str | None = None
    submission_id: str | None = None
    driver_info: DriverInfo | None = None

    @classmethod
    def from_json(cls, data: dict) -> JobDetails:
        """From the API's JSON; unknown fields (a newer server's) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["status"] = JobStatus(data.get("status", "PENDING"))
        kwargs["type"] = JobType(data.get("type", "SUBMISSION"))
        driver = data.get("driver_info")
        if isinstance(driver, dict):
            kwargs["driver_info"] = DriverInfo(
                **{k: v for k, v in driver.items() if k in ("id", "node_ip_address", "pid")}
            )
        return cls(**kwargs)
