"""Where state rows come from, for the state API, the CLI and the dashboard alike.

Each resource is read from the process that knows it (nodes, actors, jobs, placement groups
and task attempts from the GCS; objects and workers from every alive node's raylet) and
turned into rows with Ray's field names. `Sources` hides how the cluster is reached: a
driver's core worker, or the dashboard's own GCS client and raylet connections.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from skate._state_query import StateRow, query

RESOURCES = ("nodes", "actors", "tasks", "objects", "jobs", "placement_groups", "workers")
# Fields only listed with detail=True (bulky, or rarely wanted at a glance).
DETAIL_ONLY = {
    "tasks": (
        "events",
        "required_resources",
        "runtime_env_info",
        "creation_time_ms",
        "start_time_ms",
        "end_time_ms",
        "error_message",
        "language",
        "placement_group_id",
    ),
    "actors": ("address", "owner", "methods", "incarnation", "max_task_retries"),
    "nodes": ("resources_available", "labels", "raylet_address"),
    "objects": ("owner", "call_site"),
    "jobs": ("metadata", "runtime_env", "driver_info"),
    "placement_groups": ("bundles_to_node_id", "stats"),
    "workers": ("address",),
}
# The id field `get_<resource>` looks up.
ID_FIELDS = {
    "nodes": "node_id",
    "actors": "actor_id",
    "tasks": "task_id",
    "objects": "object_id",
    "jobs": "job_id",
    "placement_groups": "placement_group_id",
    "workers": "worker_id",
}


class Sources:
    """How to reach the GCS (`gcs_call(method, payload)`) and a node's raylet
    (`raylet(node)`, a connection)."""

    def __init__(
        self, gcs_call: Callable[[str, Any], Awaitable[Any]], raylet: Callable[[dict], Awaitable[Any]]
    ):
        self.gcs_call = gcs_call
        self.raylet = raylet

    # The job manager's view of a GCS client (its list_jobs reads the job records from the KV).
    async def call(self, method: str, payload: Any = None) -> Any:
        return await self.gcs_call(method, payload)

    async def kv_get(self, namespace: bytes, key: bytes) -> bytes | None:
        return await self.gcs_call("kv_get", {"namespace": namespace, "key": key})

    async def kv_keys(self, namespace: bytes, prefix: bytes) -> list[bytes]:
        return list(await self.gcs_call("kv_keys", {"namespace": namespace, "prefix": prefix}))

    async def alive_nodes(self) -> list[dict]:
        return [n for n in await self.gcs_call("get_nodes", None) if n["alive"]]

    async def per_node(self, method: str) -> list[tuple[dict, Any]]:
        """(node, reply) of `method` from every alive node's raylet (nodes that fail are skipped)."""
        nodes = await self.alive_nodes()

        async def one(node: dict) -> Any:
            conn = await self.raylet(node)
            return await asyncio.wait_for(conn.call(method, {}), 10)

        replies = await asyncio.gather(*(one(n) for n in nodes), return_exceptions=True)
        return [(n, r) for n, r in zip(nodes, replies) if not isinstance(r, BaseException)]


def _hex(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


# -- rows of each resource -------------------------------------------------------------------
async def node_rows(src: Sources) -> list[dict]:
    out = []
    for n in await src.gcs_call("get_nodes", None):
        out.append(
            {
                "node_id": n["node_id"],
                "node_ip": n.get("node_ip", "127.0.0.1"),
                "is_head_node": bool(n.get("is_head")),
                "state": "ALIVE" if n["alive"] else "DEAD",
                "state_message": n.get("death_reason"),
                "node_name": n.get("node_ip", socket.gethostname()),
                "resources_total": dict(n.get("resources") or {}),
                "resources_available": dict(n.get("available") or {}),
                "object_store_used_bytes": n.get("store_used", 0),
                "object_store_total_bytes": n.get("arena_capacity", 0),
                "labels": dict(n.get("labels") or {}),
                "raylet_address": n.get("address"),
            }
        )
    return out


async def actor_rows(src: Sources) -> list[dict]:
    out = []
    for a in await src.gcs_call("list_actors", None):
        out.append(
            {
                "actor_id": _hex(a["actor_id"]),
                "class_name": a.get("class_name"),
                "state": a["state"],
                "job_id": a.get("job"),
                "name": a.get("name") or "",
                "node_id": a.get("node_id"),
                "pid": a.get("pid"),
                "ray_namespace": a.get("namespace"),
                "death_cause": a.get("death_cause") or None,
                "is_detached": bool(a.get("detached")),
                "num_restarts": a.get("num_restarts", 0),
                "worker_id": a.get("worker_id"),
                "repr_name": "",
                "address": a.get("address"),
                "owner": a.get("owner"),
                "methods": a.get("methods"),
                "incarnation": a.get("incarnation"),
                "max_task_retries": a.get("max_task_retries"),
            }
        )
    return out


async def object_rows(src: Sources) -> list[dict]:
    out = []
    for node, report in await src.per_node("list_objects"):
        for row in report["objects"]:
            kinds = row.get("reference_kinds") or []
            out.append(
                dict(
                    row,
                    object_size=row.get("size"),
                    reference_type=kinds[0] if kinds else "UNKNOWN",
                    type="DRIVER" if row.get("process") == "driver" else "WORKER",
                    ip=node.get("node_ip"),
                    task_status="FINISHED" if row.get("where") != "pending" else "PENDING",
                )
            )
    return out


async def worker_rows(src: Sources) -> list[dict]:
    out = []
    for node, workers in await src.per_node("list_workers"):
        for w in workers:
            mode = w.get("mode")
            out.append(
                {
                    "worker_id": w.get("worker_id"),
                    "is_alive": True,
                    "worker_type": "DRIVER"
                    if mode == "driver"
                    else ("WORKER" if mode == "worker" else "OWNER"),
                    "node_id": node["node_id"],
                    "ip": node.get("node_ip"),
                    "pid": w.get("pid"),
                    "job_id": w.get("job_id"),
                    "address": w.get("address"),
                }
            )
    return out


async def placement_group_rows(src: Sources) -> list[dict]:
    out = []
    for pg in (await src.gcs_call("placement_group_table", {})).values():
        out.append(
            {
                "placement_group_id": pg["placement_group_id"],
                "name": pg.get("name") or "",
                "state": pg["state"],
                "strategy": pg.get("strategy"),
                "is_detached": bool(pg.get("is_detached")),
                "bundles": [
                    {"bundle_id": i, "unit_resources": b, "node_id": pg.get("bundles_to_node_id", {}).get(i)}
                    for i, b in sorted(pg.get("bundles", {}).items())
                ],
                "bundles_to_node_id": pg.get("bundles_to_node_id"),
                "stats": pg.get("stats"),
            }
        )
    return out


async def job_rows(src: Sources) -> list[dict]:
    from skate.dashboard.modules.job.manager import JobManager

    jobs = await JobManager(SimpleNamespace(gcs=src)).list_jobs()  # type: ignore[arg-type]
    return [dict(j) for j in jobs]


ROW_SOURCES = {
    "nodes": node_rows,
    "actors": actor_rows,
    "objects": object_rows,
    "workers": worker_rows,
    "placement_groups": placement_group_rows,
    "jobs": job_rows,
}


def check_resource(resource: str) -> str:
    name = resource.replace("-", "_")
    if name not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}: choose one of {', '.join(RESOURCES)}")
    return name


