"""Jobs: the REST API (`routes`), the dashboard's job manager and the per-job supervisor actor.

`setup` imports the routes (and aiohttp) only when the dashboard calls it: a worker that
runs a job's supervisor imports `supervisor` through this package, and must not pay for
the web server's imports (they were most of a job's start-up time).
"""

from __future__ import annotations

from typing import Any


def setup(app: Any, ctx: Any) -> None:
    from skate.dashboard.modules.job.routes import setup as setup_routes

    setup_routes(app, ctx)


__all__ = ["setup"]
