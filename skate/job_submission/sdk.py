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
import logging
import os
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from skate._job_state import JobStatus
from skate.exceptions import JobSubmissionError
from skate.job_submission.models import JobDetails, JobInfo
from skate.runtime_env.upload import localize

logger = logging.getLogger("skate.job_submission")

DEFAULT_TIMEOUT_S = 30.0
UPLOAD_TIMEOUT_S = 600.0  # a package may be hundreds of MiB


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

    def _request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        """One request (a JSON body, or `raw` bytes); its parsed JSON answer. JobSubmissionError
        when the server refuses (with its status code), ConnectionError when there is none."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = dict(self._headers)
        if raw is not None:
            headers["Content-Type"] = "application/octet-stream"
        elif data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self._address + path, data=data, method=method, headers=headers)
        try:
            timeout = UPLOAD_TIMEOUT_S if raw is not None else DEFAULT_TIMEOUT_S
            with urllib.request.urlopen(request, timeout=timeout) as response:
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

    # -- packages ------------------------------------------------------------------------------

    def _package_path(self, uri: str) -> str:
        protocol, _, name = uri.partition("://")
        return f"/api/packages/{protocol}/{name}"

    def _package_exists(self, uri: str) -> bool:
        try:
            self._request("GET", self._package_path(uri))
        except JobSubmissionError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _upload_package_if_needed(self, data: bytes, uri: str) -> str:
        """Upload a package unless the cluster has it already (asked first: each content hash
        crosses the network once); its URI."""
        if self._package_exists(uri):
            logger.info("Package %s already exists, skipping upload.", uri)
            return uri
        logger.info("Uploading package %s (%d bytes).", uri, len(data))
        self._request("PUT", self._package_path(uri), raw=data)
        logger.info("Finished uploading package %s.", uri)
        return uri

    def _upload_local_packages(self, runtime_env: dict[str, Any]) -> dict[str, Any]:
        """The env with its local working_dir/py_modules uploaded (gcs:// URIs in their place)."""
        if not isinstance(runtime_env, dict) or not (
            runtime_env.get("working_dir") or runtime_env.get("py_modules")
        ):
            return runtime_env
        return localize(runtime_env, self._upload_package_if_needed)

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
        get_job_status, get_job_logs or tail_job_logs. A local `working_dir` or `py_modules`
        of the runtime env is packed and uploaded first (only if the cluster lacks it); the
        job runs in the unpacked copy. packaging.PackageTooLargeError (a ValueError) if one
        is over the size limit."""
        body: dict[str, Any] = {
            "entrypoint": entrypoint,
            "submission_id": submission_id or job_id,
            "runtime_env": self._upload_local_packages(runtime_env or {}),
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
