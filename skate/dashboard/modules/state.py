"""The state API over HTTP (`/api/v0/<resource>`, as Ray serves it) and `/metrics`.

GET /api/v0/{nodes,actors,tasks,objects,jobs,placement_groups,workers}
    ?filter_keys=k&filter_predicates=%3D&filter_values=v (Ray's form, repeatable; or
    filter=k=v / filter=k!=v), limit (100), detail (true/false).
    Answers Ray's envelope: {"result": true, "msg": "", "data": {"result": {"total",
    "num_after_truncation", "result": [rows]}}}.
GET /api/v0/{tasks,actors,objects}/summarize
GET /metrics: Prometheus text: tasks and actors by state, store bytes used/spilled/
    restored, resources total and used, workers, task-event drops, the GCS's RPC handler
    times (`skate_rpc_latency_seconds{Component="gcs"}`), and user metrics
    (`skate.util.metrics`). Each node's raylet serves that node's own series, its RPC
    times included (`raylet.metrics_server`).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from skate._state_query import parse_filter
from skate.dashboard.server import DashboardContext
from skate.protocol.latency import histogram_family
from skate.util.state.sources import RESOURCES, ConnectedSources, Sources, list_resource, summarize

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _filters(query: Any) -> list[tuple[str, str, str]]:
    keys, preds, values = (query.getall(k, []) for k in ("filter_keys", "filter_predicates", "filter_values"))
    if not (len(keys) == len(preds) == len(values)):
        raise web.HTTPBadRequest(reason="filter_keys, filter_predicates and filter_values must pair up")
    out = list(zip(keys, preds, values))
    for text in query.getall("filter", []):
        try:
            out.append(parse_filter(text))
        except ValueError as exc:
            raise web.HTTPBadRequest(reason=str(exc)) from None
    return out


def _envelope(result: Any) -> web.Response:
    return web.json_response({"result": True, "msg": "", "data": {"result": result}}, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def setup(app: web.Application, ctx: DashboardContext) -> None:
    sources = ConnectedSources(ctx.gcs_address, ctx.token, name="dashboard-state")

    async def close(_app: web.Application) -> None:
        sources.close()

    app.on_cleanup.append(close)

    async def list_handler(request: web.Request) -> web.Response:
        resource = request.match_info["resource"]
        if resource not in RESOURCES:
            raise web.HTTPNotFound(reason=f"unknown resource {resource!r}: one of {', '.join(RESOURCES)}")
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            raise web.HTTPBadRequest(reason="limit must be an integer") from None
        detail = request.query.get("detail", "false").lower() in ("1", "true", "yes")
        try:
            rows, total, info = await list_resource(sources, resource, _filters(request.query), limit, detail)
        except ValueError as exc:
            raise web.HTTPBadRequest(reason=str(exc)) from None
        result = {"total": total, "num_after_truncation": len(rows), "result": [dict(r) for r in rows]}
        result.update(info)
        return _envelope(result)

    async def summary_handler(request: web.Request) -> web.Response:
        resource = request.match_info["resource"]
        if resource not in ("tasks", "actors", "objects"):
            raise web.HTTPNotFound(reason=f"cannot summarize {resource!r}: tasks, actors or objects")
        return _envelope(await summarize(sources, resource))

    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(body=await metrics_text(sources), headers={"Content-Type": METRICS_CONTENT_TYPE})

    app.router.add_get("/api/v0/{resource}/summarize", summary_handler)
    app.router.add_get("/api/v0/{resource}", list_handler)
    app.router.add_get("/metrics", metrics_handler)


async def metrics_text(src: Sources) -> bytes:
    """The cluster's metrics in Prometheus' text format."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    families: list[Any] = []
    tasks = await summarize(src, "tasks")
    by_state: dict[str, int] = {}
    for entry in tasks["summary"].values():
        for state, n in entry["state_counts"].items():
            by_state[state] = by_state.get(state, 0) + n
    g = GaugeMetricFamily("skate_tasks", "Task attempts in the GCS's window, by state", labels=["State"])
    for state, n in sorted(by_state.items()):
        g.add_metric([state], n)
    families.append(g)
    stats = tasks["task_events"]
    c = CounterMetricFamily("skate_task_events_dropped", "Task attempts dropped from the GCS's window")
    c.add_metric([], stats["num_evicted"])
    families.append(c)

    actors = await summarize(src, "actors")
    g = GaugeMetricFamily("skate_actors", "Actors by state", labels=["State"])
    counts: dict[str, int] = {}
    for entry in actors["summary"].values():
        for state, n in entry["state_counts"].items():
            counts[state] = counts.get(state, 0) + n
    for state, n in sorted(counts.items()):
        g.add_metric([state], n)
    families.append(g)

    total = GaugeMetricFamily(
        "skate_resources_total", "Resources of each alive node", labels=["Name", "NodeId"]
    )
    used = GaugeMetricFamily(
        "skate_resources_used", "Resources held on each alive node", labels=["Name", "NodeId"]
    )
    for node in await src.alive_nodes():
        available = node.get("available") or {}
        for name, amount in sorted((node.get("resources") or {}).items()):
            total.add_metric([name, node["node_id"]], amount)
            used.add_metric([name, node["node_id"]], amount - available.get(name, amount))
    families += [total, used]

    store = {
        key: GaugeMetricFamily(f"skate_object_store_{key}", help_text, labels=["NodeId"])
        for key, help_text in (
            ("used_bytes", "Bytes of the node's shared-memory object store in use"),
            ("capacity_bytes", "Size of the node's shared-memory object store"),
            ("spilled_bytes", "Bytes spilled to disk so far"),
            ("restored_bytes", "Bytes restored from disk so far"),
        )
    }
    workers = GaugeMetricFamily(
        "skate_workers", "Live worker and driver processes", labels=["NodeId", "WorkerType"]
    )
    for node, stats_reply in await src.per_node("store_stats"):
        for key, fam in store.items():
            value = stats_reply.get(key)
            if value is not None:
                fam.add_metric([node["node_id"]], value)
    for node, listing in await src.per_node("list_workers"):
        kinds: dict[str, int] = {}
        for w in listing:
            kind = {"driver": "DRIVER", "worker": "WORKER"}.get(w.get("mode") or "", "OWNER")
            kinds[kind] = kinds.get(kind, 0) + 1
        for kind, n in sorted(kinds.items()):
            workers.add_metric([node["node_id"], kind], n)
    families += [*store.values(), workers]
    families += await memory_families(src, GaugeMetricFamily)
    families.append(histogram_family([({}, await src.call("rpc_latency", {}))]))
    families += await user_metric_families(src, GaugeMetricFamily, CounterMetricFamily, HistogramMetricFamily)

    class Snapshot:
        def collect(self) -> Any:
            return families

    registry = CollectorRegistry()
    registry.register(Snapshot())
    return generate_latest(registry)


