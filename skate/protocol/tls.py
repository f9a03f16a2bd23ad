"""Mutual TLS on TCP sockets, configured like Ray's.

    SKATE_USE_TLS=1              turn it on (in every process of the cluster: they inherit it)
    SKATE_TLS_SERVER_CERT=path   this node's certificate (PEM), shown to peers in both directions
    SKATE_TLS_SERVER_KEY=path    its private key
    SKATE_TLS_CA_CERT=path       the CA that signed every node's certificate: peers must present one

Ray's names (RAY_USE_TLS, RAY_TLS_SERVER_CERT, ...) are accepted too; the SKATE_ ones win.
Both sides present a certificate and both verify the other's against the CA (mutual TLS), so
only holders of a CA-signed key may connect or serve; host names are not checked (as nodes
are often addressed by IP), the CA is what is trusted. Unix sockets stay plain: they never
leave the machine and sit in the user's 0700 session directory. The cluster token handshake
still runs inside TLS.
"""

from __future__ import annotations

import functools
import os
import ssl

from skate.exceptions import RaySystemError


class TLSConfigError(RaySystemError):
    """TLS is on but its certificates are missing or unreadable."""


def _env(name: str) -> str:
    return os.environ.get("SKATE_" + name) or os.environ.get("RAY_" + name) or ""


def tls_enabled() -> bool:
    return _env("USE_TLS").strip().lower() in ("1", "true", "yes", "on")


def _paths() -> tuple[str, str, str]:
    cert, key, ca = _env("TLS_SERVER_CERT"), _env("TLS_SERVER_KEY"), _env("TLS_CA_CERT")
    missing = [
        n for n, v in (("TLS_SERVER_CERT", cert), ("TLS_SERVER_KEY", key), ("TLS_CA_CERT", ca)) if not v
    ]
    if missing:
        raise TLSConfigError(
            "SKATE_USE_TLS is set but "
            + ", ".join("SKATE_" + m for m in missing)
            + " is not (RAY_ names work too)"
        )
    return cert, key, ca


def server_context() -> ssl.SSLContext | None:
    """The context for accepting TLS connections, or None when TLS is off."""
    return _context(True, *_paths()) if tls_enabled() else None


def client_context() -> ssl.SSLContext | None:
    """The context for opening TLS connections, or None when TLS is off."""
    return _context(False, *_paths()) if tls_enabled() else None


@functools.lru_cache(maxsize=8)
def _context(server: bool, cert: str, key: str, ca: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"cannot load the TLS certificate {cert}, key {key} or CA {ca}: {exc}") from None
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual: the peer must show a certificate from our CA
    return ctx
