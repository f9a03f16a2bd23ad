"""What one process records of task state transitions, until the I/O loop sends them.

Owners record a task's life on their side (arguments pending, waiting for a node, sent to a
worker, finished or failed and why); workers record when they run it and how it ended.

The common life costs a few clock reads and one append per side: the owner keeps the times
of a call on its `TaskEntry` (`ev_*` slots) and appends one row of atoms when it finishes; the
worker appends one row when the call returns. A task's static info is an index into a small
cache (function and options), not its spec, so nothing the garbage collector must trace stays
alive. Every `interval` seconds the core worker's I/O loop takes the rows as they are (the
GCS keeps them as one msgpack blob it reads only when asked) and reports what is still in
flight (calls submitted or running since the last send) as open records, once; rarer things
(failures, a call that ends after it was reported) go through a deque of single events. One
`add_task_events` message per interval, never one per event; the GCS keeps a bounded window
(`gcs.task_event_store`).

The deque is bounded too (`max_events`): a process that cannot send keeps the newest
events and counts the overflow as dropped. Off with `_system_config={"enable_task_events":
False}` or SKATE_TASK_EVENTS=0: the core worker then has no buffer and the hooks are
skipped after one `is None` test.
"""

from __future__ import annotations

import collections
import itertools
import operator
import os
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

import msgspec

from skate import _task_states as ts