async def memory_families(src: Sources, gauge: Any) -> list[Any]:
    """The memory report (docs/memory.md) as gauges: per process, store and GCS table."""
    from skate import _memory_accounting as acct

    info = await src.call("gcs_info", {})
    reports = []
    for node, report in await src.per_node("memory_report"):
        report["node_ip"] = node.get("node_ip")
        reports.append(report)
    families: dict[str, Any] = {}
    for name, help_text, labels, value in acct.gauges(
        acct.cluster_report((info or {}).get("memory"), reports)
    ):
        fam = families.get(name)
        if fam is None:
            fam = families[name] = gauge(name, help_text, labels=sorted(labels))
        fam.add_metric([labels[k] for k in sorted(labels)], value)
    return list(families.values())


async def user_metric_families(src: Sources, gauge: Any, counter: Any, histogram: Any) -> list[Any]:
    """User metrics from every process: counters and histograms added up, the newest gauge."""
    from skate.util.metrics import KV_NAMESPACE

    merged: dict[str, dict] = {}
    for key in await src.kv_keys(KV_NAMESPACE, b""):
        raw = await src.kv_get(KV_NAMESPACE, key)
        if raw is None:
            continue
        snap = json.loads(raw)
        m = merged.setdefault(snap["name"], {"snap": snap, "series": {}, "times": {}})
        for tags, value in snap["series"]:
            tkey = tuple(tags)
            if snap["type"] == "gauge":
                if snap["time"] >= m["times"].get(tkey, 0):
                    m["series"][tkey], m["times"][tkey] = value, snap["time"]
            elif snap["type"] == "counter":
                m["series"][tkey] = m["series"].get(tkey, 0.0) + value
            else:
                have = m["series"].setdefault(tkey, {"buckets": [0] * len(value["buckets"]), "sum": 0.0})
                have["buckets"] = [a + b for a, b in zip(have["buckets"], value["buckets"])]
                have["sum"] += value["sum"]
    out = []
    for name, m in sorted(merged.items()):
        snap, labels = m["snap"], m["snap"]["tag_keys"]
        if snap["type"] == "counter":
            fam = counter(name, snap["description"] or name, labels=labels)
            for tags, value in m["series"].items():
                fam.add_metric(list(tags), value)
        elif snap["type"] == "gauge":
            fam = gauge(name, snap["description"] or name, labels=labels)
            for tags, value in m["series"].items():
                fam.add_metric(list(tags), value)
        else:
            fam = histogram(name, snap["description"] or name, labels=labels)
            bounds = [*(str(b) for b in snap["boundaries"]), "+Inf"]
            for tags, value in m["series"].items():
                cumulative, buckets = 0, []
                for bound, n in zip(bounds, value["buckets"]):
                    cumulative += n
                    buckets.append((bound, cumulative))
                fam.add_metric(list(tags), buckets, value["sum"])
        out.append(fam)
    return out
