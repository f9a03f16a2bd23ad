"""What one process knows about the objects it refers to, for `skate memory` and list_objects."""

from __future__ import annotations

import os
import traceback

from skate.core_worker.memory_store import IN_STORE, INLINE

RECORD_CALL_SITES = os.environ.get("SKATE_RECORD_REF_CREATION_SITES", "0") not in ("", "0", "false")


def call_site() -> str:
    """Where user code created a ref: the innermost frame outside the skate package."""
    for frame in reversed(traceback.extract_stack(limit=12)[:-1]):
        if f"{os.sep}skate{os.sep}" not in frame.filename:
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return "(unknown)"


def object_table(core) -> list[dict]:
    """One row per object this process refers to, with the kinds of reference it holds."""
    rows = []
    contained_in = {}
    for outer, refs in list(core.ownership.contained.items()):
        for ref in refs:
            contained_in[getattr(ref, "_id", None)] = outer
    for oid, (local, uses, owner, borrowers) in core.refs.snapshot().items():
        entry = core.store.get(oid)
        kinds = []
        if local > 0:
            kinds.append("LOCAL_REFERENCE")
        if uses > 0:
            kinds.append("USED_BY_PENDING_TASK")
        if borrowers > 0:
            kinds.append("BORROWED_BY_OTHER_PROCESS")
        if oid in contained_in:
            kinds.append("CAPTURED_IN_OBJECT")
        if oid in core.objects.pinned_views:
            kinds.append("PINNED_IN_MEMORY")
        size, where = None, "pending"
        if entry is not None:
            if entry[0] == INLINE:
                kind_inband_bufs = entry[1]
                size = len(kind_inband_bufs[1]) + sum(len(b) for b in kind_inband_bufs[2])
                where = "inline"
            elif entry[0] == IN_STORE:
                size, where = entry[2], "store"
        rows.append(
            {
                "object_id": oid.hex(),
                "size": size,
                "owner": core.worker_id if owner is None else owner[0],
                "owned_here": owner is None,
                "reference_kinds": kinds,
                "where": where,
                "node_id": core.node_id,
                "pid": os.getpid(),
                "process": core.mode,
                "call_site": core.ownership.call_sites.get(
                    oid, "(disabled: set SKATE_RECORD_REF_CREATION_SITES=1)"
                ),
            }
        )
    return rows
