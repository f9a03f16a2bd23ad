"""Who may use the dashboard: the pure decision behind the server's guard (no I/O).

A request is authorized by one of:

- `Authorization: Bearer <cluster token>` (the SDK, the CLI, curl);
- the session cookie a browser got from the login form or from `?token=<cluster token>` in a
  page's URL. Its value is an HMAC of a per-process nonce keyed by the token: it proves the
  holder knew the token without being the token, and dies with the dashboard process.

Cross-origin protection: a request that could change something (not GET/HEAD/OPTIONS, or a
websocket upgrade) from another origin is refused whatever its credentials; one that rests on
the cookie must moreover carry an `Origin` naming this server (browsers send it on every such
request), so no page elsewhere can use the browser's cookie to drive the job API.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

SESSION_COOKIE = "skate_dashboard_session"
TOKEN_PARAM = "token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

ALLOW, FORBID, UNAUTHORIZED, SET_COOKIE = "allow", "forbid", "unauthorized", "set_cookie"


@dataclass(frozen=True)
class Verdict:
    """What the guard does: ALLOW (via "bearer" or "cookie"), FORBID (403), UNAUTHORIZED
    (401), or SET_COOKIE (the URL's token was right: redirect without it, cookie set)."""

    outcome: str
    reason: str = ""
    via: str = ""


def session_value(token: bytes, nonce: bytes) -> str:
    """The session cookie's value: HMAC-SHA256 of the nonce keyed by the cluster token."""
    return hmac.new(token, b"skate-dashboard-session:" + nonce, hashlib.sha256).hexdigest()


def cross_origin(origin: str | None, host: str) -> bool:
    """True if a browser's Origin header names another origin than this server (`host`)."""
    if not origin:
        return False
    if origin == "null":
        return True  # an opaque origin (sandboxed page, file://) is never ours
    return urlsplit(origin).netloc.lower() != host.lower()


def _same(given: str, expected: bytes) -> bool:
    return hmac.compare_digest(given.encode(), expected)


def authorize(
    method: str,
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    url_token: str | None,
    host: str,
    token: bytes,
    session: str,
    open_path: bool = False,
) -> Verdict:
    """Decide about one request. `open_path`: the route needs no credentials (the login
    form), though the cross-origin rule still applies to it."""
    upgrade = headers.get("Upgrade", "").lower() == "websocket"
    changes = method not in SAFE_METHODS or upgrade
    origin = headers.get("Origin")
    if changes and cross_origin(origin, host):
        return Verdict(FORBID, f"cross-origin request refused (Origin {origin})")
    if open_path:
        return Verdict(ALLOW)
    header = headers.get("Authorization", "")
    if header:
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and given and _same(given.strip(), token):
            return Verdict(ALLOW, via="bearer")
        return Verdict(UNAUTHORIZED, "wrong cluster token in the Authorization header")
    if url_token is not None and method in ("GET", "HEAD"):
        if _same(url_token, token):
            return Verdict(SET_COOKIE, via="url")
        return Verdict(UNAUTHORIZED, "wrong cluster token in the URL")
    cookie = cookies.get(SESSION_COOKIE)
    if cookie and _same(cookie, session.encode()):
        if changes and not origin:
            return Verdict(FORBID, "a request that changes something must send its Origin to use the cookie")
        return Verdict(ALLOW, via="cookie")
    if cookie:
        return Verdict(UNAUTHORIZED, "the session cookie is stale: log in again")
    return Verdict(UNAUTHORIZED, "missing or wrong cluster token: send 'Authorization: Bearer <token>'")
