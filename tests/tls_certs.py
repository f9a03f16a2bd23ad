"""TLS on for one test: a throwaway CA (trustme) signs a node certificate, and the
environment says to use them (SKATE_USE_TLS and the three paths). Skips without trustme."""

from __future__ import annotations

from pathlib import Path

import pytest

from skate.protocol import tls


def use_test_tls(directory: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Write a CA-signed certificate for 127.0.0.1 under `directory`, turn TLS on through
    `monkeypatch`, and return the paths; call `tls._context.cache_clear()` when done."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {k: str(directory / f"node.{k}") for k in ("cert", "key", "ca")}
    for i, pem in enumerate(cert.cert_chain_pems):
        pem.write_to_path(paths["cert"], append=i > 0)
    cert.private_key_pem.write_to_path(paths["key"])
    ca.cert_pem.write_to_path(paths["ca"])
    monkeypatch.setenv("SKATE_USE_TLS", "1")
    monkeypatch.setenv("SKATE_TLS_SERVER_CERT", paths["cert"])
    monkeypatch.setenv("SKATE_TLS_SERVER_KEY", paths["key"])
    monkeypatch.setenv("SKATE_TLS_CA_CERT", paths["ca"])
    tls._context.cache_clear()
    return paths
