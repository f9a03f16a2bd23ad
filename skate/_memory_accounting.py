"""Memory accounting: readings of processes and of the store in, the memory report out; no I/O.

The figures (docs/memory.md explains them as users meet them):

- A process's **rss** is every page it has mapped in RAM. Linux splits it in two: anonymous
  pages (what the process allocated: the Python heap, numpy buffers it made) and pages backed
  by a file or by shared memory (libraries, and the object store's `/dev/shm` arena once the
  process has read or written an object there). psutil reports the second part as `shared`.
- **heap = rss - shared**: the process's own memory. The store's pages are never part of it,
  however many processes read them, so a worker reading a 200 MB object from the store does not
  grow its heap, while one building a 200 MB list does. (USS and PSS were rejected: a store page
  mapped by one process alone counts as private, so USS would put the object in the reader's
  heap and count it again in the store; PSS splits it between readers, so it still counts
  twice once added to the store's figure.) One caveat: a forked worker still shares, copy on
  write, the anonymous pages it inherited from the zygote, and each worker's heap includes them.
- **store_mapped**: the resident pages of the store's arena mapped by the process (part of its
  `shared`). It says how much of the store a process is reading; it is never added to a total,
  because those pages are the store's, counted once in the node's `store.used_bytes`.

Totals are therefore `sum of heaps + store used`, per node and for the cluster (plus the GCS's
heap): shared pages, the store's and the libraries', are never counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Ray's `memory --units`: decimal multiples.
UNITS: dict[str, int] = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}
TOTALS_NOTE = "totals = heaps + store used; shared pages (the store's, libraries) are counted once"


def process_figures(reading: dict[str, Any], role: str, name: str | None = None) -> dict[str, Any]:
    """One process's figures from a reading {pid, rss, shared, store_mapped} (bytes).

    `role` says what the process is (gcs, raylet, zygote, driver, worker, actor), `name` what
    it runs (an actor's class, a task's name) when known.
    """
    rss = int(reading.get("rss", 0))
    shared = min(int(reading.get("shared", 0)), rss)
    return {
        "pid": int(reading["pid"]),
        "role": role,
        "name": name,
        "rss": rss,
        "shared": shared,
        "heap": rss - shared,
        "store_mapped": min(int(reading.get("store_mapped", 0)), shared),
    }


def store_breakdown(objects: Iterable[dict[str, Any]], totals: dict[str, Any]) -> dict[str, Any]:
    """What holds the store's memory, from one dict per stored object.

    Each object: size, in_memory, sealed, secondary, freed, readers (read pins now held).
    `totals`: used_bytes, capacity_bytes, spilled_bytes, restored_bytes, spill_disk_bytes.
    Of the bytes in memory, each object counts in exactly one of: `primary_bytes` (an owner's
    copy, pinned until the owner frees it), `secondary_bytes` (a copy pulled from another node,
    dropped first when room is needed), `being_created_bytes` (not sealed yet), and
    `freed_held_by_reads_bytes` (freed by its owner, kept while a reader still holds it).
    `reading_bytes` (objects with a read in progress) overlaps those and is not added to them.
    """
    out = {
        "primary_bytes": 0,
        "secondary_bytes": 0,
        "being_created_bytes": 0,
        "freed_held_by_reads_bytes": 0,
        "reading_bytes": 0,
        "num_in_memory": 0,
        "num_only_on_disk": 0,
    }
    for obj in objects:
        size = int(obj["size"])
        if not obj["in_memory"]:
            out["num_only_on_disk"] += 1 if obj["sealed"] and not obj["freed"] else 0
            continue
        out["num_in_memory"] += 1
        if not obj["sealed"]:
            out["being_created_bytes"] += size
        elif obj["secondary"]:
            out["secondary_bytes"] += size
        elif obj["freed"]:
            out["freed_held_by_reads_bytes"] += size
        else:
            out["primary_bytes"] += size
        if obj["readers"]:
            out["reading_bytes"] += size
    for key in ("used_bytes", "capacity_bytes", "spilled_bytes", "restored_bytes", "spill_disk_bytes"):
        out[key] = int(totals.get(key, 0))
    return out


def node_report(
    node_id: str, raylet: dict[str, Any], processes: list[dict[str, Any]], store: dict[str, Any]
) -> dict[str, Any]:
    """A node's memory: the raylet's and its other processes' figures (process_figures), the
    store (store_breakdown), and totals that count shared pages once."""
    everyone = [raylet, *processes]
    heap = sum(p["heap"] for p in everyone)
    return {
        "node_id": node_id,
        "raylet": raylet,
        "processes": sorted(processes, key=lambda p: (p["role"], p["pid"])),
        "store": store,
        "totals": {
            "heap_bytes": heap,
            "store_used_bytes": store["used_bytes"],
            "store_mapped_bytes": sum(p["store_mapped"] for p in everyone),  # informational
            "total_bytes": heap + store["used_bytes"],
            "note": TOTALS_NOTE,
        },
    }


def table_figures(tables: dict[str, tuple[int, int]]) -> dict[str, dict[str, int]]:
    """The GCS's tables as {name: {count, bytes}} from {name: (count, bytes)}."""
    return {name: {"count": int(n), "bytes": int(b)} for name, (n, b) in sorted(tables.items())}


