"""Each node's Prometheus endpoint (served by its raylet) and the RPC latency histograms, on a
two-node cluster: the token is required, each node shows its own series, bad requests are
closed and the raylet keeps serving; the GCS's latencies reach the dashboard's /metrics."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import skate
from skate.cluster_utils import Cluster
from tests.integration._cluster_helpers import STORE, force_stop_cli, free_port, node_args, run_cli
from tests.integration._helpers import wait_for


@skate.remote
def identity(x):
    return x


# These two come first: the module's cluster (two_nodes) is up from its first test to the end.
@pytest.mark.timeout(60)
def test_init_takes_the_metrics_export_port(fresh):
    port = free_port()
    skate.init(num_cpus=1, object_store_memory=STORE, _metrics_export_port=port)
    [node] = skate.nodes()
    assert node["MetricsExportPort"] == port
    from skate import _api

    assert _scrape(port, _api._core().token.decode())
    skate.shutdown()
    with pytest.raises(ValueError, match="_metrics_export_port"):
        skate.init(num_cpus=1, _metrics_export_port="8080")


@pytest.mark.timeout(120)
def test_skate_start_takes_the_metrics_export_port():
    gcs_port, metrics_port = free_port(), free_port()
    try:
        out = run_cli(
            "start",
            "--head",
            "--port",
            str(gcs_port),
            "--num-cpus",
            "1",
            "--object-store-memory",
            str(STORE),
            "--include-dashboard",
            "false",
            "--metrics-export-port",
            str(metrics_port),
        )
        assert out.returncode == 0, out.stderr
        skate.init(address=f"127.0.0.1:{gcs_port}")
        [node] = skate.nodes()
        assert node["MetricsExportPort"] == metrics_port
        from skate import _api

        samples = _scrape(metrics_port, _api._core().token.decode())
        assert _value(samples, "skate_resources_total", NodeId=node["NodeID"], Name="CPU") == 1.0
    finally:
        force_stop_cli()


@pytest.fixture(scope="module")
def two_nodes():
    if skate.is_initialized():
        skate.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1, include_dashboard=True))
    try:
        other = cluster.add_node(**node_args(num_cpus=1, resources={"b": 1}))
        skate.init(address=cluster.address)
        assert skate.get(identity.remote(1)) == 1
        assert skate.get(identity.options(resources={"b": 1}).remote(2)) == 2
        url = cluster.head_node.dashboard_url
        yield {
            "cluster": cluster,
            "token": cluster.head_node.token.decode(),
            "head": cluster.head_node.node_id,
            "other": other.node_id,
            "dashboard": url if url.startswith("http") else "http://" + url,
        }
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()


def _ports() -> dict[str, int]:
    return {n["NodeID"]: n["MetricsExportPort"] for n in skate.nodes() if n["Alive"]}


def _get(url: str, token: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _scrape(port: int, token: str) -> dict[tuple[str, tuple], float]:
    status, text = _get(f"http://127.0.0.1:{port}/metrics", token)
    assert status == 200, text
    return _samples(text)


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _raw(port: int, data: bytes) -> bytes:
    """Send raw bytes and read until the server closes (curl-like, no client parsing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except ConnectionResetError:  # closed with our excess bytes unread: also a clean refusal
            return b""
    return b"".join(chunks)


@pytest.mark.timeout(60)
def test_every_node_has_a_port_and_needs_the_token(two_nodes):
    ports = _ports()
    assert set(ports) == {two_nodes["head"], two_nodes["other"]}
    assert all(p > 0 for p in ports.values()) and len(set(ports.values())) == 2
    for port in ports.values():
        status, body = _get(f"http://127.0.0.1:{port}/metrics", None)
        assert status == 401 and "skate_" not in body
        status, body = _get(f"http://127.0.0.1:{port}/metrics", "not-the-token")
        assert status == 401 and "skate_" not in body


@pytest.mark.timeout(60)
def test_each_node_shows_its_own_series(two_nodes):
    ports = _ports()
    for node, port in ports.items():
        samples = _scrape(port, two_nodes["token"])
        ids = {dict(labels).get("NodeId") for _, labels in samples}
        assert ids == {node}, f"node {node[:8]} reports {ids}"
        assert _value(samples, "skate_object_store_capacity_bytes", NodeId=node) > 0
        assert _value(samples, "skate_resources_total", NodeId=node, Name="CPU") == 1.0
        assert _value(samples, "skate_resources_used", NodeId=node, Name="CPU") is not None
        assert _value(samples, "skate_node_leases_granted_total", NodeId=node) >= 1
        workers = sum(v for (name, _), v in samples.items() if name == "skate_node_workers")
        assert workers >= 1
        assert _value(samples, "skate_node_process_rss_bytes", NodeId=node, Component="raylet") > 1e6
        assert _value(samples, "skate_node_process_rss_bytes", NodeId=node, Component="worker") > 1e6
    other = _scrape(ports[two_nodes["other"]], two_nodes["token"])
    assert _value(other, "skate_resources_total", NodeId=two_nodes["other"], Name="b") == 1.0


@pytest.mark.timeout(60)
def test_store_bytes_grow_after_a_put(two_nodes):
    port = _ports()[two_nodes["head"]]
    node = two_nodes["head"]
    before = _value(_scrape(port, two_nodes["token"]), "skate_object_store_used_bytes", NodeId=node)
    ref = skate.put(b"x" * (8 * 1024 * 1024))  # large: in the head's shared-memory store

    def grown():
        used = _value(_scrape(port, two_nodes["token"]), "skate_object_store_used_bytes", NodeId=node)
        return used >= before + 8 * 1024 * 1024

    assert wait_for(grown, timeout=10)
    del ref


@pytest.mark.timeout(60)
def test_raylet_latency_histogram_counts_a_known_method(two_nodes):
    node = two_nodes["other"]
    assert skate.get(identity.options(resources={"b": 1}).remote(3)) == 3  # a lease from that raylet
    samples = _scrape(_ports()[node], two_nodes["token"])
    labels = {"Component": "raylet", "Method": "request_lease", "NodeId": node}
    count = _value(samples, "skate_rpc_latency_seconds_count", **labels)
    assert count is not None and count >= 1
    assert _value(samples, "skate_rpc_latency_seconds_bucket", le="+Inf", **labels) == count
    assert _value(samples, "skate_rpc_latency_seconds_sum", **labels) > 0


@pytest.mark.timeout(60)
def test_gcs_latency_reaches_the_dashboard(two_nodes):
    skate.nodes()  # a get_nodes request to the GCS
    status, text = _get(two_nodes["dashboard"] + "/metrics", two_nodes["token"])
    assert status == 200
    samples = _samples(text)
    count = _value(samples, "skate_rpc_latency_seconds_count", Component="gcs", Method="get_nodes")
    assert count is not None and count >= 1
    assert _value(samples, "skate_rpc_latency_seconds_count", Component="gcs", Method="register_node") >= 2


@pytest.mark.timeout(60)
def test_bad_requests_are_closed_and_the_raylet_keeps_serving(two_nodes):
    port = _ports()[two_nodes["head"]]
    token = two_nodes["token"]
    no_auth = _raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert no_auth.startswith(b"HTTP/1.1 401 ") and b"skate_" not in no_auth
    status, body = _get(f"http://127.0.0.1:{port}/elsewhere", token)
    assert status == 404 and "skate_" not in body
    post = _raw(port, f"POST /metrics HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    assert post.startswith(b"HTTP/1.1 405 ")
    garbage = _raw(port, b"\x16\x03\x01 not http at all\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 ")
    oversize = _raw(port, b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert oversize == b"" or oversize.startswith(b"HTTP/1.1 431 ")
    half = socket.create_connection(("127.0.0.1", port), timeout=10)  # an unfinished request...
    half.sendall(b"GET /metr")
    try:
        samples = _scrape(port, token)  # ...does not hold the endpoint up
        assert _value(samples, "skate_object_store_capacity_bytes", NodeId=two_nodes["head"]) > 0
        assert skate.get(identity.remote(4)) == 4  # nor the raylet
    finally:
        half.close()
    assert _scrape(port, token)
