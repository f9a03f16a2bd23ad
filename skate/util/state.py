"""Cluster state for people: objects, nodes, actors, memory (Ray's `ray.util.state`)."""

from __future__ import annotations

from skate.util.memory_stats import get_memory_stats  # memory accounting (docs/memory.md)


def _core():
    from skate._api import _core as get_core

    return get_core()


def _raylet_reports(core) -> list[dict]:
    """list_objects from every alive node's raylet."""

    async def gather() -> list[dict]:
        reports = []
        for node in await core.gcs.call("get_nodes"):
            if not node["alive"]:
                continue
            conn = core.raylet if node["node_id"] == core.node_id else await core.peer(node["address"])
            reports.append(await conn.call("list_objects", {}))
        return reports

    return core.run(gather(), timeout=30)


def list_objects(filters: list[tuple] | None = None, limit: int = 10_000) -> list[dict]:
    """Every object referred to anywhere in the cluster: one row per (object, process).

    Each row has object_id, size, owner, reference_kinds (LOCAL_REFERENCE, USED_BY_PENDING_TASK,
    BORROWED_BY_OTHER_PROCESS, CAPTURED_IN_OBJECT, PINNED_IN_MEMORY), where (inline, in shared
    memory, spilled to disk, pending), node_id, pid and call_site (recorded when
    SKATE_RECORD_REF_CREATION_SITES=1). filters: [(field, "=", value), ...].
    """
    rows = [row for report in _raylet_reports(_core()) for row in report["objects"]]
    for field, op, value in filters or []:
        if op not in ("=", "!="):
            raise ValueError(f"unsupported filter operator {op!r}: use '=' or '!='")
        rows = [r for r in rows if (str(r.get(field)) == str(value)) == (op == "=")]
    return rows[:limit]


def object_store_stats() -> list[dict]:
    """Per node: store bytes used and capacity, objects, spilled and restored bytes."""
    return [report["store"] for report in _raylet_reports(_core())]


def list_nodes() -> list[dict]:
    from skate._api import nodes

    return nodes()


def list_actors() -> list[dict]:
    core = _core()
    out = []
    for a in core.request(core.gcs, "list_actors"):
        out.append({k: (v.hex() if isinstance(v, bytes) else v) for k, v in a.items() if k != "methods"})
    return out


def memory_summary() -> str:
    """A `skate memory` style report of the current cluster."""
    from skate.scripts.report import format_memory

    reports = _raylet_reports(_core())
    return format_memory(reports)


__all__ = [
    "get_memory_stats",
    "list_actors",
    "list_nodes",
    "list_objects",
    "memory_summary",
    "object_store_stats",
]
