"""What one process records of task state transitions, until the I/O loop sends them.

Owners record a task's life on their side (arguments pending, waiting for a node, sent to a
worker, finished or failed and why); workers record when they run it and how it ended. Each
record is one tuple appended to a deque: the hot path costs an attribute lookup, a clock
read and an append. Every `interval` seconds the core worker's I/O loop `drain`s the deque
into one `add_task_events` message for the GCS (never one message per event), which keeps
a bounded window (`gcs.task_event_store`).

The deque is bounded too (`max_events`): a process that cannot send keeps the newest
events and counts the overflow as dropped. Off with `_system_config={"enable_task_events":
False}` or SKATE_TASK_EVENTS=0: the core worker then has no buffer and the hooks are
skipped after one `is None` test.
"""

from __future__ import annotations

import collections
import os
import time
from typing import Any

from skate import _task_states as ts

DEFAULT_INTERVAL_S = 1.0
DEFAULT_MAX_EVENTS = 100_000
ERROR_MESSAGE_LIMIT = 1000


def enabled() -> bool:
    """Whether this process records task events (SKATE_TASK_EVENTS, on unless "0")."""
    return os.environ.get("SKATE_TASK_EVENTS", "1") != "0"


def interval_s() -> float:
    ms = os.environ.get("SKATE_TASK_EVENTS_REPORT_INTERVAL_MS")
    return int(ms) / 1000 if ms else DEFAULT_INTERVAL_S


def task_info(spec: Any) -> dict:
    """The static part of a task's record, from its spec (built at drain, off the hot path)."""
    if spec.actor_id is None:
        kind = ts.NORMAL_TASK
    elif spec.method is None:
        kind = ts.ACTOR_CREATION_TASK
    else:
        kind = ts.ACTOR_TASK
    return {
        "name": spec.name,
        "type": kind,
        "func_or_class_name": spec.name,
        "job_id": spec.job_id,
        "actor_id": spec.actor_id.hex() if spec.actor_id is not None else None,
        "required_resources": dict(spec.resources or {}),
        "placement_group_id": spec.placement_group[0] if spec.placement_group else None,
        "runtime_env": spec.runtime_env,
    }


class TaskEventBuffer:
    """Task events recorded by this process, waiting for the next send."""

    def __init__(self, max_events: int = DEFAULT_MAX_EVENTS, clock=time.time):
        self.events: collections.deque = collections.deque(maxlen=max_events)
        self.max_events = max_events
        self.clock = clock
        self.dropped = 0  # events overwritten because the deque was full

    # -- recording (any thread; each one append) ---------------------------------------
    def submitted(self, spec: Any) -> None:
        """Owner: a task was submitted and waits for its arguments. Carries the spec, whose
        static fields are read at drain time."""
        self.events.append((spec.task_id, spec.attempt, ts.PENDING_ARGS_AVAIL, self.clock(), spec))

    def state(self, spec: Any, state: int) -> None:
        self.events.append((spec.task_id, spec.attempt, state, self.clock(), None))

    def failed(self, spec: Any, error_type: str | None, message: str | None = None) -> None:
        """The attempt failed; error_type None when the recorder does not know why (an owner
        that got an error result: the worker's event says why)."""
        extra = None if error_type is None else (error_type, (message or "")[:ERROR_MESSAGE_LIMIT])
        self.events.append((spec.task_id, spec.attempt, ts.FAILED, self.clock(), extra))

    # -- sending (I/O loop) --------------------------------------------------------------
    def drain(self) -> list[list] | None:
        """Take every event recorded so far, in wire form: [task_id, attempt, state, time,
        extra] with extra the task's info dict, [error_type, message], or None."""
        events = self.events
        n = len(events)
        if n == 0:
            return None
        if n >= self.max_events:
            self.dropped += 1  # at least one: the deque may have overwritten some
        popleft = events.popleft
        out = []
        for _ in range(n):
            tid, attempt, state, when, extra = popleft()
            if extra is not None and state == ts.PENDING_ARGS_AVAIL:
                extra = task_info(extra)
            out.append([tid, attempt, state, when, extra])
        return out

    def batch(self, node_id: str, worker_id: str, pid: int) -> dict | None:
        """The `add_task_events` message for what was recorded since the last one (None: nothing)."""
        events = self.drain()
        if events is None:
            return None
        dropped, self.dropped = self.dropped, 0
        return {"node_id": node_id, "worker_id": worker_id, "pid": pid, "events": events, "dropped": dropped}