def cluster_report(gcs: dict[str, Any] | None, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole report: the GCS ({process: figures, tables}), each node's report, and cluster
    totals (the GCS's heap + every node's heaps + every store's used bytes)."""
    gcs_heap = gcs["process"]["heap"] if gcs and gcs.get("process") else 0
    heap = gcs_heap + sum(n["totals"]["heap_bytes"] for n in nodes)
    store = sum(n["totals"]["store_used_bytes"] for n in nodes)
    return {
        "gcs": gcs,
        "nodes": nodes,
        "totals": {
            "system_heap_bytes": gcs_heap
            + sum(n["raylet"]["heap"] for n in nodes)
            + sum(p["heap"] for n in nodes for p in n["processes"] if p["role"] == "zygote"),
            "application_heap_bytes": sum(
                p["heap"] for n in nodes for p in n["processes"] if p["role"] != "zygote"
            ),
            "heap_bytes": heap,
            "store_used_bytes": store,
            "store_capacity_bytes": sum(n["store"]["capacity_bytes"] for n in nodes),
            "total_bytes": heap + store,
            "note": TOTALS_NOTE,
        },
    }


def in_units(n: int | float | None, units: str) -> str:
    """A byte count in Ray's `--units` (B, KB, MB, GB; decimal), with its unit."""
    if units not in UNITS:
        raise ValueError(f"unknown units {units!r}: use one of {', '.join(UNITS)}")
    if n is None:
        return "?"
    if units == "B":
        return f"{int(n)} B"
    return f"{n / UNITS[units]:,.2f} {units}"


def gauges(report: dict[str, Any]) -> list[tuple[str, str, dict[str, str], float]]:
    """Prometheus gauges of a cluster_report: (name, help, labels, value)."""
    out: list[tuple[str, str, dict[str, str], float]] = []
    gcs = report.get("gcs") or {}
    if gcs.get("process"):
        for key in ("rss", "heap"):
            out.append((f"skate_gcs_{key}_bytes", f"The GCS process's {key}", {}, gcs["process"][key]))
    for table, fig in (gcs.get("tables") or {}).items():
        labels = {"Table": table}
        out.append(("skate_gcs_table_entries", "Entries of a GCS table", labels, fig["count"]))
        out.append(("skate_gcs_table_bytes", "Bytes of a GCS table's records", labels, fig["bytes"]))
    for node in report.get("nodes", []):
        nid = node["node_id"]
        for p in [node["raylet"], *node["processes"]]:
            labels = {"NodeId": nid, "Pid": str(p["pid"]), "Role": p["role"]}
            out.append(("skate_process_heap_bytes", "A process's heap (rss minus shared)", labels, p["heap"]))
            out.append(
                ("skate_process_store_mapped_bytes", "Store pages a process maps", labels, p["store_mapped"])
            )
        for key in ("primary_bytes", "secondary_bytes", "reading_bytes", "freed_held_by_reads_bytes"):
            out.append(
                (f"skate_object_store_{key}", f"Object store: {key}", {"NodeId": nid}, node["store"][key])
            )
    return out