DEFAULT_INTERVAL_S = 1.0
DEFAULT_MAX_EVENTS = 100_000
MAX_CACHED_INFOS = 1024  # distinct (function, options) whose info is cached per process
ERROR_MESSAGE_LIMIT = 1000
# A single event that stands for two: ran (RUNNING at `extra`, FINISHED at `when`).
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
        self.events: collections.deque = collections.deque(maxlen=max_events)  # single events
        # rows of calls that ended without being reported in flight: an owner's
        # (task_id, attempt, info, args_time, ready_time, pushed_time, end_time) and a worker's
        # (task_id, attempt, start_time, end_time)
        self.owner_done: collections.deque = collections.deque(maxlen=max_events)
        self.worker_done: collections.deque = collections.deque(maxlen=max_events)
        self.max_events = max_events
        self.clock = clock
        self.dropped = 0  # events overwritten because a deque was full
        # calls running in this worker: task id -> (spec, start time)
        self.running: dict[bytes, tuple[Any, float]] = {}
        # attempts reported while in flight (by task id): their ends go as open records too
        self._reported: set[bytes] = set()
        # info ids by what makes two calls' infos equal; the entries of `_infos` keep the
        # objects whose ids are in the keys alive (so no id is reused while cached)
        self._info_ids: dict[tuple, int] = {}
        self._infos: dict[int, tuple] = {}
        self._next_info = itertools.count()

    # -- an owner's calls (the I/O thread) ---------------------------------------------
    def submitted(self, entry: Any, ready: bool = False, at: float | None = None) -> None:
        """A call was submitted and waits for its arguments (with ready, it has none to wait
        for: pending a node at the same instant). Its times live on the entry from now on
        (`ev_info`, `ev_args`, `ev_ready`, `ev_pushed`, `ev_reported`). `at`: when it was,
        if earlier than now (a call its user thread pushed, recorded later on the loop)."""
        spec = entry.spec
        key = (
            spec.name,
            spec.actor_id,
            spec.method is None,
            spec.job_id,
            id(spec.resources),
            id(spec.placement_group),
            id(spec.runtime_env),
        )
        info: Any = self._info_ids.get(key)
        if info is None:
            info = self._cache_info(key, spec)
        now = self.clock() if at is None else at
        entry.ev_info = info
        entry.ev_args = now
        entry.ev_ready = now if ready else None
        entry.ev_pushed = None
        entry.ev_reported = False

    def _cache_info(self, key: tuple, spec: Any) -> Any:
        """The info id for a new key, or the spec itself once the cache is full (many
        distinct options: those calls' infos are built at drain)."""
        if len(self._info_ids) >= MAX_CACHED_INFOS:
            return spec
        i = next(self._next_info)
        self._infos[i] = (task_info(spec), spec.resources, spec.placement_group, spec.runtime_env)
        self._info_ids[key] = i
        return i

    def ready(self, entry: Any) -> None:
        """The call's arguments are ready: it is pending a node (or its actor)."""
        if entry.ev_info is not None:
            entry.ev_ready = self.clock()

    def pushed(self, entry: Any, at: float | None = None) -> None:
        """The call was sent to a worker (at `at`, if given)."""
        if entry.ev_info is not None:
            entry.ev_pushed = self.clock() if at is None else at

    def finished(self, entry: Any) -> None:
        """The call finished (or failed in the worker, which says why)."""
        info = entry.ev_info
        if info is None:
            return
        entry.ev_info = None
        spec = entry.spec
        if entry.ev_reported:  # reported in flight: its end is an open record
            self.events.append((spec.task_id, spec.attempt, ts.FINISHED, self.clock(), None))
        else:
            times = (entry.ev_args, entry.ev_ready, entry.ev_pushed, self.clock())
            self.owner_done.append((spec.task_id, spec.attempt, info, *times))

    def failed_entry(self, entry: Any, error_type: str | None, message: str | None = None) -> None:
        """The call failed on the owner's side (error_type None: the worker's event says why)."""
        spec = entry.spec
        info = entry.ev_info
        entry.ev_info = None
        if info is not None and not entry.ev_reported:  # its earlier states go first, as single events
            tid, attempt, append = spec.task_id, spec.attempt, self.events.append
            append((tid, attempt, ts.PENDING_ARGS_AVAIL, entry.ev_args, info))
            later = ((ts.PENDING_NODE_ASSIGNMENT, entry.ev_ready), (ts.SUBMITTED_TO_WORKER, entry.ev_pushed))
            for state, when in later:
                if when is not None:
                    append((tid, attempt, state, when, None))
        self.failed(spec, error_type, message)

    # -- single events (any thread) ------------------------------------------------------
    def failed(self, spec: Any, error_type: str | None, message: str | None = None) -> None:
        """The attempt failed; error_type None when the recorder does not know why (an owner
        that got an error result: the worker's event says why)."""
        extra = None if error_type is None else (error_type, (message or "")[:ERROR_MESSAGE_LIMIT])
        self.events.append((spec.task_id, spec.attempt, ts.FAILED, self.clock(), extra))

    # -- a worker's calls (the thread that runs them) ------------------------------------
    def started(self, spec: Any) -> float:
        """The call starts running. Nothing is queued: a drain finds it among the running
        ones (so a long call shows RUNNING), and `ran` records start and end at once."""
        now = self.clock()
        self.running[spec.task_id] = (spec, now)
        return now

    def ran(self, spec: Any, start: float) -> None:
        """The call that `started` at `start` finished. (The caller also takes it out of
        `running`, in a `finally`, whatever happened.)"""
        tid = spec.task_id
        self.running.pop(tid, None)
        if tid in self._reported:
            self.events.append((tid, spec.attempt, _RAN, self.clock(), start))
        else:
            self.worker_done.append((tid, spec.attempt, start, self.clock()))

    def ran_and_failed(self, spec: Any, start: float, error_type: str, message: str) -> None:
        """The call that `started` at `start` failed, and why."""
        self.running.pop(spec.task_id, None)
        self.events.append((spec.task_id, spec.attempt, ts.RUNNING, start, None))
        self.failed(spec, error_type, message)

    # -- sending (I/O loop) --------------------------------------------------------------
    def drain(self, in_flight: Iterable[Any] = ()) -> Drained | None:
        """Take everything recorded so far.

        `in_flight`: the owner's pending entries, newest first; those not reported yet are
        reported now, as open records, and the walk stops at the first one already reported
        (the older ones were seen by an earlier drain). Single events are coalesced into one
        open record per attempt, `[task_id, attempt, [state, time, ...], info, error]` (`info`
        a key of the infos, -1: none; `error` `[error_type, message]` or None). The done rows
        go as they are."""
        infos: dict[int, dict] = {}
        cached = self._infos
        records: dict[bytes, list] = {}  # by task id: the usual one attempt per task and batch
        earlier: list[list] = []  # records of attempts a later one of the same task replaced
        reported = self._reported
        limit = self.max_events
        for entry in in_flight:
            info = entry.ev_info
            if info is None:
                continue
            if entry.ev_reported or len(reported) >= limit:
                break
            entry.ev_reported = True
            spec = entry.spec
            times = [ts.PENDING_ARGS_AVAIL, entry.ev_args]
            if entry.ev_ready is not None:
                times += (ts.PENDING_NODE_ASSIGNMENT, entry.ev_ready)
            if entry.ev_pushed is not None:
                times += (ts.SUBMITTED_TO_WORKER, entry.ev_pushed)
            records[spec.task_id] = [spec.task_id, spec.attempt, times, self._info_key(info, infos), None]
        events = self.events
        n = len(events)
        if n >= self.max_events:
            self.dropped += 1  # at least one: the deque may have overwritten some
        popleft = events.popleft
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
            if extra is None:
                continue
            if state == ts.PENDING_ARGS_AVAIL:
                rec[3] = self._info_key(extra, infos)
            else:
                rec[4] = list(extra)
        try:
            running = list(self.running.items())
        except RuntimeError:  # changed by another thread as it was read: next time
            running = []
        for tid, (spec, start) in running:  # calls running now, shown once
            if tid not in reported and tid not in records and len(reported) < limit:
                records[tid] = [tid, spec.attempt, [ts.RUNNING, start], -1, None]
        owner_done = list(self.owner_done)  # (appended on this thread only)
        self.owner_done.clear()
        worker_done = _take(self.worker_done)
        if not records and not owner_done and not worker_done:
            return None
        opened: list[list] = []
        for rec in itertools.chain(earlier, records.values()):
            tid = rec[0]
            if rec[2][-2] < ts.FINISHED:  # not over (its last state is its furthest)
                reported.add(tid)
            else:
                reported.discard(tid)
            opened.append(rec)
        jobs: dict[str, int] = {}
        if owner_done:
            if not all(type(row[2]) is int for row in owner_done):  # specs whose info was not cached
                owner_done = [
                    row if type(row[2]) is int else (row[0], row[1], self._info_key(row[2], infos), *row[3:])
                    for row in owner_done
                ]
            for info, count in collections.Counter(map(_third, owner_done)).items():
                if info not in infos:
                    infos[info] = cached[info][0]
                job = infos[info]["job_id"] or ""
                jobs[job] = jobs.get(job, 0) + count
        if reported and worker_done:  # reported by a drain between `ran` and its row's taking
            for row in worker_done:
                reported.discard(row[0])
        num = (
            n
            + 2 * len(worker_done)
            + 4 * len(owner_done)
            - list(map(_fifth, owner_done)).count(None)
            - list(map(_sixth, owner_done)).count(None)
        )
        return Drained(infos, opened, owner_done, worker_done, jobs, num)

    def _info_key(self, info: Any, infos: dict[int, dict]) -> int:
        """The batch's key of a cached info id, or of a spec's info built now."""
        if type(info) is int:
            if info not in infos:
                infos[info] = self._infos[info][0]
            return info
        i = next(self._next_info)
        infos[i] = task_info(info)
        return i

    def batch(self, node_id: str, worker_id: str, pid: int, in_flight: Iterable[Any] = ()) -> dict | None:
        """The `add_task_events` message for what was recorded since the last one (None:
        nothing): {node_id, worker_id, pid, infos (by key), events (the open records), done
        (one blob of `[node_id, worker_id, pid, infos, owner rows, worker rows]`, or None),
        done_records, done_jobs (owner rows by job), num_events, dropped}."""
        drained = self.drain(in_flight)
        if drained is None:
            return None
        dropped, self.dropped = self.dropped, 0
        blob = None
        done = len(drained.owner_done) + len(drained.worker_done)
        if done:
            blob = _encode([node_id, worker_id, pid, drained.infos, drained.owner_done, drained.worker_done])
        return {
            "node_id": node_id,
            "worker_id": worker_id,
            "pid": pid,
            "infos": drained.infos if drained.opened else {},
            "events": drained.opened,
            "done": blob,
            "done_records": done,
            "done_jobs": drained.jobs,
            "num_events": drained.num_events,
            "dropped": dropped,
        }


_third, _fifth, _sixth = operator.itemgetter(2), operator.itemgetter(4), operator.itemgetter(5)


def _take(rows: collections.deque) -> list:
    """Everything in `rows` now, oldest first (appends by other threads meanwhile stay)."""
    n = len(rows)
    if n == 0:
        return []
    popleft = rows.popleft
    return [popleft() for _ in range(n)]


class Drained(NamedTuple):
    """What one drain took: the batch's info dicts by key, its open records, the done rows of
    each side, the owner rows by job, and how many events all that stands for."""

    infos: dict[int, dict]
    opened: list[list]
    owner_done: list
    worker_done: list
    jobs: dict[str, int]
    num_events: int


_encode = msgspec.msgpack.Encoder().encode
