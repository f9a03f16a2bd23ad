"""What one process records of task state transitions, until the I/O loop sends them.

Owners record a task's life on their side (arguments pending, waiting for a node, sent to a
worker, finished or failed and why); workers record when they run it and how it ended. Each
record is one tuple of atoms appended to a deque (a task's static info is an index into a
small cache, not its spec: nothing the garbage collector must trace stays alive), so the
hot path costs a few attribute reads, a clock read and an append. Every `interval` seconds
the core worker's I/O loop `drain`s the deque into one `add_task_events` message for the
GCS (never one message per event), coalesced to one record per task attempt; the GCS
keeps a bounded window (`gcs.task_event_store`).

The deque is bounded too (`max_events`): a process that cannot send keeps the newest
events and counts the overflow as dropped. Off with `_system_config={"enable_task_events":
False}` or SKATE_TASK_EVENTS=0: the core worker then has no buffer and the hooks are
skipped after one `is None` test.
"""

from __future__ import annotations

import collections
import itertools
import os
import time
from typing import Any, NamedTuple

import msgspec

from skate import _task_states as ts

DEFAULT_INTERVAL_S = 1.0
DEFAULT_MAX_EVENTS = 100_000
MAX_CACHED_INFOS = 1024  # distinct (function, options) whose info is cached per process
ERROR_MESSAGE_LIMIT = 1000
# Recorded states that stand for two: pending a node as soon as submitted (no arguments to
# wait for), and ran (RUNNING at `extra`, FINISHED at `when`).
_READY = -1
_RAN = -2


def enabled() -> bool:
    """Whether this process records task events (SKATE_TASK_EVENTS, on unless "0")."""
    return os.environ.get("SKATE_TASK_EVENTS", "1") != "0"


def interval_s() -> float:
    ms = os.environ.get("SKATE_TASK_EVENTS_REPORT_INTERVAL_MS")
    return int(ms) / 1000 if ms else DEFAULT_INTERVAL_S


