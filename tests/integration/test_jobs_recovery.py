"""Jobs across a GCS restart (SQLite storage): the job table is still listed, a supervisor
that survived keeps reporting, a supervisor that died meanwhile leaves its job FAILED with a
message that says so, and a dashboard that starts later takes over unfinished jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

import skate
from skate.cluster_utils import Cluster
from skate.job_submission import JobStatus, JobSubmissionClient
from tests.integration._cluster_helpers import node_args
from tests.integration._job_helpers import wait_for, wait_status

pytestmark = pytest.mark.timeout(150)
PY = sys.executable


@pytest.fixture
def durable_jobs():
    """A head with SQLite storage and its dashboard; yields (cluster, client)."""
    if skate.is_initialized():
        skate.shutdown()
    os.environ["SKATE_JOB_STOP_WAIT_TIME_S"] = "1"
    cluster = Cluster(
        initialize_head=True, head_node_args=node_args(num_cpus=2, storage="sqlite", include_dashboard=True)
    )
    try:
        head = cluster.head_node
        client = JobSubmissionClient(
            head.dashboard_url, headers={"Authorization": f"Bearer {head.token.decode()}"}
        )
        yield cluster, client
    finally:
        cluster.shutdown()
        os.environ.pop("SKATE_JOB_STOP_WAIT_TIME_S", None)


def _waiting_job(client, flag) -> str:
    """A job that prints 'started' and ends once `flag` exists."""
    script = flag.parent / "wait_for_flag.py"
    script.write_text(
        "import os, time\n"
        "print('job is up', flush=True)\n"
        f"while not os.path.exists({str(flag)!r}): time.sleep(0.05)\n"
        "print('finished')\n"
    )
    job_id = client.submit_job(entrypoint=f"{PY} {script}")
    wait_for(lambda: "job is up" in client.get_job_logs(job_id), 60, "the job to start")
    return job_id


def _supervisor_process() -> psutil.Process:
    runners = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any("_runner.py" in part for part in p.info["cmdline"] or ())
    ]
    assert len(runners) == 1, runners
    return runners[0].parent()


def test_jobs_are_listed_after_a_gcs_restart_and_a_surviving_supervisor_reports(durable_jobs, tmp_path):
    cluster, client = durable_jobs
    done = client.submit_job(entrypoint="echo done-before")
    assert wait_status(client, done, ("SUCCEEDED", "FAILED")) == "SUCCEEDED"
    flag = tmp_path / "go"
    running = _waiting_job(client, flag)

    cluster.head_node.kill_gcs()
    cluster.head_node.restart_gcs()

    listed = {j.submission_id: j.status for j in client.list_jobs()}
    assert listed[done] is JobStatus.SUCCEEDED and listed[running] is JobStatus.RUNNING, listed
    assert client.get_job_info(done).status is JobStatus.SUCCEEDED
    assert "done-before" in client.get_job_logs(done)
    flag.write_text("")  # the job ends now: its supervisor, which outlived the GCS, records it
    assert wait_status(client, running, ("SUCCEEDED", "FAILED")) == "SUCCEEDED", client.get_job_info(
        running
    ).message
    assert "finished" in client.get_job_logs(running)
    # New jobs run as before.
    again = client.submit_job(entrypoint="echo after-restart")
    assert wait_status(client, again, ("SUCCEEDED", "FAILED")) == "SUCCEEDED"


def test_a_supervisor_that_died_while_the_gcs_was_down_fails_its_job(durable_jobs, tmp_path):
    cluster, client = durable_jobs
    running = _waiting_job(client, tmp_path / "never")
    supervisor = _supervisor_process()
    cluster.head_node.kill_gcs()
    supervisor.kill()
    supervisor.wait(10)
    cluster.head_node.restart_gcs()
    assert wait_status(client, running, ("SUCCEEDED", "FAILED", "STOPPED")) == "FAILED"
    info = client.get_job_info(running)
    assert info.error_type == "JOB_SUPERVISOR_ACTOR_DIED", info
    assert info.message.startswith("Job supervisor actor died") and "ended with it" in info.message, (
        info.message
    )


def test_a_dashboard_started_later_takes_over_unfinished_jobs(durable_jobs, tmp_path):
    """A second dashboard (as after a head restart): it watches the live job's supervisor and
    records a job whose supervisor is gone as FAILED."""
    cluster, client = durable_jobs
    head = cluster.head_node
    flag = tmp_path / "go"
    live = _waiting_job(client, flag)
    # An unfinished job nobody runs any more (its supervisor died with an earlier head).
    orphan = {
        "submission_id": "orphan_job", "type": "SUBMISSION", "status": "RUNNING", "entrypoint": "sleep 1000",
        "message": "Job is currently running.", "start_time": int(time.time() * 1000),
    }  # fmt: skip
    skate.init(address=cluster.address)
    try:
        from skate.experimental import internal_kv

        internal_kv._internal_kv_put(
            b"job_info:orphan_job", json.dumps(orphan).encode(), namespace=b"_skate_jobs"
        )
    finally:
        skate.shutdown()
    second = subprocess.Popen(
        [PY, "-m", "skate.dashboard.main", "--session-dir", head.session_dir,
         "--gcs-address", head.gcs_address, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        line = second.stdout.readline()
        assert line.startswith("READY "), line
        other = JobSubmissionClient(
            line.split()[1], headers={"Authorization": f"Bearer {head.token.decode()}"}
        )
        assert wait_status(other, "orphan_job", ("FAILED",)) == "FAILED"
        message = other.get_job_info("orphan_job").message
        assert "supervisor actor died" in message and "gone" in message, message
        assert other.get_job_status(live) is JobStatus.RUNNING
        flag.write_text("")
        assert wait_status(other, live, ("SUCCEEDED", "FAILED")) == "SUCCEEDED"
    finally:
        second.terminate()
        second.wait(30)
