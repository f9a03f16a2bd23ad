"""The job REST API, with Ray's paths and JSON shapes.

    POST   /api/jobs/                 submit: {"job_id", "submission_id"}
    GET    /api/jobs/                 every job (submitted ones and plain drivers): [JobDetails]
    GET    /api/jobs/{id}             one job's JobDetails
    GET    /api/jobs/{id}/logs        {"logs": "..."}
    GET    /api/jobs/{id}/logs/tail   websocket: the log as text messages, closed when the job ends
    POST   /api/jobs/{id}/stop        {"stopped": bool} (false when it had already ended)
    DELETE /api/jobs/{id}             {"deleted": true} (a job that has ended only)
    GET|PUT /api/packages/{protocol}/{name}   runtime-env packages (see `packages`)

Bad input is a 400 and an unknown id a 404, both `{"error": "..."}`.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from skate import _job_state
from skate.dashboard.modules.job import packages
from skate.dashboard.modules.job.manager import BadRequest, JobManager, NotFound
from skate.dashboard.server import DashboardContext, json_error

TAIL_POLL_S = 0.02  # a follower sees a new line this soon (a local read, or one call to a remote supervisor)
STATUS_POLL_S = 0.5
_PUBLIC_DROP = ("driver_log_path",)


def _public(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in _PUBLIC_DROP}


def setup(app: web.Application, ctx: DashboardContext) -> None:
    manager = JobManager(ctx)
    ctx.extras["jobs"] = manager

    async def start(_app: web.Application) -> None:
        manager.start_in_background()

    async def close(_app: web.Application) -> None:
        await manager.close()

    app.on_startup.append(start)
    app.on_shutdown.append(close)

    def guarded(handler):
        async def wrapper(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except BadRequest as exc:
                return json_error(400, str(exc))
            except NotFound as exc:
                return json_error(404, exc.args[0])

        return wrapper

    async def submit(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text() or "null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the request body is not valid JSON: {exc}") from None
        submission_id = await manager.submit(body)
        return web.json_response({"job_id": submission_id, "submission_id": submission_id})

    async def list_jobs(request: web.Request) -> web.Response:
        return web.json_response([_public(r) for r in await manager.list_jobs()])

    async def get_job(request: web.Request) -> web.Response:
        record = await manager.with_driver(await manager.require(request.match_info["job_id"]))
        return web.json_response(_public(record))

    async def get_logs(request: web.Request) -> web.Response:
        record = await manager.require(request.match_info["job_id"])
        return web.json_response({"logs": (await manager.read_logs(record)).decode(errors="replace")})

    async def tail_logs(request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job_id"]
        record = await manager.require(job_id)
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        offset = 0
        loop = asyncio.get_running_loop()
        next_status = 0.0
        ended = _job_state.status_of(record).is_terminal()
        while not ws.closed:
            chunk = await manager.read_logs(record, offset, whole=False)
            if chunk:
                offset += len(chunk)
                try:
                    await ws.send_str(chunk.decode(errors="replace"))
                except ConnectionError:  # the follower went away
                    break
                continue
            if ended:
                break
            if loop.time() >= next_status:
                next_status = loop.time() + STATUS_POLL_S
                record = await manager.get_record(record["submission_id"]) or record
                # One more read after the job ended: its last lines were written before that.
                ended = _job_state.status_of(record).is_terminal()
                continue
            await asyncio.sleep(TAIL_POLL_S)
        await ws.close()
        return ws

    async def stop(request: web.Request) -> web.Response:
        return web.json_response({"stopped": await manager.stop(request.match_info["job_id"])})

    async def delete(request: web.Request) -> web.Response:
        return web.json_response({"deleted": await manager.delete(request.match_info["job_id"])})

    app.router.add_post("/api/jobs/", guarded(submit))
    app.router.add_get("/api/jobs/", guarded(list_jobs))
    app.router.add_get("/api/jobs/{job_id}", guarded(get_job))
    app.router.add_get("/api/jobs/{job_id}/logs", guarded(get_logs))
    app.router.add_get("/api/jobs/{job_id}/logs/tail", guarded(tail_logs))
    app.router.add_post("/api/jobs/{job_id}/stop", guarded(stop))
    app.router.add_delete("/api/jobs/{job_id}", guarded(delete))
    packages.add_routes(app, ctx)
