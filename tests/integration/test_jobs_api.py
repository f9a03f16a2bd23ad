"""The job REST API and SDK against a private cluster's dashboard: every route, the supervisor's
work (env, working_dir, logs, exit codes, stopping a process tree), auth and bad input."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap

import psutil
import pytest

import skate
from skate import _api
from skate.exceptions import JobSubmissionError
from skate.job_submission import JobDetails, JobStatus, JobSubmissionClient, JobType
from tests.integration._job_helpers import http, jobs_cluster_fixture, token, wait_for, wait_status

PY = sys.executable


@pytest.fixture(scope="module")
def jobs_cluster():
    yield from jobs_cluster_fixture()


@pytest.fixture(scope="module")
def client(jobs_cluster):
    return JobSubmissionClient(jobs_cluster)  # no token given: found in the local session


@pytest.mark.timeout(60)
def test_version_route(jobs_cluster):
    status, body = http(jobs_cluster + "/api/version")
    assert status == 200 and body["version"] == "1" and body["ray_version"] == skate.__version__


@pytest.mark.timeout(90)
def test_submit_runs_a_driver_that_joins_the_cluster(client, tmp_path):
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """
            import os, skate
            skate.init()
            print("flag", os.environ["SOME_FLAG"], "cwd", os.getcwd())
            print("answer", skate.get(skate.remote(lambda: 21 * 2).remote()))
            """
        )
    )
    job_id = client.submit_job(
        entrypoint=f"{PY} app.py",
        runtime_env={"env_vars": {"SOME_FLAG": "yes"}, "working_dir": str(tmp_path)},
        metadata={"owner": "tests"},
    )
    assert job_id.startswith("raysubmit_")
    assert wait_status(client, job_id, ("SUCCEEDED", "FAILED")) == "SUCCEEDED", client.get_job_logs(job_id)
    logs = client.get_job_logs(job_id)
    # The SDK uploaded the working_dir: the job runs in the unpacked copy, as Ray's does.
    assert "flag yes cwd " in logs and "_skate_pkg_" in logs and "answer 42" in logs
    info = client.get_job_info(job_id)
    assert isinstance(info, JobDetails) and info.type is JobType.SUBMISSION
    assert info.status is JobStatus.SUCCEEDED and info.driver_exit_code == 0
    assert info.metadata == {"owner": "tests"} and info.entrypoint == f"{PY} app.py"
    assert info.start_time <= info.end_time
    assert info.job_id is not None  # the driver the entrypoint started registered under it
    listed = {j.submission_id: j for j in client.list_jobs()}
    assert listed[job_id].status is JobStatus.SUCCEEDED and listed[job_id].job_id == info.job_id
    # the raw route has Ray's shape
    status, body = http(client.address + f"/api/jobs/{job_id}")
    assert status == 200 and body["status"] == "SUCCEEDED" and body["submission_id"] == job_id
    assert "driver_log_path" not in body


@pytest.mark.timeout(60)
def test_this_driver_is_listed_as_a_driver_job(client):
    me = skate.get_runtime_context().get_job_id()
    drivers = [j for j in client.list_jobs() if j.type is JobType.DRIVER]
    assert any(j.job_id == me and j.status is JobStatus.RUNNING for j in drivers), drivers
    assert str(client.get_job_status(me)) == "RUNNING"


@pytest.mark.timeout(60)
def test_failed_job_records_exit_code_and_log_tail(client):
    job_id = client.submit_job(entrypoint="echo about to fail; exit 7", submission_id="fails_7")
    assert job_id == "fails_7"
    assert wait_status(client, job_id, ("SUCCEEDED", "FAILED")) == "FAILED"
    info = client.get_job_info(job_id)
    assert info.driver_exit_code == 7
    assert "exit code 7" in info.message and "about to fail" in info.message


@pytest.mark.timeout(60)
def test_tail_follows_the_log_until_the_job_ends(client):
    job_id = client.submit_job(
        entrypoint=f"{PY} -c \"import time\nfor i in range(5):\n    print('line', i); time.sleep(0.2)\""
    )

    async def follow() -> str:
        return "".join([chunk async for chunk in client.tail_job_logs(job_id)])

    text = asyncio.run(asyncio.wait_for(follow(), 60))
    assert [f"line {i}" for i in range(5)] == [ln for ln in text.splitlines() if ln.startswith("line")]
    assert str(client.get_job_status(job_id)) == "SUCCEEDED"


@pytest.mark.timeout(90)
def test_stop_kills_the_whole_process_tree(client, tmp_path):
    pidfile = tmp_path / "pids"
    # A shell that ignores SIGTERM, with a child in the background: only SIGKILL of the group ends both.
    script = f"trap '' TERM; sleep 300 & echo $! > {pidfile}; echo $$ >> {pidfile}; echo started; wait"
    job_id = client.submit_job(entrypoint=f"sh -c {json.dumps(script)}")
    wait_status(client, job_id, ("RUNNING",))
    wait_for(lambda: "started" in client.get_job_logs(job_id), what="the job's first line")
    pids = [int(p) for p in pidfile.read_text().split()]
    assert all(psutil.pid_exists(p) for p in pids)
    assert client.stop_job(job_id) is True
    assert wait_status(client, job_id, ("STOPPED", "FAILED", "SUCCEEDED")) == "STOPPED"
    wait_for(lambda: not any(_alive(p) for p in pids), what="the job's processes to die")
    assert client.stop_job(job_id) is False  # already ended
    assert client.get_job_info(job_id).message == "Job was intentionally stopped."


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.timeout(60)
def test_delete_forgets_an_ended_job_only(client):
    job_id = client.submit_job(entrypoint="sleep 30")
    wait_status(client, job_id, ("RUNNING",))
    with pytest.raises(JobSubmissionError, match="non-terminal") as err:
        client.delete_job(job_id)
    assert err.value.status == 400
    client.stop_job(job_id)
    wait_status(client, job_id, ("STOPPED",))
    assert client.delete_job(job_id) is True
    with pytest.raises(JobSubmissionError, match="does not exist") as err:
        client.get_job_info(job_id)
    assert err.value.status == 404
    assert job_id not in {j.submission_id for j in client.list_jobs()}


@pytest.mark.timeout(60)
def test_requests_without_the_token_get_401(jobs_cluster):
    for method, path, body in (
        ("GET", "/api/version", None),
        ("GET", "/api/jobs/", None),
        ("POST", "/api/jobs/", b'{"entrypoint": "echo pwned"}'),
        ("GET", "/api/jobs/x/logs", None),
        ("POST", "/api/jobs/x/stop", None),
        ("DELETE", "/api/jobs/x", None),
        ("GET", "/no/such/route", None),
    ):
        status, reply = http(jobs_cluster + path, method, body, auth=False)
        assert status == 401 and "token" in reply["error"], (path, status, reply)
        status, reply = http(jobs_cluster + path, method, body, headers={"Authorization": "Bearer nope"})
        assert status == 401, (path, status, reply)
    assert "echo pwned" not in {j.entrypoint for j in JobSubmissionClient(jobs_cluster).list_jobs()}


@pytest.mark.timeout(60)
def test_sdk_without_a_token_is_told_how_to_get_one(jobs_cluster, monkeypatch):
    from skate.job_submission import sdk

    monkeypatch.setattr(sdk, "_local_sessions", lambda: [])  # as on another machine
    with pytest.raises(JobSubmissionError, match="SKATE_AUTH_TOKEN") as err:
        JobSubmissionClient(jobs_cluster)
    assert err.value.status == 401
    explicit = JobSubmissionClient(jobs_cluster, headers={"Authorization": f"Bearer {token()}"})
    assert explicit.get_version() == "1"


@pytest.mark.timeout(60)
def test_cross_origin_posts_are_refused(jobs_cluster):
    body = json.dumps({"entrypoint": "echo from-a-web-page", "submission_id": "cross_origin"}).encode()
    for origin in ("http://evil.example", "null", "http://127.0.0.1:1"):
        status, reply = http(jobs_cluster + "/api/jobs/", "POST", body, headers={"Origin": origin})
        assert status == 403 and "cross-origin" in reply["error"], (origin, status, reply)
    status, _ = http(jobs_cluster + "/api/jobs/cross_origin")
    assert status == 404  # nothing was started
    same = jobs_cluster  # a page of the dashboard itself may post
    status, reply = http(jobs_cluster + "/api/jobs/x/stop", "POST", headers={"Origin": same})
    assert status == 404, reply


@pytest.mark.timeout(60)
def test_bad_input_is_a_clear_error_and_the_server_keeps_serving(jobs_cluster, client):
    url = jobs_cluster + "/api/jobs/"
    cases = [
        (b'{"entrypoint": ""}', 400, "entrypoint must be a non-empty"),
        (b'{"entrypoint": "   "}', 400, "entrypoint must be a non-empty"),
        (b'{"submission_id": "x"}', 400, "entrypoint must be a str"),
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"entrypoint": "echo", "runtime_env": {"nonsense": 1}}', 400, "unknown field"),
        (b'{"entrypoint": "echo", "runtime_env": {"env_vars": {"A": 1}}}', 400, "env_vars"),
        (b'{"entrypoint": "echo", "runtime_env": "pip"}', 400, "runtime_env must be a dict"),
        (b'{"entrypoint": "echo", "runtime_env": {"working_dir": "/no/such/dir"}}', 400, "not a directory"),
        (b'{"entrypoint": "echo", "submission_id": "../../etc"}', 400, "submission_id"),
        (b'{"entrypoint": "echo", "bogus": 1}', 400, "unknown field"),
    ]
    for body, code, needle in cases:
        status, reply = http(url, "POST", body, headers={"Content-Type": "application/json"})
        assert status == code and needle in reply["error"], (body, status, reply)
    for method, path in (
        ("GET", "/api/jobs/nope"),
        ("GET", "/api/jobs/nope/logs"),
        ("POST", "/api/jobs/nope/stop"),
        ("DELETE", "/api/jobs/nope"),
    ):
        status, reply = http(jobs_cluster + path, method)
        assert status == 404 and reply["error"] == "Job nope does not exist.", (path, status, reply)
    status, reply = http(jobs_cluster + "/api/nothing/here")
    assert status == 404 and "error" in reply
    # duplicate submission id
    client.submit_job(entrypoint="echo once", submission_id="dup_id")
    with pytest.raises(JobSubmissionError, match="already exists") as err:
        client.submit_job(entrypoint="echo twice", submission_id="dup_id")
    assert err.value.status == 400
    assert wait_status(client, "dup_id", ("SUCCEEDED", "FAILED")) == "SUCCEEDED"
    assert client.get_job_logs("dup_id").strip() == "once"
    # ... and it still serves
    assert http(jobs_cluster + "/api/version")[0] == 200
    assert any(j.submission_id == "dup_id" for j in client.list_jobs())


@pytest.mark.timeout(30)
def test_unreachable_server_is_a_connection_error(jobs_cluster):
    from tests.integration._cluster_helpers import free_port

    with pytest.raises(ConnectionError, match="Failed to connect"):
        JobSubmissionClient(f"http://127.0.0.1:{free_port()}")


@pytest.mark.timeout(30)
def test_address_from_the_environment(jobs_cluster, monkeypatch):
    monkeypatch.setenv("SKATE_ADDRESS", jobs_cluster)
    assert JobSubmissionClient().address == jobs_cluster
    monkeypatch.delenv("SKATE_ADDRESS")
    monkeypatch.setenv("RAY_ADDRESS", _api._node.address)
    assert JobSubmissionClient().address == jobs_cluster  # a cluster address: its dashboard
