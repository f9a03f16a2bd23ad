"""Task attempts as a Chrome trace (chrome://tracing, Perfetto): `skate.timeline()`, `skate timeline`.

One complete event ("ph": "X") per attempt that ran: its node as the process, its worker's
pid as the thread, from RUNNING to its end; the name is the task's, and the args carry its
ids, state and error type.
"""

from __future__ import annotations

import json
from typing import Any


def chrome_trace(rows: list[dict]) -> list[dict]:
    """Trace events of task rows listed with detail (start_time_ms and end_time_ms)."""
    events = []
    for row in rows:
        start, end = row.get("start_time_ms"), row.get("end_time_ms")
        if start is None:
            continue
        if end is None or end < start:
            end = start
        events.append(
            {
                "name": row.get("name") or row.get("func_or_class_name") or "task",
                "cat": (row.get("type") or "task").lower(),
                "ph": "X",
                "ts": start * 1000,  # microseconds
                "dur": (end - start) * 1000,
                "pid": f"node {str(row.get('node_id') or '?')[:8]}",
                "tid": f"worker {row.get('worker_pid') or '?'}",
                "args": {
                    "task_id": row.get("task_id"),
                    "attempt_number": row.get("attempt_number"),
                    "state": row.get("state"),
                    "error_type": row.get("error_type"),
                    "actor_id": row.get("actor_id"),
                    "job_id": row.get("job_id"),
                },
            }
        )
    events.sort(key=lambda e: e["ts"])
    return events


def timeline(filename: str | None = None) -> list[dict] | None:
    """The cluster's task timeline (the GCS's window of task events) as Chrome trace events;
    written to `filename` as JSON if given (then None is returned), as Ray's `ray.timeline`."""
    from skate.util.state import list_tasks

    events = chrome_trace(list_tasks(limit=10_000, detail=True))
    if filename is None:
        return events
    write(events, filename)
    return None


def write(events: list[Any], filename: str) -> None:
    with open(filename, "w") as f:
        json.dump(events, f)