def task_info(spec: Any) -> dict:
    """The static part of a task's record, from its spec (built once per distinct function
    and options, see `TaskEventBuffer.submitted`)."""
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
        # calls running in this worker: task id -> (spec, start time)
        self.running: dict[bytes, tuple[Any, float]] = {}
        # attempts reported while in flight (by task id): their ends go as open records too
        self._reported: set[bytes] = set()
        # info ids by what makes two calls' infos equal; the entries of `_infos` keep the
        # objects whose ids are in the keys alive (so no id is reused while cached)
        self._info_ids: dict[tuple, int] = {}
        self._infos: dict[int, tuple] = {}
        self._next_info = itertools.count()

    # -- recording (any thread; each one append) ---------------------------------------
    def submitted(self, spec: Any, ready: bool = False) -> None:
        """Owner: a task was submitted and waits for its arguments (with ready, it has none to
        wait for: it is pending a node at the same instant)."""
        pg = spec.placement_group
        key = (
            spec.name,
            spec.actor_id,
            spec.method is None,
            spec.job_id,
            id(spec.resources),
            id(pg),
            id(spec.runtime_env),
        )
        info: Any = self._info_ids.get(key)
        if info is None:
            info = self._cache_info(key, spec)
        self.events.append(
            (spec.task_id, spec.attempt, _READY if ready else ts.PENDING_ARGS_AVAIL, self.clock(), info)
        )

    def _cache_info(self, key: tuple, spec: Any) -> Any:
        """The info id for a new key, or the spec itself once the cache is full (many
        distinct options: those calls' infos are built at drain)."""
        if len(self._info_ids) >= MAX_CACHED_INFOS:
            return spec
        i = next(self._next_info)
        self._infos[i] = (task_info(spec), spec.resources, spec.placement_group, spec.runtime_env)
        self._info_ids[key] = i
        return i

    def state(self, spec: Any, state: int) -> None:
        self.events.append((spec.task_id, spec.attempt, state, self.clock(), None))

    def failed(self, spec: Any, error_type: str | None, message: str | None = None) -> None:
        """The attempt failed; error_type None when the recorder does not know why (an owner
        that got an error result: the worker's event says why)."""
        extra = None if error_type is None else (error_type, (message or "")[:ERROR_MESSAGE_LIMIT])
        self.events.append((spec.task_id, spec.attempt, ts.FAILED, self.clock(), extra))

    def started(self, spec: Any) -> float:
        """Worker: the call starts running. Nothing is queued: a drain finds it among the
        running ones (so a long call shows RUNNING), and `ran` records start and end at once."""
        now = self.clock()
        self.running[spec.task_id] = (spec, now)
        return now

    def ran(self, spec: Any, start: float) -> None:
        """Worker: the call that `started` at `start` finished. (The caller takes it out of
        `running`, in a `finally`, whatever happened.)"""
        self.events.append((spec.task_id, spec.attempt, _RAN, self.clock(), start))

    def ran_and_failed(self, spec: Any, start: float, error_type: str, message: str) -> None:
        """Worker: the call that `started` at `start` failed, and why."""
        self.events.append((spec.task_id, spec.attempt, ts.RUNNING, start, None))
        self.failed(spec, error_type, message)

    # -- sending (I/O loop) --------------------------------------------------------------
    def drain(self) -> Drained | None:
        """Take every event recorded so far, coalesced into one record per task attempt,
        `[task_id, attempt, [state, time, ...], info, error]`: `info` a key of the batch's
        infos (-1: none in this batch), `error` `[error_type, message]` or None.

        Records of attempts that began and ended since the last drain are `done`; the GCS
        keeps them as one opaque blob and reads it only when asked (`gcs.task_event_store`).
        The rest are `open`: attempts still in flight, or ending after an earlier drain
        reported them; the GCS merges those at once. One record per attempt, each info
        once per batch and no per-record work in the GCS for the common case are what keep
        task events within a few percent of the hot paths."""
        events = self.events
        n = len(events)
        if n == 0 and not self.running:
            return None
        if n >= self.max_events:
            self.dropped += 1  # at least one: the deque may have overwritten some
        popleft = events.popleft
        records: dict[bytes, list] = {}  # by task id: the usual one attempt per task and batch
        earlier: list[list] = []  # records of attempts a later one of the same task replaced
        infos: dict[int, dict] = {}
        cached = self._infos
        for _ in range(n):
            tid, attempt, state, when, extra = popleft()
            rec = records.get(tid)
            if rec is None or rec[1] != attempt:
                if rec is not None:
                    earlier.append(rec)
                rec = records[tid] = [tid, attempt, [], -1, None]
            if state >= 0:
                rec[2] += (state, when)
            elif state == _RAN:  # extra: when it started
                rec[2] += (ts.RUNNING, extra, ts.FINISHED, when)
                continue
            else:  # _READY
                rec[2] += (ts.PENDING_ARGS_AVAIL, when, ts.PENDING_NODE_ASSIGNMENT, when)
            if extra is None:
                continue
            if state <= ts.PENDING_ARGS_AVAIL:
                if type(extra) is int:
                    if extra not in infos:
                        infos[extra] = cached[extra][0]
                else:  # a spec whose info was not cached
                    i = next(self._next_info)
                    infos[i] = task_info(extra)
                    extra = i
                rec[3] = extra
            else:
                rec[4] = list(extra)
        reported = self._reported
        try:
            running = list(self.running.items())
        except RuntimeError:  # changed by another thread as it was read: next time
            running = []
        for tid, (spec, start) in running:  # calls running now, shown once
            if tid not in reported and tid not in records:
                records[tid] = [tid, spec.attempt, [ts.RUNNING, start], -1, None]
        if not records:
            return None
        opened: list[list] = []
        done: list[list] = []
        jobs: dict[str, int] = {}
        for rec in itertools.chain(earlier, records.values()):
            tid = rec[0]
            if rec[2][-2] < ts.FINISHED:  # not over (its last state is its furthest)
                if len(reported) < self.max_events:
                    reported.add(tid)
                opened.append(rec)
            elif tid in reported:
                reported.discard(tid)
                opened.append(rec)
            else:
                done.append(rec)
                if rec[3] >= 0:
                    job = infos[rec[3]]["job_id"] or ""
                    jobs[job] = jobs.get(job, 0) + 1
        return Drained(infos, opened, done, jobs, n)

    def batch(self, node_id: str, worker_id: str, pid: int) -> dict | None:
        """The `add_task_events` message for what was recorded since the last one (None:
        nothing): {node_id, worker_id, pid, infos (by key), events (the open records), done
        (the done records' blob, or None), done_records, done_jobs (done records with their
        info, by job), num_events, dropped}."""
        drained = self.drain()
        if drained is None:
            return None
        dropped, self.dropped = self.dropped, 0
        blob = None
        if drained.done:
            blob = _encode([node_id, worker_id, pid, drained.infos, drained.done])
        return {
            "node_id": node_id,
            "worker_id": worker_id,
            "pid": pid,
            "infos": drained.infos if drained.opened else {},
            "events": drained.opened,
            "done": blob,
            "done_records": len(drained.done),
            "done_jobs": drained.jobs,
            "num_events": drained.num_events,
            "dropped": dropped,
        }


class Drained(NamedTuple):
    """What one drain took: the batch's info dicts by key, its open and done records, how
    many done records carry info by job, and how many events went in."""

    infos: dict[int, dict]
    opened: list[list]
    done: list[list]
    jobs: dict[str, int]
    num_events: int


_encode = msgspec.msgpack.Encoder().encode
