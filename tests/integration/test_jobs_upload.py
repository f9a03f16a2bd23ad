"""Local working_dir/py_modules of a submitted job: packed and uploaded by the SDK (and so by
`skate job submit`) over the dashboard's package routes, once per content hash, and the job
runs in the unpacked copy; the routes refuse bad names, bad content and missing tokens."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from skate.exceptions import JobSubmissionError
from skate.job_submission import JobSubmissionClient
from skate.runtime_env import packaging
from skate.runtime_env.spec import package_uri
from tests.integration._cluster_helpers import cli_env, run_cli
from tests.integration._job_helpers import http, jobs_cluster_fixture, wait_status

PY = sys.executable


@pytest.fixture(scope="module")
def jobs_cluster():
    yield from jobs_cluster_fixture()


@pytest.fixture(scope="module")
def client(jobs_cluster):
    return JobSubmissionClient(jobs_cluster)


class CountingClient(JobSubmissionClient):
    """A client that records its package requests."""

    def __init__(self, address: str):
        self.calls: list[tuple[str, str]] = []
        super().__init__(address)

    def _request(self, method, path, body=None, raw=None):
        if path.startswith("/api/packages/"):
            self.calls.append((method, path))
        return super()._request(method, path, body, raw)


def _project(root, marker: str):
    """A working_dir with a module of its own and a py_module package beside it."""
    app = root / "app"
    app.mkdir()
    (app / "helper.py").write_text(f"VALUE = {marker!r}\n")
    (app / "main.py").write_text(
        textwrap.dedent(
            """
            import os
            import helper, mylib
            print("helper", helper.VALUE, "lib", mylib.NAME)
            print("cwd-has-main", os.path.exists("main.py"))
            """
        )
    )
    (app / ".gitignore").write_text("ignored.txt\n")
    (app / "ignored.txt").write_text("not uploaded\n")
    lib = root / "mylib"
    lib.mkdir()
    (lib / "__init__.py").write_text(f"NAME = 'mylib-ok'  # {marker}\n")  # content (and hash) per test
    return app, lib


@pytest.mark.timeout(120)
def test_sdk_uploads_working_dir_and_py_modules_once(jobs_cluster, tmp_path):
    app, lib = _project(tmp_path, "m1")
    client = CountingClient(jobs_cluster)
    env = {"working_dir": str(app), "py_modules": [str(lib)], "excludes": ["*.pyc"]}
    job_id = client.submit_job(entrypoint=f"{PY} main.py", runtime_env=env)
    assert wait_status(client, job_id, ("SUCCEEDED", "FAILED")) == "SUCCEEDED", client.get_job_logs(job_id)
    logs = client.get_job_logs(job_id)
    assert "helper m1 lib mylib-ok" in logs and "cwd-has-main True" in logs
    info = client.get_job_info(job_id)
    assert info.runtime_env["working_dir"].startswith("gcs://_skate_pkg_")
    assert info.runtime_env["py_modules"][0].startswith("gcs://_skate_pkg_")
    assert "excludes" not in info.runtime_env
    puts = [c for c in client.calls if c[0] == "PUT"]
    assert len(puts) == 2, client.calls  # the working_dir and the py_module

    # The same tree again: asked about, never sent.
    client.calls.clear()
    again = client.submit_job(entrypoint=f"{PY} main.py", runtime_env=env)
    assert wait_status(client, again, ("SUCCEEDED", "FAILED")) == "SUCCEEDED", client.get_job_logs(again)
    assert [m for m, _ in client.calls] == ["GET", "GET"], client.calls
    assert client.get_job_info(again).runtime_env["working_dir"] == info.runtime_env["working_dir"]


@pytest.mark.timeout(120)
def test_the_job_driver_and_its_tasks_see_the_uploaded_working_dir(client, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "shared.py").write_text("def twice(x):\n    return 2 * x\n")
    (app / "main.py").write_text(
        textwrap.dedent(
            """
            import skate, shared
            skate.init()
            @skate.remote
            def f(x):
                import shared
                return shared.twice(x)
            print("task says", skate.get(f.remote(21)))
            """
        )
    )
    job_id = client.submit_job(entrypoint=f"{PY} main.py", runtime_env={"working_dir": str(app)})
    assert wait_status(client, job_id, ("SUCCEEDED", "FAILED")) == "SUCCEEDED", client.get_job_logs(job_id)
    assert "task says 42" in client.get_job_logs(job_id)


@pytest.mark.timeout(120)
def test_cli_working_dir_and_runtime_env_json_upload(jobs_cluster, tmp_path):
    app, lib = _project(tmp_path, "cli")
    env = cli_env()
    out = run_cli(
        "job", "submit", "--address", jobs_cluster, "--working-dir", str(app),
        "--runtime-env-json", json.dumps({"py_modules": [str(lib)]}), "--", PY, "main.py",
        timeout=90, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "helper cli lib mylib-ok" in out.stdout
    assert out.stdout.count("Uploading package gcs://_skate_pkg_") == 2, out.stdout
    again = run_cli(
        "job", "submit", "--address", jobs_cluster, "--working-dir", str(app),
        "--runtime-env-json", json.dumps({"py_modules": [str(lib)]}), "--", PY, "main.py",
        timeout=90, env=env,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Uploading package" not in again.stdout
    assert again.stdout.count("already exists, skipping upload") == 2, again.stdout


@pytest.mark.timeout(60)
def test_a_tree_over_the_size_limit_is_refused_before_anything_is_sent(jobs_cluster, tmp_path, monkeypatch):
    app = tmp_path / "big"
    app.mkdir()
    (app / "data.bin").write_bytes(b"x" * 5000)
    (app / "small.py").write_text("x = 1\n")
    monkeypatch.setenv("SKATE_RUNTIME_ENV_MAX_PACKAGE_BYTES", "1000")
    client = CountingClient(jobs_cluster)
    with pytest.raises(packaging.PackageTooLargeError, match=r"data.bin \(4.9 KiB\)"):
        client.submit_job(entrypoint="true", runtime_env={"working_dir": str(app)})
    assert client.calls == []
    # The CLI says it in one line, exit status 1.
    out = run_cli(
        "job", "submit", "--address", jobs_cluster, "--working-dir", str(app), "--no-wait", "--", "true",
        env=cli_env(SKATE_RUNTIME_ENV_MAX_PACKAGE_BYTES="1000"),
    )  # fmt: skip
    assert out.returncode == 1 and "over the runtime_env package limit" in out.stderr, out.stderr
    # Leaving the big file out makes it fit.
    (app / ".gitignore").write_text("*.bin\n")
    job_id = client.submit_job(entrypoint=f"{PY} small.py", runtime_env={"working_dir": str(app)})
    assert wait_status(client, job_id, ("SUCCEEDED", "FAILED")) == "SUCCEEDED"


@pytest.mark.timeout(60)
def test_package_routes_refuse_bad_names_bad_content_and_no_token(jobs_cluster):
    data = b"PK\x05\x06" + b"\0" * 18  # an empty zip
    uri = package_uri(packaging.digest(data))
    name = uri.split("://", 1)[1]
    url = f"{jobs_cluster}/api/packages/gcs/{name}"
    for bad in ("evil.zip", "_skate_pkg_123.zip", "_skate_pkg_" + "g" * 24 + ".zip", "..%2F..%2Fetc"):
        status, body = http(f"{jobs_cluster}/api/packages/gcs/{bad}", "PUT", data)
        assert status == 400 and "invalid package name" in body["error"], (bad, body)
    status, body = http(f"{jobs_cluster}/api/packages/s3/{name}", "PUT", data)
    assert status == 400 and "protocol" in body["error"], body
    status, body = http(url, "PUT", data + b"tampered")
    assert status == 400 and "hashes to" in body["error"], body
    assert http(url, auth=False)[0] == 401
    assert http(url, "PUT", data, auth=False)[0] == 401
    assert http(url)[0] == 404  # nothing stored by the refused requests
    status, body = http(url, "PUT", data)
    assert status == 200 and body["uri"] == uri, body
    assert http(url)[0] == 200
    # Submitting with a URI nobody uploaded is refused up front.
    missing = package_uri("0" * 24)
    status, body = http(
        f"{jobs_cluster}/api/jobs/",
        "POST",
        b'{"entrypoint": "true", "runtime_env": {"working_dir": "%s"}}' % missing.encode(),
    )
    assert status == 400 and "not stored on this cluster" in body["error"], body


@pytest.mark.timeout(60)
def test_sdk_upload_without_the_token_is_refused(jobs_cluster, tmp_path):
    (tmp_path / "x.py").write_text("x = 1\n")
    client = CountingClient(jobs_cluster)
    client._headers["Authorization"] = "Bearer wrong"
    with pytest.raises(JobSubmissionError) as info:
        client.submit_job(entrypoint="true", runtime_env={"working_dir": str(tmp_path)})
    assert info.value.status == 401
    assert [m for m, _ in client.calls] == ["GET"]  # refused at the existence check: nothing sent
