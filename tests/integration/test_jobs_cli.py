"""`skate job ...` against a head started with `skate start --head`, output and exit codes checked."""

from __future__ import annotations

import json
import re
import sys

import pytest

import skate
from tests.conftest import assert_no_leftovers
from tests.integration._cluster_helpers import cli_env, free_port, run_cli

PY = sys.executable


@pytest.fixture(scope="module")
def head():
    """A head started by the CLI with the compat test's flags; yields its dashboard URL."""
    gcs_port, dash_port, client_port = free_port(), free_port(), free_port()
    out = run_cli(
        "start", "--head", "--port", str(gcs_port), "--num-cpus", "2",
        "--ray-client-server-port", str(client_port),
        "--dashboard-port", str(dash_port), "--include-dashboard", "true",
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    url = f"http://127.0.0.1:{dash_port}"
    assert f"Dashboard and job API:       {url}" in out.stdout, out.stdout
    # Connected as a driver while the module runs, so the per-test leftover check waits for the end.
    skate.init(address=f"127.0.0.1:{gcs_port}")
    yield {"url": url, "address": f"127.0.0.1:{gcs_port}"}
    skate.shutdown()
    stopped = run_cli("stop", timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert_no_leftovers()


def job(*args: str, env: dict | None = None, timeout: float = 90):
    return run_cli("job", *args, timeout=timeout, env=env)


def _submission_id(stdout: str) -> str:
    match = re.search(r"Job '([^']+)' submitted successfully", stdout)
    assert match, stdout
    return match.group(1)


@pytest.mark.timeout(120)
def test_submit_follows_the_log_and_exits_with_the_jobs_outcome(head):
    script = "import skate; skate.init(); print('job says', skate.get(skate.remote(lambda: 6 * 7).remote()))"
    out = job("submit", "--address", head["url"], "--", PY, "-c", script)
    assert out.returncode == 0, out.stdout + out.stderr
    job_id = _submission_id(out.stdout)
    lines = out.stdout.splitlines()
    assert lines[0] == f"Job submission server address: {head['url']}"
    assert f"    skate job logs {job_id}" in lines and f"    skate job stop {job_id}" in lines
    assert "Tailing logs until the job exits (disable with --no-wait):" in lines
    assert "job says 42" in lines
    assert lines[-2] == f"Job '{job_id}' succeeded"

    failed = job("submit", "--address", head["url"], "--submission-id", "cli_fail", "--", "echo oops; exit 3")
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "oops" in failed.stdout and "Job 'cli_fail' failed" in failed.stdout
    assert "Status message: Job entrypoint command failed with exit code 3" in failed.stdout


@pytest.mark.timeout(120)
def test_no_wait_status_logs_stop_list_delete(head, tmp_path):
    env_json = json.dumps({"env_vars": {"GREETING": "hello"}})
    out = job(
        "submit", "--address", head["url"], "--no-wait", "--submission-id", "cli_long",
        "--runtime-env-json", env_json, "--working-dir", str(tmp_path),
        "--", f"echo $GREETING from $(pwd); {PY} -c 'import time; time.sleep(300)'",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert _submission_id(out.stdout) == "cli_long" and "Tailing logs" not in out.stdout
    deadline_out = None
    for _ in range(300):
        deadline_out = job("logs", "cli_long", "--address", head["url"])
        if "hello from" in deadline_out.stdout:
            break
    # --working-dir was uploaded: the job runs in the unpacked copy, as Ray's does.
    assert deadline_out is not None and deadline_out.stdout.startswith("hello from "), deadline_out
    assert "_skate_pkg_" in deadline_out.stdout, deadline_out
    status = job("status", "cli_long", "--address", head["url"])
    assert status.returncode == 0
    assert status.stdout == "Status for job 'cli_long': RUNNING\nStatus message: Job is currently running.\n"
    listed = job("list", "--address", head["url"])
    assert listed.returncode == 0
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["SUBMISSION_ID", "JOB_ID", "TYPE", "STATUS", "ENTRYPOINT"]
    assert any(r.split()[:4] == ["cli_long", "-", "SUBMISSION", "RUNNING"] for r in rows), listed.stdout
    busy = job("delete", "cli_long", "--address", head["url"])
    assert busy.returncode == 1 and "non-terminal state RUNNING" in busy.stderr
    stop = job("stop", "cli_long", "--address", head["url"])
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.splitlines() == [
        "Attempting to stop job 'cli_long'",
        "Waiting for job 'cli_long' to exit (disable with --no-wait):",
        "Job 'cli_long' was stopped",
    ]
    again = job("stop", "cli_long", "--address", head["url"])
    assert "Job 'cli_long' has already ended: STOPPED" in again.stdout
    deleted = job("delete", "cli_long", "--address", head["url"])
    assert deleted.returncode == 0 and deleted.stdout == "Job 'cli_long' deleted successfully\n"


@pytest.mark.timeout(120)
def test_logs_follow_prints_until_the_job_ends(head):
    code = "import time\nfor i in range(3):\n    print('tick', i); time.sleep(0.3)"
    out = job("submit", "--address", head["url"], "--no-wait", "--", PY, "-c", code)
    job_id = _submission_id(out.stdout)
    follow = job("logs", job_id, "--follow", "--address", head["url"])
    assert follow.returncode == 0, follow.stderr
    assert follow.stdout.splitlines() == ["tick 0", "tick 1", "tick 2"]


@pytest.mark.timeout(60)
def test_address_from_skate_address_or_ray_address(head):
    for var, value in (
        ("SKATE_ADDRESS", head["url"]),
        ("RAY_ADDRESS", head["url"]),
        ("RAY_ADDRESS", head["address"]),
    ):
        out = job("list", env=cli_env(**{var: value}))
        assert out.returncode == 0 and out.stdout.startswith("SUBMISSION_ID"), (var, value, out.stderr)
    bad = job("list", env=cli_env(SKATE_ADDRESS=f"http://127.0.0.1:{free_port()}"))
    assert bad.returncode == 1 and "Failed to connect to the Skate job server" in bad.stderr


@pytest.mark.timeout(60)
def test_errors_are_one_line_and_exit_1(head):
    for verb in ("status", "logs", "stop", "delete"):
        out = job(verb, "no_such_job", "--address", head["url"])
        assert out.returncode == 1, (verb, out.stdout, out.stderr)
        assert out.stderr.strip().splitlines() == [
            "Error: Request failed with status code 404: Job no_such_job does not exist."
        ], (verb, out.stderr)
    empty = job("submit", "--address", head["url"], "--", " ")
    assert empty.returncode == 1 and "entrypoint must be a non-empty" in empty.stderr
    bad_env = job("submit", "--address", head["url"], "--runtime-env-json", "{not json", "--", "echo")
    assert bad_env.returncode == 2 and "--runtime-env-json must be JSON" in bad_env.stderr
    missing = job("submit", "--address", head["url"])
    assert missing.returncode == 2 and "ENTRYPOINT" in missing.stderr


@pytest.mark.timeout(120)
def test_include_dashboard_false_starts_no_dashboard(head):
    port = free_port()
    out = run_cli("start", "--head", "--port", str(port), "--num-cpus", "1", "--include-dashboard", "false")
    try:
        assert out.returncode == 0, out.stderr
        assert "Dashboard" not in out.stdout
        no_server = job("list", "--address", f"127.0.0.1:{port}")
        assert no_server.returncode == 1 and "runs no dashboard" in no_server.stderr
        not_http = job("list", "--address", f"http://127.0.0.1:{port}")  # the GCS's port
        assert not_http.returncode == 1 and "does not speak HTTP" in not_http.stderr, not_http.stderr
    finally:
        # stop only that head: its session is the one whose cluster.json names its port
        from skate._node import stop_detached
        from skate.scripts.attach import find_sessions

        for session in find_sessions(f"127.0.0.1:{port}"):
            stop_detached(session["session_dir"])
