"""Mutual TLS on TCP sockets (issue 12, hole 7), configured like Ray's environment variables.

A throwaway CA from `trustme` signs the node certificate; peers without a certificate from
that CA, or without TLS at all, are refused; a cluster with TLS on runs tasks and moves
objects between nodes over TLS."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

trustme = pytest.importorskip("trustme")

from skate.protocol import tls  # noqa: E402
from skate.protocol.transport import connect, listen, parse_address  # noqa: E402

TOKEN = b"tls-test-token"
MB = 1024 * 1024


def _write_certs(ca, directory, name: str) -> dict[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {
        "cert": str(directory / f"{name}.pem"),
        "key": str(directory / f"{name}.key"),
        "ca": str(directory / f"{name}-ca.pem"),
    }
    cert.cert_chain_pems[0].write_to_path(paths["cert"])
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(paths["cert"], append=True)
    cert.private_key_pem.write_to_path(paths["key"])
    ca.cert_pem.write_to_path(paths["ca"])
    return paths


@pytest.fixture
def tls_env(tmp_path, monkeypatch):
    """TLS on, with a fresh CA and a node certificate; returns the paths and the CA."""
    ca = trustme.CA()
    paths = _write_certs(ca, tmp_path, "node")
    monkeypatch.setenv("SKATE_USE_TLS", "1")
    monkeypatch.setenv("SKATE_TLS_SERVER_CERT", paths["cert"])
    monkeypatch.setenv("SKATE_TLS_SERVER_KEY", paths["key"])
    monkeypatch.setenv("SKATE_TLS_CA_CERT", paths["ca"])
    tls._context.cache_clear()
    yield paths, ca
    tls._context.cache_clear()


def _run(coro, timeout: float = 20.0):
    async def main():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


def test_rpc_over_mutual_tls_and_refusals(tls_env, tmp_path, monkeypatch):
    paths, _ = tls_env

    async def main():
        listener = await listen("tcp://127.0.0.1:0", TOKEN, {"echo": lambda c, p: p})
        client = await connect(listener.address, TOKEN)
        assert await client.call("echo", "secret payload") == "secret payload"
        ssl_object = client._transport.get_extra_info("ssl_object")
        assert ssl_object is not None and ssl_object.version() in ("TLSv1.2", "TLSv1.3")
        assert ssl_object.getpeercert()  # the server showed a certificate we verified
        client.close()
        host, port = parse_address(listener.address)[1].rsplit(":", 1)

        # A plain-TCP peer gets no greeting in clear: the server speaks only TLS.
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"\x00" * 64)
        data = await asyncio.wait_for(reader.read(), 10)
        assert b"skate-hello" not in data
        writer.close()

        # A TLS client without a certificate is refused (mutual TLS).
        import ssl

        anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        anonymous.check_hostname = False
        anonymous.load_verify_locations(paths["ca"])
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            r, w = await asyncio.open_connection(host, int(port), ssl=anonymous)
            await asyncio.wait_for(r.readexactly(4), 10)

        # A client whose certificate comes from another CA is refused.
        other = _write_certs(trustme.CA(), tmp_path, "other")
        foreign = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        foreign.check_hostname = False
        foreign.load_cert_chain(other["cert"], other["key"])
        foreign.load_verify_locations(paths["ca"])
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            r, w = await asyncio.open_connection(host, int(port), ssl=foreign)
            await asyncio.wait_for(r.readexactly(4), 10)

        # And the client refuses a server whose certificate is not from its CA.
        monkeypatch.setenv("SKATE_TLS_CA_CERT", other["ca"])
        tls._context.cache_clear()
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await connect(listener.address, TOKEN, timeout=5)
        monkeypatch.setenv("SKATE_TLS_CA_CERT", paths["ca"])
        tls._context.cache_clear()
        again = await connect(listener.address, TOKEN)
        assert await again.call("echo", 1) == 1
        again.close()
        listener.close()

    _run(main())


def test_ray_variable_names_are_accepted_and_missing_files_named(tmp_path, monkeypatch):
    for name in ("USE_TLS", "TLS_SERVER_CERT", "TLS_SERVER_KEY", "TLS_CA_CERT"):
        monkeypatch.delenv("SKATE_" + name, raising=False)
    monkeypatch.setenv("RAY_USE_TLS", "1")
    tls._context.cache_clear()
    assert tls.tls_enabled()
    with pytest.raises(tls.TLSConfigError, match="SKATE_TLS_SERVER_CERT"):
        tls.server_context()
    paths = _write_certs(trustme.CA(), tmp_path, "ray")
    monkeypatch.setenv("RAY_TLS_SERVER_CERT", paths["cert"])
    monkeypatch.setenv("RAY_TLS_SERVER_KEY", paths["key"])
    monkeypatch.setenv("RAY_TLS_CA_CERT", str(tmp_path / "missing.pem"))
    with pytest.raises(tls.TLSConfigError, match="missing.pem"):
        tls.client_context()
    monkeypatch.setenv("RAY_TLS_CA_CERT", paths["ca"])
    assert tls.client_context() is not None and tls.server_context() is not None
    monkeypatch.setenv("RAY_USE_TLS", "0")
    assert tls.server_context() is None
    tls._context.cache_clear()


@pytest.mark.timeout(180)
def test_cluster_runs_tasks_and_moves_objects_over_tls(tls_env, fresh, monkeypatch):
    skate = fresh
    monkeypatch.setenv("SKATE_NO_UNIX_SOCKETS", "1")  # every connection over TCP, hence TLS
    from skate.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, connect=True, head_node_args={"num_cpus": 1, "object_store_memory": 80 * MB}
    )
    try:
        cluster.add_node(num_cpus=1, object_store_memory=80 * MB, resources={"other": 1})

        @skate.remote(resources={"other": 1})
        def make(n):
            return np.arange(n, dtype=np.int64)

        @skate.remote
        def total(a):
            return int(a.sum())

        ref = make.remote(2_000_000)  # 16 MB made on the other node ...
        assert int(skate.get(ref, timeout=60)[-1]) == 1_999_999  # ... pulled here over TLS
        assert skate.get(total.remote(ref), timeout=60) == sum(range(2_000_000))
        # The GCS port speaks TLS only.
        host, port = cluster.head_node.address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.settimeout(5)
            s.sendall(b"\x00" * 32)
            try:
                data = s.recv(1024)
            except OSError:
                data = b""
            assert b"skate-hello" not in data
    finally:
        cluster.shutdown()
        skate.shutdown()
