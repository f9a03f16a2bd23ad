"""What one process records of task state transitions, until the I/O loop sends them.

Owners record a task's life on their side (arguments pending, waiting for a node, sent to a
worker, finished or failed and why); workers record when they run it and how it ended.

The common life costs a few clock reads and one append per side: the owner keeps the times
of a call on its `TaskEntry` (`ev_*` slots) and appends one packed row (`OWNER_ROW`: bytes, not
a tuple) when it finishes; the worker appends one (`WORKER_ROW`) when the call returns. A
task's static info is an index into a small cache (function and options; the last one found
is remembered, so a burst of calls of one function costs a few identity checks), not its
spec, so nothing the garbage collector must trace stays alive and no row is ever traced.
Every `interval` seconds the core worker's I/O loop joins the rows into one byte string (the
GCS keeps it, in a msgpack blob, and reads it only when asked) and reports what is still in
flight and was already at the previous send as open records, once; rarer things
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
import os
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import msgspec

from skate import _task_states as ts
from skate._ids import TASK_ID_BYTES

DEFAULT_INTERVAL_S = 1.0
DEFAULT_MAX_EVENTS = 100_000
MAX_CACHED_INFOS = 1024  # distinct (function, options) whose info is cached per process
ERROR_MESSAGE_LIMIT = 1000
# A single event that stands for two: ran (RUNNING at `extra`, FINISHED at `when`).
_RAN = -2
OWNER_ROW, WORKER_ROW = ts.OWNER_ROW, ts.WORKER_ROW
_NAN = float("nan")
_pack_owner = OWNER_ROW.pack
_pack_worker = WORKER_ROW.pack


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
        # packed rows (OWNER_ROW, WORKER_ROW) of calls that ended without being reported in
        # flight: the owner's appended by the I/O thread only, the worker's by any thread
        self.owner_done: list[bytes] = []
        self.worker_done: collections.deque = collections.deque(maxlen=max_events)
        self._owner_infos: set[int] = set()  # the info keys of the owner rows
        self._last_row_info: Any = None  # the last key added to _owner_infos
        self._owner_missing = 0  # times the owner rows have as NaN (never seen)
        self.max_events = max_events
        self.clock = clock
        self.dropped = 0  # events overwritten because a deque was full
        # when the last drain was (calls begun since are not reported in flight yet; the
        # first drain reports every call in flight)
        self._last_drain = float("inf")
        # the calls running in this worker now, as (task id, attempt, start time): the
        # executor's own table of running calls, read at each drain (see `ran`)
        self.running_calls: Callable[[], Iterable[tuple[bytes, int, float]]] = tuple
        # attempts reported while in flight (by task id): their ends go as open records too
        self._reported: set[bytes] = set()
        # info ids by what makes two calls' infos equal; the entries of `_infos` keep the
        # objects whose ids are in the keys alive (so no id is reused while cached)
        self._info_ids: dict[tuple, int] = {}
        self._infos: dict[int, tuple] = {}
        self._next_info = itertools.count()
        # the last spec's (name, actor_id, job_id, resources, placement_group, runtime_env,
        # is creation) and its info id: a burst of calls of one function skips the key
        self._last_info: tuple = (None,) * 8
        # infos of specs the cache had no room for, keyed for the next batch only
        self._batch_infos: dict[int, dict] = {}

    # -- an owner's calls (the I/O thread) ---------------------------------------------
    def submitted(self, entry: Any, ready: bool = False, at: float | None = None) -> None:
        """A call was submitted and waits for its arguments (with ready, it has none to wait
        for: pending a node at the same instant). Its times live on the entry from now on
        (`ev_info`, `ev_args`, `ev_ready`, `ev_pushed`, `ev_reported`). `at`: when it was,
        if earlier than now (a call its user thread pushed, recorded later on the loop)."""
        now = self.clock() if at is None else at
        entry.ev_info = self.info_id(entry.spec)
        entry.ev_args = now
        entry.ev_ready = now if ready else None
        entry.ev_pushed = None
        entry.ev_reported = False

    def info_id(self, spec: Any) -> Any:
        """The cached info id of the spec's function and options (or the spec itself, when
        the cache is full: its info is built when its row is added)."""
        last = self._last_info
        if (
            last[0] == spec.name
            and last[1] == spec.actor_id
            and last[2] == spec.job_id
            and last[3] is spec.resources
            and last[4] is spec.placement_group
            and last[5] is spec.runtime_env
            and last[6] is (spec.method is None)
        ):
            return last[7]
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
            if type(info) is not int:
                return info
        self._last_info = (
            spec.name,
            spec.actor_id,
            spec.job_id,
            spec.resources,
            spec.placement_group,
            spec.runtime_env,
            spec.method is None,
            info,
        )
        return info

    def _cache_info(self, key: tuple, spec: Any) -> Any:
        """The info id for a new key, or the spec itself once the cache is full (many
        distinct options: those calls' infos are built at drain)."""
        if len(self._info_ids) >= MAX_CACHED_INFOS:
            return spec
        i = next(self._next_info)
        self._infos[i] = (task_info(spec), spec.resources, spec.placement_group, spec.runtime_env)
        self._info_ids[key] = i
        return i

    # The call was sent to a worker: the submitters set `entry.ev_pushed` from `clock`
    # themselves (every call passes there: no method call for it). Harmless on an entry not
    # recorded, which nothing reads.

    def ready(self, entry: Any) -> None:
        """The call's arguments are ready: it is pending a node (or its actor)."""
        if entry.ev_info is not None:
            entry.ev_ready = self.clock()

    def finished(self, entry: Any) -> None:
        """The call finished (or failed in the worker, which says why)."""
        info = entry.ev_info
        if info is None:
            return
        entry.ev_info = None
        spec = entry.spec
        if entry.ev_reported:  # reported in flight: its end is an open record
            self.events.append((spec.task_id, spec.attempt, ts.FINISHED, self.clock(), None))
            return
        rows = self.owner_done
        if len(rows) >= self.max_events:
            self.dropped += 1
            return
        if info is not self._last_row_info:
            if type(info) is not int:  # not cached: keyed for this batch
                info = next(self._next_info)
                self._batch_infos[info] = task_info(spec)
            self._owner_infos.add(info)
            self._last_row_info = info
        ready, pushed = entry.ev_ready, entry.ev_pushed
        if ready is None or pushed is None:
            self._owner_missing += (ready is None) + (pushed is None)
            ready = _NAN if ready is None else ready
            pushed = _NAN if pushed is None else pushed
        rows.append(_pack_owner(spec.task_id, spec.attempt, info, entry.ev_args, ready, pushed, self.clock()))

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
    # A call's start is not queued: the executor notes it (from `clock`) in its table of
    # running calls, which a drain reads through `running_calls` (so a long call shows
    # RUNNING), and `ran` records start and end at once.
    def ran(self, spec: Any, start: float) -> None:
        """The call that started at `start` finished."""
        tid = spec.task_id
        if tid in self._reported or len(tid) != TASK_ID_BYTES:
            self.events.append((tid, spec.attempt, _RAN, self.clock(), start))
        else:
            self.worker_done.append(_pack_worker(tid, spec.attempt, start, self.clock()))

    def ran_and_failed(self, spec: Any, start: float, error_type: str, message: str) -> None:
        """The call that started at `start` failed, and why."""
        self.events.append((spec.task_id, spec.attempt, ts.RUNNING, start, None))
        self.failed(spec, error_type, message)

    # -- sending (I/O loop) --------------------------------------------------------------
    def drain(self, in_flight: Iterable[Any] = ()) -> Drained | None:
        """Take everything recorded so far.

        `in_flight`: the owner's pending entries, newest first; those not reported yet and
        submitted before the previous drain are reported now, as open records, and the walk
        stops at the first one already reported (the older ones were seen by an earlier
        drain). Calls running in this worker since before the previous drain too. A call is
        shown in flight once it has been so for an interval: the many short ones of a
        pipeline go only as done rows, never as open records merged one by one.

        Single events are coalesced into one open record per attempt, `[task_id, attempt,
        [state, time, ...], info, error]` (`info` a key of the infos, -1: none; `error`
        `[error_type, message]` or None). The done rows go as they are."""
        infos: dict[int, dict] = {}
        cached = self._infos
        records: dict[bytes, list] = {}  # by task id: the usual one attempt per task and batch
        earlier: list[list] = []  # records of attempts a later one of the same task replaced
        reported = self._reported
        limit = self.max_events
        cutoff, self._last_drain = self._last_drain, self.clock()
        for entry in in_flight:
            info = entry.ev_info
            if info is None:
                continue
            if entry.ev_reported or len(reported) >= limit:
                break
            if entry.ev_args > cutoff:  # submitted since the last drain: next time, if still on
                continue
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
            running = list(self.running_calls())
        except RuntimeError:  # changed by another thread as it was read: next time
            running = []
        for tid, attempt, start in running:  # calls running since before the last drain, shown once
            if start <= cutoff and tid not in reported and tid not in records and len(reported) < limit:
                records[tid] = [tid, attempt, [ts.RUNNING, start], -1, None]
        owner_rows, self.owner_done = self.owner_done, []  # (appended on this thread only)
        worker_rows = _take(self.worker_done)
        if not records and not owner_rows and not worker_rows:
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
        if owner_rows:
            row_infos, self._owner_infos, self._last_row_info = self._owner_infos, set(), None
            extra, self._batch_infos = self._batch_infos, {}
            for info in row_infos:
                if info not in infos:
                    infos[info] = extra[info] if info in extra else cached[info][0]
            if len(row_infos) == 1:  # the usual: every row of one function
                jobs[infos[next(iter(row_infos))]["job_id"] or ""] = len(owner_rows)
            else:
                by_info = collections.Counter(row[2] for row in OWNER_ROW.iter_unpack(b"".join(owner_rows)))
                for info, count in by_info.items():
                    job = infos[info]["job_id"] or ""
                    jobs[job] = jobs.get(job, 0) + count
        if reported and worker_rows:  # reported by a drain between `ran` and its row's taking
            for row in worker_rows:
                reported.discard(row[:TASK_ID_BYTES])
        num = n + 2 * len(worker_rows) + 4 * len(owner_rows) - self._owner_missing
        self._owner_missing = 0
        owner_done = b"".join(owner_rows)
        worker_done = b"".join(worker_rows)
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
        done = len(drained.owner_done) // OWNER_ROW.size + len(drained.worker_done) // WORKER_ROW.size
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


def _take(rows: collections.deque) -> list:
    """Everything in `rows` now, oldest first (appends by other threads meanwhile stay)."""
    n = len(rows)
    if n == 0:
        return []
    popleft = rows.popleft
    return [popleft() for _ in range(n)]


class Drained(NamedTuple):
    """What one drain took: the batch's info dicts by key, its open records, the done rows of
    each side (packed, joined), the owner rows by job, and how many events all that stands for."""

    infos: dict[int, dict]
    opened: list[list]
    owner_done: bytes
    worker_done: bytes
    jobs: dict[str, int]
    num_events: int


_encode = msgspec.msgpack.Encoder().encode
