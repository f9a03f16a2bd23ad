"""The GCS's own memory for the memory report: its process (rss, heap) and its tables' sizes.

A table's bytes are the size of its records encoded as msgpack, the form the durable storage
holds (skate.gcs.persistence): what the table's content weighs, not Python's object overhead
around it, which is part of the process's heap.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from skate import _memory_accounting as acct
from skate._process_memory import read_process
from skate.gcs.persistence import ACTOR_FIELDS, GROUP_FIELDS

_encoder = msgspec.msgpack.Encoder(enc_hook=repr)  # anything msgpack cannot encode counts as its repr


def _size(record: Any) -> int:
    try:
        return len(_encoder.encode(record))
    except (TypeError, ValueError, OverflowError):
        return len(repr(record))


def table_sizes(gcs: Any) -> dict[str, tuple[int, int]]:
    """{table: (entries, bytes)} for nodes, actors, jobs, placement groups and the KV store."""
    nodes = list(gcs.nodes.values())
    actors = [{f: getattr(a, f) for f in ACTOR_FIELDS} for a in list(gcs.actors.actors.values())]
    jobs = [{k: v for k, v in j.items() if k != "conn"} for j in list(gcs.jobs.values())]
    groups = [{f: getattr(g, f) for f in GROUP_FIELDS} for g in list(gcs.pgs.groups.values())]
    kv_entries, kv_bytes = gcs.kv.sizes()
    return {
        "nodes": (len(nodes), sum(map(_size, nodes))),
        "actors": (len(actors), sum(map(_size, actors))),
        "jobs": (len(jobs), sum(map(_size, jobs))),
        "placement_groups": (len(groups), sum(map(_size, groups))),
        "kv": (kv_entries, kv_bytes),
    }


def gcs_memory(gcs: Any) -> dict:
    """{process: figures of this process, tables: {name: {count, bytes}}}."""
    reading = read_process(os.getpid()) or {"pid": os.getpid()}
    return {"process": acct.process_figures(reading, "gcs"), "tables": acct.table_figures(table_sizes(gcs))}
