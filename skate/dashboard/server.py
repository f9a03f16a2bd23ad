"""The dashboard's HTTP server: an aiohttp app of plug-in route modules behind one guard.

A route module (see skate.dashboard.main.ROUTE_MODULES) is any module with
`setup(app: web.Application, ctx: DashboardContext) -> None`; it adds its routes, and may add
startup/cleanup hooks to the app. Every request passes `guard` first, which follows
`skate.dashboard.auth.authorize`:

- a browser request from another origin (an `Origin` header whose host differs from the
  request's `Host`) that could change something (not GET/HEAD/OPTIONS, or a websocket
  upgrade) is refused with 403: a web page the user visits cannot drive the job API;
- a request needs `Authorization: Bearer <cluster token>` (compared in constant time) or the
  web page's session cookie (see `auth`); without either it is refused with 401, as JSON, or
  with the login form when a browser asks for a page;
- a page's `?token=<cluster token>` sets the cookie and redirects to the same URL without it.

Errors are JSON (`{"error": "..."}`) on every API path, unknown routes included, and one failing
request never takes the server down. The token never reaches a log (no access log; errors name
the path, never the query). The server talks to the GCS as an ordinary client (`GcsClient`: one
authenticated connection, opened again if it drops).
"""

from __future__ import annotations

import asyncio
import errno
import html
import json
import logging
import os
import pathlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from skate.dashboard import auth
from skate.protocol import Connection, ConnectionClosed, connect

logger = logging.getLogger("skate.dashboard")

SAFE_METHODS = auth.SAFE_METHODS


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
    """What route modules share: the cluster's coordinates, a GCS client, and the web page's
    session cookie value (derived from the token and a nonce of this process)."""

    session_dir: str
    gcs_address: str
    token: bytes
    gcs: GcsClient
    extras: dict[str, Any] = field(default_factory=dict)  # per-module state, by module name
    session: str = ""
    open_paths: set[str] = field(default_factory=set)  # routes that need no credentials (login)

    def __post_init__(self) -> None:
        if not self.session:
            self.session = auth.session_value(self.token, os.urandom(16))


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


STATIC_DIR = pathlib.Path(__file__).parent / "static"
PAGE_HEADERS = {
    # Scripts and styles from this server only; no framing (clickjacking); no Referer (a URL
    # with ?token= never leaks to another site, though it is stripped at once anyway).
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def wants_page(request: web.Request) -> bool:
    """A browser navigating to a page (not a script fetching JSON)."""
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("Accept", "")


def login_page(status: int = 401, error: str = "") -> web.Response:
    """The login form (static/login.html), with `error` shown above it."""
    text = (STATIC_DIR / "login.html").read_text()
    note = f'<p class="error">{html.escape(error)}</p>' if error else ""
    headers = dict(
        PAGE_HEADERS,
        **{
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "form-action 'self'; frame-ancestors 'none'"
        },
    )
    return web.Response(
        text=text.replace("<!--ERROR-->", note), status=status, content_type="text/html", headers=headers
    )


def session_cookie(response: web.StreamResponse, value: str) -> None:
    """Set the session cookie: not readable by scripts, never sent by another site."""
    response.set_cookie(auth.SESSION_COOKIE, value, httponly=True, samesite="Strict", path="/")


def _without_token(request: web.Request) -> str:
    query = [(k, v) for k, v in request.query.items() if k != auth.TOKEN_PARAM]
    return str(request.rel_url.with_query(query)) if query else request.rel_url.path


def make_guard(ctx: DashboardContext) -> Callable:
    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable]) -> web.StreamResponse:
        verdict = auth.authorize(
            request.method,
            request.headers,
            request.cookies,
            request.query.get(auth.TOKEN_PARAM),
            request.host or "",
            ctx.token,
            ctx.session,
            open_path=request.path in ctx.open_paths,
        )
        if verdict.outcome == auth.FORBID:
            return json_error(403, verdict.reason)
        if verdict.outcome == auth.UNAUTHORIZED:
            if wants_page(request):
                return login_page(401, "" if verdict.reason.startswith("missing") else verdict.reason)
            return web.json_response(
                {"error": verdict.reason}, status=401, headers={"WWW-Authenticate": "Bearer"}
            )
        if verdict.outcome == auth.SET_COOKIE:
            response = web.Response(
                status=303, headers={"Location": _without_token(request), "Cache-Control": "no-store"}
            )
            session_cookie(response, ctx.session)
            return response
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
    app = web.Application(middlewares=[make_guard(ctx)], client_max_size=64 * 1024 * 1024)
    for module in modules:
        module.setup(app, ctx)

    async def close_gcs(_app: web.Application) -> None:
        ctx.gcs.close()

    app.on_cleanup.append(close_gcs)
    return app


async def serve(
    app: web.Application, host: str, port: int, fallback: bool = False
) -> tuple[web.AppRunner, str]:
    """Start serving; (runner, the URL it is reachable at). With `fallback`, a taken `port`
    (another head's dashboard on the default one) means any free port instead."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        if not (fallback and exc.errno == errno.EADDRINUSE):
            await runner.cleanup()
            raise
        site = web.TCPSite(runner, host, 0)
        await site.start()
    server: Any = site._server
    sockets = server.sockets if server is not None else []
    bound = sockets[0].getsockname()[1] if sockets else port
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return runner, f"http://{shown}:{bound}"
