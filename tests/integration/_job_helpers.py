"""Shared by the job tests: a private cluster with its dashboard, raw HTTP, waiting for a job."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

import pytest

import skate
from skate import _api


def jobs_cluster_fixture():
    """For a module fixture: a private 2-CPU cluster with its dashboard; yields its URL."""
    from tests.conftest import assert_no_leftovers

    if skate.is_initialized():
        skate.shutdown()
    os.environ["SKATE_JOB_STOP_WAIT_TIME_S"] = "1"  # the workers inherit it: quick stops
    ctx = skate.init(num_cpus=2, include_dashboard=True)
    assert ctx.dashboard_url, ctx
    yield "http://" + ctx.dashboard_url
    skate.shutdown()
    os.environ.pop("SKATE_JOB_STOP_WAIT_TIME_S", None)
    assert_no_leftovers()


def token() -> str:
    assert _api._node is not None
    return _api._node.token.decode()


def http(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None, auth: bool = True
) -> tuple[int, object]:
    """(status, parsed JSON body) of one request; errors are returned, not raised."""
    hdrs = dict(headers or {})
    if auth:
        hdrs.setdefault("Authorization", f"Bearer {token()}")
    request = urllib.request.Request(url, data=body, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_status(client, job_id: str, wanted: tuple[str, ...], timeout: float = 60) -> str:
    """Poll until the job's status is one of `wanted`; its status (fails the test on timeout)."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = str(client.get_job_status(job_id))
        if status in wanted:
            return status
        time.sleep(0.1)
    pytest.fail(f"job {job_id} still {status} after {timeout}s; logs: {client.get_job_logs(job_id)!r}")


def wait_for(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")
