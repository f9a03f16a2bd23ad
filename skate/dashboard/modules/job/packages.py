"""Runtime-env packages uploaded over HTTP, with Ray's paths:

    GET /api/packages/{protocol}/{package_name}   200 if the package is stored, else 404
    PUT /api/packages/{protocol}/{package_name}   store the body (the package's bytes)

The job SDK packs a local working_dir/py_modules (runtime_env.upload), asks GET first and
PUTs only what is missing, then submits with the gcs:// URIs. The package goes to the GCS's
KV exactly as a driver stores one (`upload.kv_entries`: chunks, then the manifest), so the
raylets fetch it the same way. A name that is not a Skate package's, content that does not
hash to the digest in its name, or a body over the size limit, is a 400 (413 for the size).
"""

from __future__ import annotations

import logging

from aiohttp import web

from skate.dashboard.server import DashboardContext, json_error
from skate.runtime_env import packaging, upload
from skate.runtime_env.spec import package_key

logger = logging.getLogger("skate.dashboard.packages")

READ_BYTES = 1024 * 1024


def _uri(request: web.Request) -> str:
    try:
        return upload.uri_of_name(request.match_info["protocol"], request.match_info["package_name"])
    except ValueError as exc:
        raise web.HTTPBadRequest(reason=str(exc)) from None


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The request's body, refused (413) as soon as it passes `limit`: never held whole past it."""
    parts: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(READ_BYTES):
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        parts.append(chunk)
    return b"".join(parts)


def add_routes(app: web.Application, ctx: DashboardContext) -> None:
    async def exists(request: web.Request) -> web.Response:
        uri = _uri(request)
        if await ctx.gcs.kv_exists(None, package_key(uri).encode()):
            return web.json_response({"uri": uri, "exists": True})
        return json_error(404, f"package {uri} is not stored on this cluster")

    async def put(request: web.Request) -> web.Response:
        uri = _uri(request)
        limit = packaging.max_package_bytes()
        try:
            data = await _read_body(request, limit)
        except web.HTTPRequestEntityTooLarge:
            return json_error(
                413,
                f"package {uri} is over the runtime_env package limit of {limit} bytes "
                "(SKATE_RUNTIME_ENV_MAX_PACKAGE_BYTES on the head)",
            )
        try:
            upload.check_content(uri, data)
        except ValueError as exc:
            return json_error(400, str(exc))
        if not await ctx.gcs.kv_exists(None, package_key(uri).encode()):
            for key, value in upload.kv_entries(uri, data):
                await ctx.gcs.kv_put(None, key, value)
            logger.info("stored package %s (%d bytes)", uri, len(data))
        return web.json_response({"uri": uri, "size": len(data)})

    app.router.add_get("/api/packages/{protocol}/{package_name:.+}", exists)
    app.router.add_put("/api/packages/{protocol}/{package_name:.+}", put)
