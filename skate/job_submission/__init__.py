"""Jobs on a running cluster, as `ray.job_submission`: submit, follow, stop (see sdk)."""

from __future__ import annotations

from skate.job_submission.models import DriverInfo, JobDetails, JobInfo, JobStatus, JobType
from skate.job_submission.sdk import JobSubmissionClient

__all__ = ["DriverInfo", "JobDetails", "JobInfo", "JobStatus", "JobSubmissionClient", "JobType"]
