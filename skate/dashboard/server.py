"""The dashboard's HTTP server: an aiohttp app of plug-in route modules behind one guard.

A route module (see skate.dashboard.main.ROUTE_MODULES) is any module with
`setup(app: web.Application, ctx: DashboardContext) -> None`; it adds its routes, and may add
startup/cleanup hooks to the app. Every request passes `guard` first:

- a browser request from another origin (an `Origin` header whose host differs from the
  request's `Host`) that could change something (not GET/HEAD/OPTIONS, or a websocket
  upgrade) is refused with 403: a web page the user visits cannot drive the job API;
- a request without `Authorization: Bearer <cluster token>` is refused with 401 (the token
  compared in constant time).

Errors are JSON (`{"error": "..."}`) on every path, unknown routes included, and one failing
request never takes the server down. The server talks to the GCS as an ordinary client
(`GcsClient`: one authenticated connection, opened again if it drops).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from skate.protocol import Connection, ConnectionClosed, connect

logger = logging.getLogger("skate.dashboard")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class GcsClient:
    """Requests to the GCS over one connection, opened on first use and again after a drop.

    A request whose connection is lost (the GCS restarted: with durable storage it comes back
    at the same address with its tables) is sent again on a new connection, for up to
    `reconnect_s`; the KV requests the dashboard makes are idempotent, so a repeat is safe."""

    def __init__(self, address: str, token: bytes, reconnect_s: float = 60.0):
        self.address = address
        self.token = token
        self.reconnect_s = reconnect_s
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> Connection:
        async with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = await connect(self.address, self.token, name="dashboard-gcs", timeout=10)
            return self._conn

    async def call(self, method: str, payload: Any = None) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_s
        delay = 0.05
        while True:
            try:
                conn = await self._connection()
                return await conn.call(method, payload)
            except (ConnectionClosed, OSError, asyncio.TimeoutError) as exc:
                if loop.time() + delay > deadline:
                    raise ConnectionError(
                        f"the GCS at {self.address} did not answer for {self.reconnect_s:.0f} s: {exc}"
                    ) from None
                logger.info("GCS connection lost (%s); trying again in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def kv_get(self, namespace: bytes | None, key: bytes) -> bytes | None:
        return await self.call("kv_get", {"namespace": namespace, "key": key})

    async def kv_exists(self, namespace: bytes | None, key: bytes) -> bool:
        return bool(await self.call("kv_exists", {"namespace": namespace, "key": key}))

    async def kv_put(self, namespace: bytes | None, key: bytes, value: bytes, overwrite: bool = True) -> bool:
        """Store value; True if the key was new (with overwrite False an existing value stays)."""
        return bool(
            await self.call(
                "kv_put", {"namespace": namespace, "key": key, "value": value, "overwrite": overwrite}
            )
        )

    async def kv_del(self, namespace: bytes, key: bytes) -> int:
        return int(await self.call("kv_del", {"namespace": namespace, "key": key}))

    async def kv_keys(self, namespace: bytes, prefix: bytes) -> list[bytes]:
        return list(await self.call("kv_keys", {"namespace": namespace, "prefix": prefix}))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close("dashboard stopping")
            self._conn = None


@dataclass
class DashboardContext:
    """What route modules share: the cluster's coordinates and a GCS client."""

    session_dir: str
    gcs_address: str
    token: bytes
    gcs: GcsClient
    extras: dict[str, Any] = field(default_factory=dict)  # per-module state, by module name


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _cross_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return origin == "null"  # an opaque origin (sandboxed page, file://) is never ours
    parts = urlsplit(origin)
    return parts.netloc.lower() != (request.host or "").lower()


def _authorized(request: web.Request, token: bytes) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token)


def make_guard(token: bytes) -> Callable:
    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable]) -> web.StreamResponse:
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if (request.method not in SAFE_METHODS or upgrade) and _cross_origin(request):
            return json_error(403, f"cross-origin request refused (Origin {request.headers.get('Origin')})")
        if not _authorized(request, token):
            return web.json_response(
                {"error": "missing or wrong cluster token: send 'Authorization: Bearer <token>'"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return json_error(exc.status, exc.reason or exc.text or "error")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return json_error(400, f"the request body is not valid JSON: {exc}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("%s %s failed", request.method, request.path)
            return json_error(500, f"{type(exc).__name__}: {exc}")

    return guard


def make_app(ctx: DashboardContext, modules: list[Any]) -> web.Application:
    """The app: the guard, then every route module's routes."""
    app = web.Application(middlewares=[make_guard(ctx.token)], client_max_size=64 * 1024 * 1024)
    for module in modules:
        module.setup(app, ctx)

    async def close_gcs(_app: web.Application) -> None:
        ctx.gcs.close()

    app.on_cleanup.append(close_gcs)
    return app


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start serving; (runner, the URL it is reachable at)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server: Any = site._server
    sockets = server.sockets if server is not None else []
    bound = sockets[0].getsockname()[1] if sockets else port
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return runner, f"http://{shown}:{bound}"
