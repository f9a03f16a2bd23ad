"""Cluster state for people (Ray's `ray.util.state`): list, get and summarize what runs where.

`list_<resource>(filters=[(key, "=" or "!=", value)], limit=100, timeout=30, detail=False)`
for nodes, actors, tasks, objects, jobs, placement groups and workers; `get_<resource>(id)`;
`summarize_tasks/actors/objects()`. Rows carry Ray's field names and read both as dicts
and as attributes. Tasks come from task events (`core_worker.task_events`), kept by the GCS
in a bounded window: a listing of a long-running cluster shows the newest attempts.
Also `memory_summary()` and `object_store_stats()` (Skate's `skate memory`).
"""

from __future__ import annotations

import logging
from typing import Any

from skate._state_query import StateRow
from skate.exceptions import GetTimeoutError
from skate.util.memory_stats import get_memory_stats
from skate.util.state.sources import ID_FIELDS, Sources, check_resource, list_resource, summarize

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30
DEFAULT_LIMIT = 100


def _core():
    from skate._api import _core as get_core

    return get_core()


def core_sources(core: Any) -> Sources:
    """Sources through a driver's core worker (the coroutines run on its I/O loop)."""

    async def raylet(node: dict):
        if node["node_id"] == core.node_id:
            return core.raylet
        return await core.peer(node["address"])

    return Sources(lambda method, payload: core.gcs.call(method, payload), raylet)


def _run(coro: Any, timeout: float | None):
    core = _core()
    try:
        return core.run(coro, timeout=timeout)
    except TimeoutError as exc:  # concurrent.futures.TimeoutError is TimeoutError since 3.11
        raise GetTimeoutError(f"the state query did not finish within {timeout} s") from exc


def _list(resource: str, filters: Any, limit: int, timeout: float, detail: bool) -> list[StateRow]:
    core = _core()
    rows, total, info = _run(list_resource(core_sources(core), resource, filters, limit, detail), timeout)
    if total > len(rows):
        logger.info("%d of %d %s shown (limit=%d)", len(rows), total, resource, limit)
    stats = info.get("task_events")
    if stats and stats.get("num_evicted"):
        logger.info(
            "%d task attempts were dropped from the GCS's window (task_events_max_num_task_in_gcs=%d)",
            stats["num_evicted"],
            stats["max_tasks"],
        )
    return rows


def list_nodes(filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT, detail=False, **_: Any):
    """Every node, alive or dead: node_id, node_ip, is_head_node, state, resources_total..."""
    return _list("nodes", filters, limit, timeout, detail)


def list_actors(filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT, detail=False, **_: Any):
    """Every actor: actor_id, class_name, state, job_id, name, node_id, pid, death_cause..."""
    return _list("actors", filters, limit, timeout, detail)


def list_tasks(filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT, detail=False, **_: Any):
    """Task attempts from task events: task_id, attempt_number, name, state, type, node_id,
    worker_id, worker_pid, error_type (events and times with detail=True)."""
    return _list("tasks", filters, limit, timeout, detail)


def list_objects(filters=None, limit=DEFAULT_LIMIT * 100, timeout=DEFAULT_TIMEOUT, detail=True, **_: Any):
    """Every object referred to anywhere in the cluster: one row per (object, process).

    Each row has object_id, object_size (also size), reference_type (the first of
    reference_kinds: LOCAL_REFERENCE, USED_BY_PENDING_TASK, BORROWED_BY_OTHER_PROCESS,
    CAPTURED_IN_OBJECT, PINNED_IN_MEMORY), where (inline, in shared memory, spilled to
    disk, pending), node_id, ip, pid, type (DRIVER or WORKER), owner and call_site (recorded
    when SKATE_RECORD_REF_CREATION_SITES=1).
    """
    return _list("objects", filters, limit, timeout, detail)


def list_jobs(filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT, detail=False, **_: Any):
    """Submitted jobs and drivers: job_id, submission_id, type, status, entrypoint..."""
    return _list("jobs", filters, limit, timeout, detail)


def list_placement_groups(filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT, detail=False, **_: Any):
    """Placement groups: placement_group_id, name, state, strategy, bundles, is_detached."""
    return _list("placement_groups", filters, limit, timeout, detail)


