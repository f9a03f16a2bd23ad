"""GET /api/version: the job API's version and Skate's, in Ray's shape."""

from __future__ import annotations

import os

from aiohttp import web

from skate.dashboard.server import DashboardContext

JOBS_API_VERSION = "1"


def setup(app: web.Application, ctx: DashboardContext) -> None:
    async def version(request: web.Request) -> web.Response:
        from skate import __version__

        return web.json_response(
            {
                "version": JOBS_API_VERSION,
                "ray_version": __version__,
                "ray_commit": "skate",
                "session_name": os.path.basename(ctx.session_dir),
            }
        )

    app.router.add_get("/api/version", version)
