"""What the node's metrics endpoint answers to one HTTP request: a pure decision (no I/O).

The endpoint (`raylet.metrics_server`) speaks just enough HTTP/1.1 for Prometheus and curl:
one `GET /metrics` per connection, answered and closed. The request head is at most
MAX_HEAD_BYTES (the server enforces it while reading); here it is parsed and judged:

- no or a wrong `Authorization: Bearer <cluster token>`: 401 (the same guard as the
  dashboard's, `dashboard.auth.authorize`, whose token comparison is constant-time), whatever
  the path, so nothing about the endpoint is learnt without the token;
- a malformed head: 400; a method other than GET/HEAD: 405; a path other than /metrics: 404;
- else 200, with the body the server builds (`serve` is true).
"""

from __future__ import annotations

from typing import NamedTuple

MAX_HEAD_BYTES = 8192  # request line plus headers
METRICS_PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text format
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class Request(NamedTuple):
    method: str
    path: str  # without the query string
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value


class Answer(NamedTuple):
    status: int
    message: str = ""  # the body of an error answer
    serve: bool = False  # 200: the server renders the metrics
    head_only: bool = False  # a HEAD request: no body


def parse_head(head: bytes) -> Request | None:
    """The request line and headers of `head` (up to and including the blank line), or None
    when it is not an HTTP/1.x request head."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers[name.lower()] = value.strip()
    return Request(parts[0], parts[1].split("?", 1)[0], headers)


def decide(request: Request | None, token: bytes, host: str) -> Answer:
    """The answer to one request (see the module's docstring for the order of the checks)."""
    if request is None:
        return Answer(400, "malformed request")
    from skate.dashboard.auth import ALLOW, authorize  # at the first request: the raylet starts lighter

    # Only the bearer token counts here: no cookie, no token in the URL (a scraper sends the
    # header; a URL with the token would end up in logs).
    given = request.headers.get("authorization")
    verdict = authorize("GET", {"Authorization": given} if given else {}, {}, None, host, token, session="")
    if verdict.outcome != ALLOW:
        return Answer(401, "send 'Authorization: Bearer <cluster token>'")
    if request.method not in ("GET", "HEAD"):
        return Answer(405, f"method {request.method} not allowed: GET {METRICS_PATH}")
    if request.path != METRICS_PATH:
        return Answer(404, f"not found: the only path here is {METRICS_PATH}")
    return Answer(200, serve=True, head_only=request.method == "HEAD")


def render(status: int, body: bytes, content_type: str = CONTENT_TYPE, head_only: bool = False) -> bytes:
    """A whole HTTP/1.1 response that closes the connection."""
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Cache-Control: no-store",
    ]
    if status == 401:
        head.append('WWW-Authenticate: Bearer realm="skate"')
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)


def render_error(status: int, message: str = "") -> bytes:
    return render(
        status, (message or _REASONS.get(status, "error")).encode() + b"\n", "text/plain; charset=utf-8"
    )
