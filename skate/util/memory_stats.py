"""Memory accounting in the state API: `get_memory_stats()` (docs/memory.md).

The report joins the GCS's reading of itself (`gcs_info`'s memory: its process, its tables)
and every alive node's raylet report (`memory_report`: the raylet, its zygote, each worker and
driver of the node, the store), combined by skate._memory_accounting.cluster_report.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from skate import _memory_accounting as acct

# connect_node(node record) -> (connection, close function)
NodeConnector = Callable[[dict], Awaitable[tuple[Any, Callable[[], None]]]]


async def gather(gcs: Any, connect_node: NodeConnector) -> dict:
    """The cluster's memory report, asking the GCS over `gcs` and each alive node's raylet
    through `connect_node`."""
    info = await gcs.call("gcs_info", {})
    reports = []
    for node in await gcs.call("get_nodes"):
        if not node["alive"]:
            continue
        conn, close = await connect_node(node)
        try:
            report = await conn.call("memory_report", {})
        finally:
            close()
        report["node_ip"] = node.get("node_ip")
        reports.append(report)
    return acct.cluster_report((info or {}).get("memory"), reports)


def get_memory_stats(timeout: float = 30) -> dict:
    """The memory report of the cluster this process is connected to.

    {gcs: {process, tables}, nodes: [{node_id, raylet, processes, store, totals}], totals}:
    each process's pid, role, name, rss, shared, heap (rss minus shared) and store_mapped; each
    store's used and capacity bytes, primary/secondary/being-created/freed-but-read bytes,
    reading bytes, spilled and restored bytes; totals that count shared pages once (the
    store's pages are in `store_used_bytes`, never in a heap). All figures in bytes.
    """
    from skate._auto_init import not_initialized
    from skate.core_worker import context

    core = context.current
    if core is None:
        raise not_initialized()

    async def connect_node(node: dict) -> tuple[Any, Callable[[], None]]:
        if node["node_id"] == core.node_id:
            return core.raylet, lambda: None
        return await core.peer(node["address"]), lambda: None  # peers are cached by the core

    return core.run(gather(core.gcs, connect_node), timeout=timeout)


def memory_gauges(report: dict) -> list[tuple[str, str, dict[str, str], float]]:
    """The report as Prometheus gauges: (name, help, labels, value)."""
    return acct.gauges(report)


__all__ = ["get_memory_stats", "memory_gauges"]