def list_workers(filters=None, limit=DEFAULT_LIMIT, timeout=DEFAULT_TIMEOUT, detail=False, **_: Any):
    """Live worker and driver processes: worker_id, worker_type, node_id, ip, pid, job_id."""
    return _list("workers", filters, limit, timeout, detail)


def _get(resource: str, id: Any, timeout: float) -> StateRow | None:
    resource = check_resource(resource)
    if hasattr(id, "hex") and not isinstance(id, (str, bytes)):
        id = id.hex()
    if isinstance(id, bytes):
        id = id.hex()
    if resource == "tasks" and len(id) == 40:  # an ObjectRef's id: its task's id and an index
        id = id[:32]
    rows = _list(resource, [(ID_FIELDS[resource], "=", id)], 10_000, timeout, True)
    if not rows:
        return None
    if resource == "tasks":  # the latest attempt
        return max(rows, key=lambda r: r["attempt_number"])
    return rows[0]


def get_node(id: str, timeout=DEFAULT_TIMEOUT, **_: Any) -> StateRow | None:
    return _get("nodes", id, timeout)


def get_actor(id: str, timeout=DEFAULT_TIMEOUT, **_: Any) -> StateRow | None:
    return _get("actors", id, timeout)


def get_task(id: Any, timeout=DEFAULT_TIMEOUT, **_: Any) -> StateRow | None:
    """The latest attempt of a task, by its id or an ObjectRef it returned."""
    return _get("tasks", id, timeout)


def get_objects(id: str, timeout=DEFAULT_TIMEOUT, **_: Any) -> list[StateRow]:
    """Every row of one object (one per process referring to it)."""
    return _list("objects", [("object_id", "=", id)], 10_000, timeout, True)


def get_job(id: str, timeout=DEFAULT_TIMEOUT, **_: Any) -> StateRow | None:
    found = _get("jobs", id, timeout)
    if found is None:
        rows = _list("jobs", [("submission_id", "=", id)], 1, timeout, True)
        found = rows[0] if rows else None
    return found


def get_placement_group(id: str, timeout=DEFAULT_TIMEOUT, **_: Any) -> StateRow | None:
    return _get("placement_groups", id, timeout)


def get_worker(id: str, timeout=DEFAULT_TIMEOUT, **_: Any) -> StateRow | None:
    return _get("workers", id, timeout)


def summarize_tasks(timeout=DEFAULT_TIMEOUT, **_: Any) -> dict:
    """Task attempts counted by function (or method) name and state."""
    return _run(summarize(core_sources(_core()), "tasks"), timeout)


def summarize_actors(timeout=DEFAULT_TIMEOUT, **_: Any) -> dict:
    """Actors counted by class and state."""
    return _run(summarize(core_sources(_core()), "actors"), timeout)


def summarize_objects(timeout=DEFAULT_TIMEOUT, **_: Any) -> dict:
    """Objects grouped by where they were created: count, size, reference types; and under
    "memory" the cluster's memory totals (get_memory_stats()["totals"], docs/memory.md)."""
    summary = _run(summarize(core_sources(_core()), "objects"), timeout)
    summary["memory"] = get_memory_stats(timeout)["totals"]
    return summary


def _raylet_reports(core) -> list[dict]:
    """list_objects from every alive node's raylet."""

    async def gather() -> list[dict]:
        return [report for _, report in await core_sources(core).per_node("list_objects")]

    return core.run(gather(), timeout=30)


def object_store_stats() -> list[dict]:
    """Per node: store bytes used and capacity, objects, spilled and restored bytes."""
    return [report["store"] for report in _raylet_reports(_core())]


def memory_summary() -> str:
    """A `skate memory` style report of the current cluster."""
    from skate.scripts.report import format_memory

    return format_memory(_raylet_reports(_core()))


__all__ = [
    "get_actor",
    "get_job",
    "get_memory_stats",
    "get_node",
    "get_objects",
    "get_placement_group",
    "get_task",
    "get_worker",
    "list_actors",
    "list_jobs",
    "list_nodes",
    "list_objects",
    "list_placement_groups",
    "list_tasks",
    "list_workers",
    "memory_summary",
    "object_store_stats",
    "summarize_actors",
    "summarize_objects",
    "summarize_tasks",
]
