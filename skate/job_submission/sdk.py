"""JobSubmissionClient: Ray's job SDK over the dashboard's REST API.

Where the job server is (`address`):
- None: SKATE_ADDRESS, else RAY_ADDRESS, else the newest head on this machine ("auto");
- "http://host:port" (or https): that server;
- "auto": the dashboard of the newest head node on this machine;
- "host:port": the dashboard of the local head whose cluster address that is, else
  http://host:port.

The cluster token is sent as `Authorization: Bearer`: from `headers` if they carry one, else
SKATE_AUTH_TOKEN, else the session of the head on this machine that runs that dashboard (as
`skate start --address` finds it), so on the head's machine nothing needs to be given.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from skate._job_state import JobStatus
from skate.exceptions import JobSubmissionError
from skate.job_submission.models import JobDetails, JobInfo

DEFAULT_TIMEOUT_S = 30.0


def _local_sessions() -> list[dict]:
    from skate.scripts.attach import find_sessions

    try:
        return find_sessions()
    except Exception:
        return []


def _host_port(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = (parts.hostname or "").lower()
    if host in ("localhost", "0.0.0.0", "::1"):
        host = "127.0.0.1"
    return host, parts.port


def resolve_address(address: str | None) -> tuple[str, bytes | None]:
    """(the job server's URL, the token of the local head serving it, if any)."""
    if address is None:
        address = os.environ.get("SKATE_ADDRESS") or os.environ.get("RAY_ADDRESS") or "auto"
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"address must be a URL such as 'http://127.0.0.1:8265', got {address!r}")
    address = address.strip().rstrip("/")
    every = _local_sessions()
    sessions = [s for s in every if s.get("dashboard_url")]
    if address == "auto":
        if not sessions:
            raise ConnectionError(
                "no Skate head node with a dashboard runs on this machine (start one with "
                "`skate start --head`), and no address was given (or SKATE_ADDRESS/RAY_ADDRESS)"
            )
        return sessions[0]["dashboard_url"], sessions[0]["token"]
    if address.startswith(("http://", "https://")):
        url = address
    else:
        for session in every:
            if session["gcs_address"].replace("tcp://", "") == address.replace("tcp://", ""):
                if not session.get("dashboard_url"):
                    raise ConnectionError(
                        f"the cluster at {address} runs no dashboard, so no job server "
                        "(its head was started with --include-dashboard false)"
                    )
                return session["dashboard_url"], session["token"]
        url = f"http://{address}"
    wanted = _host_port(url)
    for session in sessions:
        if _host_port(session["dashboard_url"]) == wanted:
            return url, session["token"]
    return url, None


class JobSubmissionClient:
    """Submit, follow and stop jobs on a cluster through its job server (the dashboard)."""

    def __init__(
        self,
        address: str | None = None,
        create_cluster_if_needed: bool = False,
        cookies: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        verify: bool | str = True,
    ):
        self._address, local_token = resolve_address(address)
        self._default_metadata = dict(metadata or {})
        self._headers = {str(k): str(v) for k, v in (headers or {}).items()}
        if cookies:
            self._headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        if not any(k.lower() == "authorization" for k in self._headers):
            token = os.environ.get("SKATE_AUTH_TOKEN", "").encode() or local_token
            if token:
                self._headers["Authorization"] = f"Bearer {token.decode()}"
        self._verify = verify
        self.get_version()  # fail here, clearly, if the server is not there or refuses us

    @property
    def address(self) -> str:
        return self._address

    # -- HTTP --------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self._address + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=DEFAULT_TIMEOUT_S) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                detail = json.loads(raw).get("error") or raw.decode(errors="replace")
            except (ValueError, AttributeError):
                detail = raw.decode(errors="replace")
            if exc.code == 401:
                detail += (
                    " (on the head's machine the token is found automatically; elsewhere set "
                    "SKATE_AUTH_TOKEN or pass headers={'Authorization': 'Bearer <token>'})"
                )
            raise JobSubmissionError(
                f"Request failed with status code {exc.code}: {detail}", exc.code
            ) from None
        except http.client.HTTPException as exc:
            raise ConnectionError(
                f"Failed to connect to the Skate job server at {self._address}: it does not speak HTTP "
                f"({type(exc).__name__}); is this the cluster's address rather than its dashboard's?"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectionError(
                f"Failed to connect to the Skate job server at {self._address}: {reason}"
            ) from None

    def get_version(self) -> str:
        return str(self._request("GET", "/api/version")["version"])

    # -- jobs --------------------------------------------------------------------------------

    def submit_job(
        self,
        *,
        entrypoint: str,
        job_id: str | None = None,
        runtime_env: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        submission_id: str | None = None,
        entrypoint_num_cpus: float | None = None,
        entrypoint_num_gpus: float | None = None,
        entrypoint_memory: int | None = None,
        entrypoint_resources: dict[str, float] | None = None,
    ) -> str:
        """Submit a job; its submission id. The job runs in the background: follow it with
        get_job_status, get_job_logs or tail_job_logs."""
        body: dict[str, Any] = {
            "entrypoint": entrypoint,
            "submission_id": submission_id or job_id,
            "runtime_env": runtime_env or {},
            "metadata": {**self._default_metadata, **(metadata or {})},
        }
        for name, value in (
            ("entrypoint_num_cpus", entrypoint_num_cpus),
            ("entrypoint_num_gpus", entrypoint_num_gpus),
            ("entrypoint_memory", entrypoint_memory),
            ("entrypoint_resources", entrypoint_resources),
        ):
            if value is not None:
                body[name] = value
        return str(self._request("POST", "/api/jobs/", body)["submission_id"])

    def get_job_info(self, job_id: str) -> JobDetails:
        return JobDetails.from_json(self._request("GET", f"/api/jobs/{job_id}"))

    def get_job_status(self, job_id: str) -> JobStatus:
        return self.get_job_info(job_id).status

    def list_jobs(self) -> list[JobDetails]:
        return [JobDetails.from_json(j) for j in self._request("GET", "/api/jobs/")]

    def get_job_logs(self, job_id: str) -> str:
        return str(self._request("GET", f"/api/jobs/{job_id}/logs")["logs"])

    def stop_job(self, job_id: str) -> bool:
        """Ask the job to stop (SIGTERM, then SIGKILL after a grace period); False if it had ended."""
        return bool(self._request("POST", f"/api/jobs/{job_id}/stop")["stopped"])

    def delete_job(self, job_id: str) -> bool:
        """Forget a job that has ended (its record and its log)."""
        return bool(self._request("DELETE", f"/api/jobs/{job_id}")["deleted"])

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """The job's log as it is written, chunk by chunk, until the job ends."""
        import aiohttp

        self.get_job_info(job_id)  # a 404 as a clear error, not a failed websocket handshake
        url = self._address.replace("http", "ws", 1) + f"/api/jobs/{job_id}/logs/tail"
        ssl: Any = self._verify is not False
        async with aiohttp.ClientSession(headers=self._headers) as session:
            async with session.ws_connect(url, ssl=ssl) as ws:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        yield msg.data
                    elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break


__all__ = ["JobInfo", "JobSubmissionClient"]
