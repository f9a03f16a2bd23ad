"""The dashboard's state API (/api/v0/...) and /metrics on a two-node cluster, behind the token."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

import skate
from skate.cluster_utils import Cluster
from skate.util import metrics, state
from tests.integration._cluster_helpers import node_args
from tests.integration._helpers import wait_for


@skate.remote
def crash():
    raise RuntimeError("dashboard-visible failure")


@skate.remote
def count_things(n):
    counter = metrics.Counter("skate_test_things", "things counted in a task", tag_keys=("kind",))
    counter.inc(n, tags={"kind": "task"})
    return n


@skate.remote(resources={"b": 1})
class Sleeper:
    def ready(self):
        return True


@pytest.fixture(scope="module")
def dash():
    if skate.is_initialized():
        skate.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1, include_dashboard=True))
    try:
        other = cluster.add_node(**node_args(num_cpus=1, resources={"b": 1}))
        skate.init(address=cluster.address)
        with pytest.raises(RuntimeError):
            skate.get(crash.remote())
        sleeper = Sleeper.remote()
        assert skate.get(sleeper.ready.remote())
        assert skate.get(count_things.remote(3)) == 3
        driver_counter = metrics.Counter("skate_test_things", "things counted", tag_keys=("kind",))
        driver_counter.inc(2, tags={"kind": "driver"})
        gauge = metrics.Gauge("skate_test_level", "a level", tag_keys=())
        gauge.set(7.5)
        assert wait_for(
            lambda: state.list_tasks(filters=[("name", "=", "crash"), ("state", "=", "FAILED")]), 15
        )
        # each worker sends what it ran (with its owner's times) on its own timer
        assert wait_for(lambda: len(state.list_tasks(filters=[("state", "=", "FINISHED")])) >= 3, 15)
        url = cluster.head_node.dashboard_url
        yield {
            "url": url if url.startswith("http") else "http://" + url,
            "token": cluster.head_node.token.decode(),
            "other": other,
            "sleeper": sleeper,
        }
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()


def _get(dash, path: str, auth: bool = True) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {dash['token']}"} if auth else {}
    request = urllib.request.Request(dash["url"] + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _rows(dash, path: str) -> dict:
    status, body = _get(dash, path)
    assert status == 200, body
    reply = json.loads(body)
    assert reply["result"] is True
    return reply["data"]["result"]


@pytest.mark.timeout(60)
def test_every_resource_needs_the_token(dash):
    for resource in ("tasks", "actors", "nodes", "objects", "jobs", "placement_groups", "workers"):
        status, _ = _get(dash, f"/api/v0/{resource}", auth=False)
        assert status == 401, resource
        assert "result" in _rows(dash, f"/api/v0/{resource}")
    status, _ = _get(dash, "/metrics", auth=False)
    assert status == 401


@pytest.mark.timeout(60)
def test_tasks_with_ray_filters_show_the_error_type(dash):
    query = urllib.parse.urlencode(
        [("filter_keys", "name"), ("filter_predicates", "="), ("filter_values", "crash"), ("detail", "true")]
    )
    result = _rows(dash, f"/api/v0/tasks?{query}")
    assert result["total"] == 1
    [row] = result["result"]
    assert row["state"] == "FAILED" and row["error_type"] == "TASK_EXECUTION_EXCEPTION"
    assert "dashboard-visible failure" in row["error_message"]
    limited = _rows(dash, "/api/v0/tasks?limit=1")
    assert limited["num_after_truncation"] == 1 and limited["total"] >= 3


@pytest.mark.timeout(60)
def test_actors_and_nodes_over_http(dash):
    result = _rows(dash, "/api/v0/actors?filter=class_name%3DSleeper")
    [actor] = result["result"]
    assert actor["state"] == "ALIVE" and actor["node_id"] == dash["other"].node_id
    nodes = _rows(dash, "/api/v0/nodes?filter=is_head_node!%3DTrue")["result"]
    assert [n["node_id"] for n in nodes] == [dash["other"].node_id]
    summary = _rows(dash, "/api/v0/tasks/summarize")
    assert summary["summary"]["crash"]["state_counts"] == {"FAILED": 1}
    status, body = _get(dash, "/api/v0/gizmos")
    assert status == 404 and b"unknown resource" in body
    status, body = _get(dash, "/api/v0/tasks?filter=nonsense")
    assert status == 400


@pytest.mark.timeout(60)
def test_metrics_show_cluster_series_and_user_metrics(dash):
    def scrape() -> str | None:
        status, body = _get(dash, "/metrics")
        assert status == 200
        text = body.decode()
        ok = 'skate_test_things_total{kind="task"} 3.0' in text and 'kind="driver"' in text
        return text if ok else None

    text = wait_for(scrape, timeout=15)
    assert text, "user metrics never reached /metrics"
    for series in (
        'skate_tasks{State="FAILED"}',
        'skate_actors{State="ALIVE"}',
        "skate_object_store_used_bytes{",
        "skate_object_store_spilled_bytes{",
        'skate_resources_total{Name="CPU"',
        'skate_resources_used{Name="CPU"',
        'skate_workers{NodeId="',
        "skate_test_level 7.5",
        # the memory report (docs/memory.md)
        "skate_gcs_rss_bytes ",
        'skate_gcs_table_entries{Table="actors"}',
        'skate_process_heap_bytes{NodeId="',
        'Role="raylet"',
        "skate_object_store_primary_bytes{",
    ):
        assert series in text, series
