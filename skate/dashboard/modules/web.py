"""The dashboard web page: plain HTML, CSS and JavaScript from skate/dashboard/static.

    GET  /                      the page (it polls the JSON APIs below every few seconds)
    GET  /static/<file>         its script and style sheet
    GET  /login, POST /login    the login form; a right token sets the session cookie
    POST /logout                forget the cookie
    GET  /api/skate/node_stats  each alive node's machine: CPU %, memory used/total (psutil)

No build step and nothing fetched from elsewhere: the files are the package's data. The guard
(skate.dashboard.server) authorizes every request but the login form's.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from skate.dashboard import auth
from skate.dashboard.server import (
    PAGE_HEADERS,
    STATIC_DIR,
    DashboardContext,
    login_page,
    session_cookie,
)
from skate.util.state.sources import ConnectedSources

CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def _static_files() -> dict[str, tuple[bytes, str]]:
    """Every servable file by name, read once: no path from a request ever reaches the disk."""
    out = {}
    for path in STATIC_DIR.iterdir():
        kind = CONTENT_TYPES.get(path.suffix)
        if kind and path.is_file() and path.name != "login.html":
            out[path.name] = (path.read_bytes(), kind)
    return out


def setup(app: web.Application, ctx: DashboardContext) -> None:
    files = _static_files()
    sources = ConnectedSources(ctx.gcs_address, ctx.token, name="dashboard-web")
    ctx.open_paths.add("/login")

    async def close(_app: web.Application) -> None:
        sources.close()

    app.on_cleanup.append(close)

    def page(name: str) -> web.Response:
        body, kind = files[name]
        return web.Response(body=body, content_type=kind, headers=PAGE_HEADERS)

    async def index(request: web.Request) -> web.Response:
        return page("index.html")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files:
            raise web.HTTPNotFound(reason=f"no static file {name!r}")
        return page(name)

    async def login_form(request: web.Request) -> web.Response:
        return login_page(200)

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        given = str(form.get("token", "")).strip()
        if not given or not hmac.compare_digest(given.encode(), ctx.token):
            return login_page(401, "Wrong cluster token.")
        response = web.Response(status=303, headers={"Location": "/", "Cache-Control": "no-store"})
        session_cookie(response, ctx.session)
        return response

    async def logout(request: web.Request) -> web.Response:
        response = web.Response(status=303, headers={"Location": "/login"})
        response.del_cookie(auth.SESSION_COOKIE, path="/")
        return response

    async def node_stats(request: web.Request) -> web.Response:
        replies = await sources.per_node("node_stats")
        return web.json_response([dict(reply, node_id=node["node_id"]) for node, reply in replies])

    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/api/skate/node_stats", node_stats)