async def list_resource(
    src: Sources, resource: str, filters: Any = None, limit: int = 100, detail: bool = False
) -> tuple[list[StateRow], int, dict]:
    """(rows, how many matched before the limit, extra info such as task-event drops)."""
    resource = check_resource(resource)
    if resource == "tasks":
        reply = await src.gcs_call("get_task_events", {"filters": filters or [], "limit": limit})
        rows, total = [StateRow(r) for r in reply["rows"]], reply["total"]
        info = {"task_events": reply["stats"]}
    else:
        rows, total = query(await ROW_SOURCES[resource](src), filters, limit)
        info = {}
    if not detail:
        hidden = DETAIL_ONLY.get(resource, ())
        rows = [StateRow({k: v for k, v in r.items() if k not in hidden}) for r in rows]
    return rows, total, info


async def summarize(src: Sources, resource: str) -> dict:
    """Ray's summaries: tasks by function and state, actors by class and state, objects by call site."""
    if resource == "tasks":
        reply = await src.gcs_call("get_task_events", {"summary": True})
        return {
            "summary": reply["summary"],
            "total_tasks": sum(sum(s["state_counts"].values()) for s in reply["summary"].values()),
            "task_events": reply["stats"],
        }
    if resource == "actors":
        summary: dict[str, dict] = {}
        rows = await actor_rows(src)
        for a in rows:
            entry = summary.setdefault(a["class_name"], {"class_name": a["class_name"], "state_counts": {}})
            entry["state_counts"][a["state"]] = entry["state_counts"].get(a["state"], 0) + 1
        return {"summary": summary, "total_actors": len(rows)}
    if resource == "objects":
        by_site: dict[str, dict] = {}
        rows = await object_rows(src)
        for o in rows:
            site = o.get("call_site") or "(unknown)"
            entry = by_site.setdefault(
                site, {"total_objects": 0, "total_size_mb": 0.0, "ref_type_counts": {}, "_nodes": set()}
            )
            entry["total_objects"] += 1
            entry["total_size_mb"] += (o.get("object_size") or 0) / 2**20
            entry["ref_type_counts"][o["reference_type"]] = (
                entry["ref_type_counts"].get(o["reference_type"], 0) + 1
            )
            entry["_nodes"].add(o.get("node_id"))
        for entry in by_site.values():
            entry["total_num_nodes"] = len(entry.pop("_nodes"))
        return {
            "summary": by_site,
            "total_objects": len(rows),
            "total_size_mb": sum(e["total_size_mb"] for e in by_site.values()),
        }
    raise ValueError(f"cannot summarize {resource!r}: choose tasks, actors or objects")


class ConnectedSources(Sources):
    """Sources over connections of their own (the CLI, the dashboard): one to the GCS, one
    per raylet as needed; `close()` when done."""

    def __init__(self, gcs_address: str, token: bytes, name: str = "state"):
        self._address, self._token, self._name = gcs_address, token, name
        self._gcs: Any = None
        self._raylets: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        super().__init__(self._gcs_call, self._raylet)

    async def _gcs_call(self, method: str, payload: Any) -> Any:
        from skate.protocol import connect

        async with self._lock:
            if self._gcs is None or self._gcs.closed:
                self._gcs = await connect(self._address, self._token, name=f"{self._name}-gcs", timeout=5)
        return await self._gcs.call(method, payload)

    async def _raylet(self, node: dict) -> Any:
        from skate.protocol import connect

        conn = self._raylets.get(node["node_id"])
        if conn is None or conn.closed:
            conn = await connect(node["address"], self._token, name=f"{self._name}-raylet", timeout=5)
            self._raylets[node["node_id"]] = conn
        return conn

    def close(self) -> None:
        for conn in [self._gcs, *self._raylets.values()]:
            if conn is not None:
                conn.close("done")
        self._gcs, self._raylets = None, {}
