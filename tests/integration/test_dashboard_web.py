"""The dashboard web page: its login (token form, token in the URL once, session cookie), the
guard's cross-origin rules for cookie-authenticated requests, and a headless-Chromium check that
the page shows the nodes, a running job and an actor (screenshot: test-artifacts/dashboard.png).
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import urllib.parse

import pytest

import skate
from skate.cluster_utils import Cluster
from skate.dashboard.auth import SESSION_COOKIE
from skate.job_submission import JobStatus, JobSubmissionClient
from tests.integration._cluster_helpers import cli_env, node_args
from tests.integration._helpers import wait_for

REPO = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = pathlib.Path(os.environ.get("SKATE_TEST_ARTIFACTS", REPO / "test-artifacts"))
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


@skate.remote(num_cpus=0)
class Greeter:
    def hello(self):
        return "hello"


@pytest.fixture(scope="module")
def dash():
    if skate.is_initialized():
        skate.shutdown()
    cluster = Cluster(
        initialize_head=True,
        head_node_args=node_args(num_cpus=1, include_dashboard=True),
    )
    try:
        other = cluster.add_node(**node_args(num_cpus=1))
        skate.init(address=cluster.address)
        greeter = Greeter.options(name="web-greeter").remote()
        assert skate.get(greeter.hello.remote()) == "hello"
        url = cluster.head_node.dashboard_url
        url = url if url.startswith("http") else "http://" + url
        token = cluster.head_node.token.decode()
        jobs = JobSubmissionClient(url, headers={"Authorization": f"Bearer {token}"})
        job = jobs.submit_job(
            entrypoint="python -c \"import time; print('web-job-up', flush=True); time.sleep(120)\""
        )
        assert wait_for(lambda: jobs.get_job_status(job) == JobStatus.RUNNING, 30)
        parts = urllib.parse.urlsplit(url)
        yield {
            "url": url,
            "host": parts.hostname,
            "port": parts.port,
            "token": token,
            "job": job,
            "jobs": jobs,
            "nodes": [cluster.head_node.node_id, other.node_id],
            "actor": greeter._actor_id.hex(),
            "session_dir": cluster.head_node.session_dir,
            "cluster": cluster,
        }
        jobs.stop_job(job)
        wait_for(lambda: jobs.get_job_status(job) == JobStatus.STOPPED, 15)
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()


def _request(dash, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    """(status, headers, body) without following redirects."""
    conn = http.client.HTTPConnection(dash["host"], dash["port"], timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def _login_cookie(dash) -> str:
    status, headers, _ = _request(dash, "GET", "/?token=" + urllib.parse.quote(dash["token"]))
    assert status == 303
    morsel = headers["Set-Cookie"]
    name, _, rest = morsel.partition("=")
    assert name == SESSION_COOKIE
    return rest.split(";")[0]


HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.mark.timeout(60)
def test_page_without_token_is_the_login_form(dash):
    status, headers, body = _request(dash, "GET", "/", HTML)
    assert status == 401
    assert headers["Content-Type"].startswith("text/html")
    assert b'<form method="post" action="/login"' in body and b'name="token"' in body
    status, _, body = _request(dash, "GET", "/api/v0/nodes")
    assert status == 401 and "error" in json.loads(body)
    status, _, _ = _request(dash, "GET", "/static/app.js")
    assert status == 401
    status, _, body = _request(dash, "GET", "/login", HTML)  # the form itself needs no token
    assert status == 200 and b'name="token"' in body


@pytest.mark.timeout(60)
def test_token_in_url_sets_cookie_and_redirects_without_it(dash):
    status, headers, _ = _request(dash, "GET", "/?token=" + urllib.parse.quote(dash["token"]) + "&x=1")
    assert status == 303
    assert headers["Location"] == "/?x=1"  # the token is stripped, other parameters stay
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(SESSION_COOKIE + "=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert dash["token"] not in cookie  # a value derived from the token, never the token


@pytest.mark.timeout(60)
def test_cookie_authorizes_the_page_and_its_json(dash):
    cookie = {"Cookie": f"{SESSION_COOKIE}={_login_cookie(dash)}"}
    status, headers, body = _request(dash, "GET", "/", {**cookie, **HTML})
    assert status == 200 and b'src="/static/app.js"' in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, headers, body = _request(dash, "GET", "/static/app.js", cookie)
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    status, _, body = _request(dash, "GET", "/api/v0/nodes", cookie)
    assert status == 200
    assert {r["node_id"] for r in json.loads(body)["data"]["result"]["result"]} == set(dash["nodes"])
    status, _, body = _request(dash, "GET", "/api/jobs/", cookie)
    assert status == 200 and dash["job"] in {j.get("submission_id") for j in json.loads(body)}
    status, _, body = _request(dash, "GET", "/api/skate/node_stats", cookie)
    stats = json.loads(body)
    assert status == 200 and {s["node_id"] for s in stats} == set(dash["nodes"])
    assert all(s["mem_total"] > 0 for s in stats)
    status, _, _ = _request(dash, "GET", "/static/..%2Ftoken", cookie)
    assert status == 404


@pytest.mark.timeout(60)
def test_login_form_post(dash):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    good = urllib.parse.urlencode({"token": dash["token"]}).encode()
    status, headers, _ = _request(dash, "POST", "/login", form, good)
    assert status == 303 and headers["Location"] == "/"
    assert headers["Set-Cookie"].startswith(SESSION_COOKIE + "=")
    bad = urllib.parse.urlencode({"token": "not-the-token"}).encode()
    status, headers, body = _request(dash, "POST", "/login", form, bad)
    assert status == 401 and b"Wrong cluster token" in body and "Set-Cookie" not in headers
    # A login posted by another site's page is refused (no login CSRF).
    status, _, _ = _request(dash, "POST", "/login", {**form, "Origin": "http://evil.example"}, good)
    assert status == 403


@pytest.mark.timeout(60)
def test_wrong_credentials_are_rejected(dash):
    status, headers, body = _request(dash, "GET", "/?token=wrong", HTML)
    assert status == 401 and b"wrong cluster token in the URL" in body and "Set-Cookie" not in headers
    status, _, _ = _request(dash, "GET", "/api/v0/nodes", {"Cookie": f"{SESSION_COOKIE}=forged"})
    assert status == 401
    status, _, _ = _request(dash, "GET", "/api/v0/nodes", {"Authorization": "Bearer wrong"})
    assert status == 401
    status, _, _ = _request(dash, "GET", "/api/v0/nodes", {"Authorization": f"Bearer {dash['token']}"})
    assert status == 200  # the SDK's way still works


@pytest.mark.timeout(60)
def test_cookie_cannot_change_things_from_another_origin(dash):
    cookie = {"Cookie": f"{SESSION_COOKIE}={_login_cookie(dash)}", "Content-Type": "application/json"}
    body = json.dumps({"entrypoint": "echo should-not-run"}).encode()
    for origin in ("http://evil.example", "null", f"http://localhost:{dash['port'] + 1}"):
        status, _, reply = _request(dash, "POST", "/api/jobs/", {**cookie, "Origin": origin}, body)
        assert status == 403, (origin, reply)
    status, _, reply = _request(dash, "POST", f"/api/jobs/{dash['job']}/stop", cookie)  # no Origin at all
    assert status == 403 and b"Origin" in reply
    assert dash["jobs"].get_job_status(dash["job"]) == JobStatus.RUNNING
    # The page's own origin may: a bad body reaches the handler (400), not the guard's refusal.
    same = {**cookie, "Origin": f"http://{dash['host']}:{dash['port']}"}
    status, _, reply = _request(dash, "POST", "/api/jobs/", same, b"[1]")
    assert status == 400, reply


@pytest.mark.timeout(60)
def test_token_never_reaches_the_logs(dash):
    _request(dash, "GET", "/?token=" + urllib.parse.quote(dash["token"]))
    _request(dash, "GET", "/api/v0/nodes", {"Authorization": f"Bearer {dash['token']}"})
    for path in glob.glob(os.path.join(dash["session_dir"], "logs", "*")):
        with open(path, "rb") as f:
            assert dash["token"].encode() not in f.read(), path


def _browser() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run_browser(browser: str, profile: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        *args,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=25)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.timeout(90)
def test_browser_shows_nodes_running_job_and_actor(dash, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip(f"no headless browser found (looked for {', '.join(BROWSERS)}; apt-get install chromium)")
    url = f"{dash['url']}/?token={urllib.parse.quote(dash['token'])}"
    dom = _run_browser(browser, tmp_path / "profile", "--dump-dom", url)
    text = dom.stdout.decode(errors="replace")
    assert 'data-loaded="true"' in text, (
        dom.returncode,
        dom.stderr.decode(errors="replace")[-2000:],
        text[:2000],
    )
    for node_id in dash["nodes"]:
        assert f'data-node-id="{node_id}"' in text
    assert dash["job"] in text and "s-running" in text
    assert dash["actor"] in text and "Greeter" in text
    assert "refresh failed" not in text
    shot = tmp_path / "dashboard.png"
    _run_browser(browser, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,900", url)
    assert shot.exists() and shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "dashboard.png")


@pytest.mark.timeout(90)
def test_job_logs_follow_shows_the_wait_for_a_pending_job(dash):
    jobs = dash["jobs"]
    job = jobs.submit_job(entrypoint="echo started-late", entrypoint_resources={"late": 1})
    env = dict(cli_env(SKATE_PROGRESS_INTERVAL_S="0.2"), SKATE_AUTH_TOKEN=dash["token"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "skate.scripts.cli", "job", "logs", "--follow", "--address", dash["url"], job],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stderr.readline()  # the first progress line: the job cannot start yet
        assert line.startswith(f"waiting for job '{job}' to start: still waiting ("), line
        assert jobs.get_job_status(job) == JobStatus.PENDING
        dash["cluster"].add_node(**node_args(num_cpus=1, resources={"late": 1}))  # now it can
        out, err = proc.communicate(timeout=60)  # the follow ends with the job
        assert proc.returncode == 0 and "started-late" in out, (out, err)
        assert jobs.get_job_status(job) == JobStatus.SUCCEEDED
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
