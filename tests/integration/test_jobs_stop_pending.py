"""Stopping a job that never started: its supervisor cannot be placed, and stop must not wait for it."""

from __future__ import annotations

import pytest

from skate.job_submission import JobStatus, JobSubmissionClient
from tests.integration._job_helpers import jobs_cluster_fixture, wait_status


@pytest.fixture(scope="module")
def jobs_cluster():
    yield from jobs_cluster_fixture()


@pytest.mark.timeout(90)
def test_a_pending_job_whose_supervisor_cannot_be_placed_stops(jobs_cluster):
    client = JobSubmissionClient(jobs_cluster)
    job_id = client.submit_job(
        entrypoint="python -c \"print('never')\"",
        entrypoint_resources={"no_node_has_this": 1},
    )
    assert client.get_job_status(job_id) == JobStatus.PENDING
    assert client.stop_job(job_id) is True
    wait_status(client, job_id, ("STOPPED",), timeout=30)
    info = client.get_job_info(job_id)
    assert info.status == JobStatus.STOPPED
    assert client.stop_job(job_id) is False  # already ended
