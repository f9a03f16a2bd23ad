"""What one process records of task state transitions, until the I/O loop sends them.

Owners see a task's first states (arguments pending, waiting for a node, sent to a worker);
workers see it run and end. The common life costs the owner no record at all: it stamps its
three times into the `TaskSpec` it sends anyway (`submitted_at`, `ready_at`, `sent_at`; one
field when they are equal), and the worker, when the call returns, appends one packed row
with the whole life to a byte array: nothing per row for the garbage collector to trace.
The usual call (pushed as it was submitted, of the same function as the previous one) gets
a `SHORT_ROW`: task id, attempt, info key, the owner's one time, the executor's own
`time.perf_counter()` reading at its start and its duration, six values packed as they are.
Any other call gets a `DONE_ROW` (the owner's three times, start and end on the wall
clock). The worker reads no clock for either: the executor times every call anyway (for
the reply's duration), and the buffer turns that into the wall clock with an offset it
refreshes at each send (a batch carries it for its short rows). Both sides pay for this on
every call, so each hook is a few attribute reads and writes; everything else waits for the
send.

An actor call that returns (and began after its worker's last send, so was never reported
running) is written by its owner instead: the worker puts the call's start, on its wall
clock, in the reply (`TaskReply.started`), and the owner's I/O thread, which handles that
reply anyway, packs the row (`ran_elsewhere`) among the rows of that worker (node id,
worker id, pid: the owner knows them from the actor's location). The actor's thread that
runs its calls is then spared the row, which measured as the larger share of the cost of
events on the actor lines (docs/benchmarks.md, session 16). A batch carries those rows as a
blob per executing worker (`elsewhere`). Tasks keep their worker's row: there the owner's
threads are the busier ones.

A task's static info (name, type, job, resources...) is an index into a small cache keyed by
function and options (the last one found is remembered, so a burst of calls of one function
costs a few comparisons), so nothing the garbage collector must trace stays alive and no row
is ever traced. Every `interval` seconds the core worker's I/O loop takes the rows of each
kind at once (the GCS keeps them, in a msgpack blob, and reads them only when asked) and reports
what is still in flight and was already at the previous send as open records, once: the
owner its calls waiting or sent (with the times it keeps on its `TaskEntry`, `ev_*` slots),
the worker the calls it runs. Rarer things (failures, a call that ends after it was
reported) go through a deque of single events. One `add_task_events` message per interval,
never one per event; the GCS keeps a bounded window (`gcs.task_event_store`).

Both are bounded (`max_events`): a process that cannot send keeps the newest single events
and rows. It counts a drain that finds the single events full as (at least) one dropped,
and each row it trims as one (the rows are trimmed at every send, and between sends at
most a second apart: `TRIM_INTERVAL_S`). Off with
`_system_config={"enable_task_events": False}` or SKATE_TASK_EVENTS=0: the core worker then
has no buffer and the hooks are skipped after one `is None` test. Off for some calls with
Ray's `enable_task_events=False` option (of a task, an actor or a method): the owner keeps
no buffer for those calls (`TaskEntry.events` None) and sends their specs without times, and a
worker records nothing of a spec without times.
"""

from __future__ import annotations

import collections
import itertools
import os
import struct
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import msgspec

from skate import _task_states as ts
from skate._ids import TASK_ID_BYTES

DEFAULT_INTERVAL_S = 1.0
DEFAULT_MAX_EVENTS = 100_000
TRIM_INTERVAL_S = 1.0  # the most time between two trims of the rows (see `TaskEventBuffer.trim`)
MAX_CACHED_INFOS = 1024  # distinct (function, options) whose info is cached per process
MAX_EVENTS_KEYS = 4096  # owners' events keys remembered per process (see TaskSpec.events_key)
ERROR_MESSAGE_LIMIT = 1000
# Single events that stand for more than one state: ran (RUNNING at `extra`, FINISHED at
# `when`), and a task's static info (`extra`: an info id or the spec).
_RAN = -2
_INFO = -3
DONE_ROW = ts.DONE_ROW
_NAN = float("nan")
_pack = DONE_ROW.pack
SHORT_ROW = ts.SHORT_ROW
_pack_short = SHORT_ROW.pack
# The info key of each packed row, read as ints straight from the joined rows (no tuple per
# row): the row is a whole number of 4-byte words and the key is the sixth.
_INFO_WORD = 5
_LITTLE_ENDIAN = sys.byteorder == "little"


def enabled() -> bool:
    """Whether this process records task events (SKATE_TASK_EVENTS, on unless "0")."""
    return os.environ.get("SKATE_TASK_EVENTS", "1") != "0"


def wall_minus_perf() -> float:
    """What to add to a `time.perf_counter()` reading to get `time.time()`'s (now)."""
    return time.time() - time.perf_counter()


def owner_times(spec: Any) -> tuple[float, float, float] | None:
    """The owner's three times a spec carries, a time left out being the next one's (NaN
    for one it did not send); None if it sent none."""
    args, ready, sent = spec.submitted_at, spec.ready_at, spec.sent_at
    if args is None and ready is None and sent is None:
        return None
    if ready is None:
        ready = sent
    if args is None:
        args = ready
    return (_NAN if args is None else args, _NAN if ready is None else ready, _NAN if sent is None else sent)


def interval_s() -> float:
    ms = os.environ.get("SKATE_TASK_EVENTS_REPORT_INTERVAL_MS")
    return int(ms) / 1000 if ms else DEFAULT_INTERVAL_S


def task_info(spec: Any) -> dict:
    """The static part of a task's record, from its spec (built once per distinct function
    and options, see `TaskEventBuffer.info_id`)."""
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

    def __init__(
        self,
        max_events: int = DEFAULT_MAX_EVENTS,
        clock: Callable[[], float] = time.time,
        perf_offset: Callable[[], float] = wall_minus_perf,
    ):
        self.events: collections.deque = collections.deque(maxlen=max_events)  # single events
        # packed rows (DONE_ROW) of calls that ran here and ended, appended by the threads
        # that run them into one byte array (nothing for the garbage collector to trace, no
        # object kept per row: the packed bytes are freed at once, so the next row reuses
        # their memory). An extend is one C call under the GIL, so the array holds whole
        # rows, and a drain or a trim cuts whole rows off its front while threads append
        # (`_take`). Its thread checks no bound: `trim`, at every interval and at most
        # a second apart, keeps the newest `max_events` rows.
        self.done = bytearray()
        self._add_row = self.done.extend
        # the usual call's rows (SHORT_ROW: see `ran`), the same way
        self.short = bytearray()
        self._add_short = self.short.extend
        self.max_events = max_events
        self.clock = clock
        # what turns the executor's `time.perf_counter()` readings into `clock`'s time (a
        # function: refreshed at each drain, so a wall clock that is stepped is followed)
        self._perf_offset = perf_offset
        self.perf_offset = perf_offset()
        self.dropped = 0  # events overwritten because a deque was full
        # when the last drain was (calls begun since are not reported in flight yet; the
        # first drain reports every call in flight)
        self._last_drain = float("inf")
        # the calls running in this worker now, as (spec, start by perf_counter): the
        # executor's own table of running calls, read at each drain (see `ran`)
        self.running_calls: Callable[[], Iterable[tuple[Any, float]]] = tuple
        # attempts reported while in flight (by task id): their ends go as open records too
        self._reported: set[bytes] = set()
        # info ids by (name, actor id, is creation, job id): [(options, id), ...], options
        # being (resources, placement group, runtime env), compared by value (a worker's
        # specs are decoded afresh for every call)
        self._info_ids: dict[tuple, list] = {}
        self._infos: dict[int, dict] = {}
        self._num_infos = 0
        self._next_info = itertools.count()
        # info ids by the owners' `events_key`s (see TaskSpec), at most MAX_EVENTS_KEYS
        self._by_events_key: dict[int, int] = {}
        # the last spec's key (its `events_key`, else its `_static_key`) and its info id: a
        # burst of calls of one function skips the lookup for one comparison (of two numbers,
        # or of two tuples); replaced whole: threads race
        self._last_info: tuple = ((), None)
        # An owner's rows of its actor calls, written from their replies (`ran_elsewhere`,
        # the I/O thread only), by the caller's handle of the executing worker (its
        # ActorState): [(node id, worker id, pid), done rows, short rows (their start on the
        # wall clock already), the short rows' extend]; and those of a worker replaced
        # between two drains (an actor that restarted)
        self.elsewhere: dict[Any, list] = {}
        self._elsewhere_before: list[list] = []
        # A worker's `time.perf_counter()` reading at its last drain: a call that began after
        # it cannot have been reported running, so its owner may write its row (see `Executor`)
        self.drained_perf = float("inf")

    # -- an owner's calls (the I/O thread) ---------------------------------------------
    def submitted(self, entry: Any, ready: bool = False) -> None:
        """A call waits for its arguments, or with ready for a node (a lease) or its actor,
        since now. Its times live on the entry from now on (`ev_args`, `ev_ready`,
        `ev_reported`) and go with the spec when it is pushed. A call without arguments to
        wait for that is pushed as it is submitted never comes here: `stamp` gives it all
        three times at once."""
        now = self.clock()
        entry.ev_args = now
        entry.ev_ready = now if ready else None
        entry.ev_reported = False

    def ready(self, entry: Any) -> None:
        """The call's arguments are ready: it is pending a node (or its actor)."""
        if entry.ev_args:
            entry.ev_ready = self.clock()

    def stamp(self, entry: Any, pushed: float | None = None) -> None:
        """The call is being sent (at `pushed`, default now; NaN: sent by someone else, the
        GCS for an actor's constructor): its spec carries the owner's times to the worker,
        which writes the whole row. A call its user thread pushes at once sets the three
        itself (see `ActorSubmitter.submit`), without this call."""
        now = self.clock() if pushed is None else pushed
        spec = entry.spec
        sent = spec.sent_at
        if sent is None:  # its first send: a call that waited says since when
            args = entry.ev_args
            if args:
                ready = entry.ev_ready
                if ready is None:
                    ready = now
                spec.ready_at = ready
                if args != ready:
                    spec.submitted_at = args
        elif spec.ready_at is None:  # a retry keeps its first two times
            spec.ready_at = sent
        spec.sent_at = now

    def finished(self, entry: Any) -> None:
        """A call reported in flight is over (the worker's events say how): forget it."""
        if entry.ev_reported:
            entry.ev_reported = False
            self._reported.discard(entry.spec.task_id)

    def failed_entry(self, entry: Any, error_type: str | None, message: str | None = None) -> None:
        """The call failed. error_type None: in the worker, whose events say why (and carry
        the owner's times); otherwise on the owner's side, which records what it saw."""
        if error_type is None:
            self.finished(entry)
            return
        spec = entry.spec
        if not entry.ev_reported:  # its earlier states go first, as single events
            times = owner_times(spec)
            if times is None:
                args = entry.ev_args
                if args:
                    times = (args, _NAN if entry.ev_ready is None else entry.ev_ready, _NAN)
                else:  # failed as it was submitted (a call without dependencies is recorded once it waits)
                    now = self.clock()
                    times = (now, now, _NAN)
            self._owner_states(spec, times, self.info_id(spec))
        self.failed(spec, error_type, message)

    def _owner_states(self, spec: Any, times: tuple, info: Any) -> None:
        """The owner's times of a call and its info, as single events (NaN: not seen)."""
        tid, attempt, append = spec.task_id, spec.attempt, self.events.append
        append((tid, attempt, _INFO, 0.0, info))
        seen = iter(ts.owner_states(times))
        for state, when in zip(seen, seen):
            append((tid, attempt, state, when, None))

    # -- static info (any thread) ------------------------------------------------------
    def info_id(self, spec: Any) -> Any:
        """The cached info id of the spec's function and options (or the spec itself, when
        the cache is full: its info is built at the drain)."""
        key = spec.events_key
        if key is None:
            key = _static_key(spec)
        last = self._last_info
        return last[1] if key == last[0] else self._info_of(key, spec)

    def _info_of(self, key: Any, spec: Any) -> Any:
        """`info_id` past the last call's: look the function and options up (by the owner's
        `events_key` first, when it sent one), or add them."""
        if type(key) is int:
            info = self._by_events_key.get(key)
            if info is None:
                info = self._info_by_value(spec)
                if type(info) is not int:  # (the cache is full)
                    return info
                if len(self._by_events_key) >= MAX_EVENTS_KEYS:
                    self._by_events_key.clear()
                self._by_events_key[key] = info
            self._last_info = (key, info)
            return info
        info = self._info_by_value(spec)
        if type(info) is int:
            self._last_info = (key, info)
        return info

    def _info_by_value(self, spec: Any) -> Any:
        """The info id of the spec's function and options, added if new (or the spec itself,
        when the cache is full)."""
        options = (spec.resources, spec.placement_group, spec.runtime_env)
        by_function = (spec.name, spec.actor_id, spec.method is None, spec.job_id)
        found = self._info_ids.get(by_function)
        info: Any = None
        if found is not None:
            for opts, i in found:
                if opts == options:
                    info = i
                    break
        if info is None:
            if self._num_infos >= MAX_CACHED_INFOS:
                return spec
            info = next(self._next_info)
            self._num_infos += 1
            self._infos[info] = task_info(spec)
            self._info_ids.setdefault(by_function, []).append((options, info))
        return info

    # -- single events (any thread) ------------------------------------------------------
    def failed(self, spec: Any, error_type: str | None, message: str | None = None) -> None:
        """The attempt failed; error_type None when the recorder does not know why."""
        extra = None if error_type is None else (error_type, (message or "")[:ERROR_MESSAGE_LIMIT])
        self.events.append((spec.task_id, spec.attempt, ts.FAILED, self.clock(), extra))

    # -- a worker's calls (the thread that runs them) ------------------------------------
    # A call's start is not queued: the executor notes it (from `clock`) in its table of
    # running calls, which a drain reads through `running_calls` (so a long call shows
    # RUNNING), and `ran` records the whole life at once.
    def ran(self, spec: Any, start: float, took: float) -> None:
        """The call that began at `start` (a `time.perf_counter()` reading) ended `took`
        seconds later: its row, with the owner's times. The executor's thread pays for this
        on every call, so the common case (the owner's events key of the previous call, the
        owner's one time: pushed as it was submitted) is one comparison, one pack and one
        append of a `SHORT_ROW` (the perf reading and the duration as they are: the drain
        sends the offset to the wall clock once); anything else is `_ran_keyed`'s."""
        last = self._last_info
        if spec.events_key == last[0] and spec.ready_at is None and spec.submitted_at is None:
            tid = spec.task_id
            if len(tid) == TASK_ID_BYTES:
                try:
                    self._add_short(_pack_short(tid, spec.attempt, last[1], spec.sent_at, start, took))
                    return
                except struct.error:  # a bad attempt, no times
                    pass
        self._ran_keyed(spec, start, took)

    def _ran_keyed(self, spec: Any, start: float, took: float) -> None:
        """`ran` past its common case: another function or options than the previous call's
        (or none of the owner's events keys), a call that waited, a row a pack refuses."""
        key = spec.events_key
        if key is None:
            key = _static_key(spec)
        last = self._last_info
        info = last[1] if key == last[0] else self._info_of(key, spec)
        start += self.perf_offset
        tid, end = spec.task_id, start + took
        sent = spec.sent_at
        ready = spec.ready_at
        if ready is None:
            ready = sent
        args = spec.submitted_at
        if args is None:
            args = ready
        if len(tid) == TASK_ID_BYTES:
            try:
                row = _pack(tid, spec.attempt, info, args, ready, sent, start, end)
            except struct.error:  # no times from its owner, an info past the cache, a bad attempt
                pass
            else:
                self._add_row(row)
                return
        self._ran_rarely(spec, info, start, end)

    def _ran_rarely(self, spec: Any, info: Any, start: float, end: float) -> None:
        """`ran`'s other cases: no owner times (a call whose events are off: no record), an
        info the cache could not hold or an id or attempt a row cannot (single events)."""
        times = owner_times(spec)
        if times is None:
            return
        tid, attempt = spec.task_id, spec.attempt
        if type(info) is int and len(tid) == TASK_ID_BYTES and 0 <= attempt < 1 << 32:
            self._add_row(_pack(tid, attempt, info, *times, start, end))
            return
        self._owner_states(spec, times, info)
        self.events.append((tid, attempt, _RAN, end, start))

    def ran_and_failed(self, spec: Any, start: float, error_type: str, message: str) -> None:
        """The call that began at `start` (by `time.perf_counter()`) failed, and why (nothing
        for a call whose events are off)."""
        times = owner_times(spec)
        if times is None:
            return
        self._owner_states(spec, times, self.info_id(spec))
        self.events.append((spec.task_id, spec.attempt, ts.RUNNING, start + self.perf_offset, None))
        self.failed(spec, error_type, message)

    # -- an owner's actor calls that ran elsewhere (the I/O thread) ------------------------
    def ran_elsewhere(
        self, at: Any, executor: tuple, infos: dict, spec: Any, started: float, took: float
    ) -> None:
        """An actor call this process owns ran in `executor` ((node id, worker id, pid)) from
        `started` (by that worker's wall clock) for `took` seconds, as its reply says: its row,
        written here instead of by the worker. The actor's thread that runs its calls then
        only adds `started` to the reply; this thread, which handles the reply anyway, packs
        the row (a SHORT_ROW with no offset, or a DONE_ROW for a call that waited). `at`: the
        caller's handle of that worker (the actor's state: its rows are kept by it); `infos`:
        a dict the caller keeps for it, where the info id of each method's calls is
        remembered (an actor call's info is its method's, in its job: no key on the wire)."""
        rows = self.elsewhere.get(at)
        if rows is None or rows[0] is not executor:
            rows = self._rows_of(at, executor)
        known = infos.get(spec.method)
        if known is not None and known[0] == spec.job_id:
            info = known[1]
        else:
            info = self.info_id(spec)
            if type(info) is int:
                infos[spec.method] = (spec.job_id, info)
        tid = spec.task_id
        if len(tid) == TASK_ID_BYTES:
            try:
                if spec.ready_at is None and spec.submitted_at is None:
                    rows[3](_pack_short(tid, spec.attempt, info, spec.sent_at, started, took))
                else:
                    args, ready, sent = owner_times(spec) or (_NAN, _NAN, _NAN)
                    rows[1].extend(_pack(tid, spec.attempt, info, args, ready, sent, started, started + took))
                return
            except (struct.error, TypeError):  # an info past the cache, a bad attempt or time
                pass
        self._ran_elsewhere_rarely(spec, info, started, took)

    def _rows_of(self, at: Any, executor: tuple) -> list:
        """A new entry of `elsewhere` for the worker `at` stands for (the rows of the one it
        replaces, if any, go with the next batch as they are)."""
        old = self.elsewhere.get(at)
        if old is not None:
            self._elsewhere_before.append(old)
        short = bytearray()
        rows = self.elsewhere[at] = [executor, bytearray(), short, short.extend]
        return rows

    def _ran_elsewhere_rarely(self, spec: Any, info: Any, started: Any, took: Any) -> None:
        """`ran_elsewhere` for a row its pack refuses: single events, as this process's own
        (so listed where the owner runs: the info cache is full, or the id is not a task id),
        or nothing for times that are not numbers (a malformed reply)."""
        try:
            start = float(started)
            end = start + float(took)
        except (TypeError, ValueError):
            return
        times = owner_times(spec) or (_NAN, _NAN, _NAN)
        self._owner_states(spec, times, info)
        self.events.append((spec.task_id, spec.attempt, _RAN, end, start))

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
        records: dict[bytes, list] = {}  # by task id: the usual one attempt per task and batch
        earlier: list[list] = []  # records of attempts a later one of the same task replaced
        reported = self._reported
        limit = self.max_events
        cutoff, self._last_drain = self._last_drain, self.clock()
        offset = self.perf_offset = self._perf_offset()
        self.drained_perf = self._last_drain - offset
        for entry in in_flight:
            if entry.ev_reported or len(reported) >= limit:
                break
            spec = entry.spec
            times = owner_times(spec)
            if times is None:
                if not entry.ev_args:  # not recorded
                    continue
                times = (entry.ev_args, _NAN if entry.ev_ready is None else entry.ev_ready, _NAN)
            if times[0] > cutoff:  # submitted since the last drain: next time, if still on
                continue
            entry.ev_reported = True
            seen = ts.owner_states(times)
            records[spec.task_id] = [
                spec.task_id,
                spec.attempt,
                seen,
                self._info_key(self.info_id(spec), infos),
                None,
            ]
        events = self.events
        n = len(events)
        if n >= self.max_events:
            self.dropped += 1  # at least one: the deque may have overwritten some
        singles = 0
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
                singles += 1
                if extra is not None:
                    rec[4] = list(extra)
            elif state == _RAN:  # extra: when it started
                rec[2] += (ts.RUNNING, extra, ts.FINISHED, when)
                singles += 2
            else:  # _INFO
                rec[3] = self._info_key(extra, infos)
        try:
            running = list(self.running_calls())
        except RuntimeError:  # changed by another thread as it was read: next time
            running = []
        for spec, began in running:  # calls running since before the last drain, shown once
            start, tid = began + offset, spec.task_id
            if start <= cutoff and tid not in reported and tid not in records and len(reported) < limit:
                # (with its info: the owner may not have reported the call, and a record
                # without one would list without a name until the call ends)
                info = self._info_key(self.info_id(spec), infos)
                records[tid] = [tid, spec.attempt, [ts.RUNNING, start], info, None]
        self.trim()
        done, short = _take(self.done), _take(self.short)
        if reported and (done or short):  # ended calls an earlier drain reported in flight: open records
            done, short, states = self._reopen(done, short, records, earlier, infos, offset)
            singles += states
        elsewhere = [*self._elsewhere_before, *self.elsewhere.values()]
        self.elsewhere, self._elsewhere_before = {}, []
        if not records and not done and not short and not elsewhere:
            return None
        opened: list[list] = []
        for rec in itertools.chain(earlier, records.values()):
            tid = rec[0]
            if max(rec[2][::2], default=-1) < ts.FINISHED:  # not over
                reported.add(tid)
            else:
                reported.discard(tid)
            opened.append(rec)
        rows = _num_rows(done, short)
        if reported and rows:  # reported by a drain between `ran` and its row's taking
            self._forget_reported(done, short)
        jobs = self._jobs(done, short, infos)
        others = []
        for executor, their_done, their_short, _ in elsewhere:
            count = _num_rows(their_done, their_short)
            if not count:
                continue
            if reported:  # the owner reported these in flight: they are over now
                self._forget_reported(their_done, their_short)
            their_infos: dict[int, dict] = {}
            jobs_there = self._jobs(their_done, their_short, their_infos)
            others.append((executor, their_infos, their_done, their_short, jobs_there))
            rows += count
        return Drained(infos, opened, done, jobs, singles + 5 * rows, short, offset, others)

    def _forget_reported(self, done: bytes | bytearray, short: bytes | bytearray) -> None:
        """The calls of these rows are over: no longer reported in flight."""
        for tid, *_ in itertools.chain(DONE_ROW.iter_unpack(done), SHORT_ROW.iter_unpack(short)):
            self._reported.discard(tid)

    def _jobs(
        self, done: bytes | bytearray, short: bytes | bytearray, infos: dict[int, dict]
    ) -> dict[str, int]:
        """How many of the rows are of each job, adding their infos to `infos`."""
        jobs: dict[str, int] = {}
        for packed, fmt in ((done, DONE_ROW), (short, SHORT_ROW)):
            if packed:
                for info, count in _count_infos(packed, fmt).items():
                    if info not in infos:
                        infos[info] = self._infos[info]
                    job = infos[info]["job_id"] or ""
                    jobs[job] = jobs.get(job, 0) + count
        return jobs

    def trim(self) -> None:
        """Drop the oldest rows past `max_events` (of each kind, and of each executor of the
        rows written for it), counted (I/O loop: at every send, and between sends at most a
        second apart, so rows never pile up past the bound by more than a second's)."""
        kinds = [(self.done, DONE_ROW.size), (self.short, SHORT_ROW.size)]
        for _, their_done, their_short, _ in (*self._elsewhere_before, *self.elsewhere.values()):
            kinds += ((their_done, DONE_ROW.size), (their_short, SHORT_ROW.size))
        for rows, size in kinds:
            excess = len(rows) - self.max_events * size
            if excess > 0:
                excess += -excess % size  # (whole rows; appends meanwhile only add rows)
                del rows[:excess]
                self.dropped += excess // size

    def _reopen(
        self, done: bytearray, short: bytearray, records: dict, earlier: list, infos: dict, offset: float
    ) -> tuple[bytearray, bytearray, int]:
        """Take the rows of calls reported in flight out of `done` and `short`: their start
        went out as an open record, and so goes their end (merged into `records`). The rest
        of each, and how many states the records gained."""
        reported = self._reported
        states = 0
        kept = bytearray()
        size = DONE_ROW.size
        for at, (tid, attempt, info, args, ready, sent, start, end) in enumerate(DONE_ROW.iter_unpack(done)):
            if tid not in reported:
                kept += done[at * size : (at + 1) * size]  # (as packed)
                continue
            states += self._merge_row(
                records, earlier, infos, (tid, attempt, info), (args, ready, sent), start, end
            )
        kept_short = bytearray()
        size = SHORT_ROW.size
        for at, (tid, attempt, info, sent, start, took) in enumerate(SHORT_ROW.iter_unpack(short)):
            if tid not in reported:
                kept_short += short[at * size : (at + 1) * size]
                continue
            wall = start + offset
            states += self._merge_row(
                records, earlier, infos, (tid, attempt, info), (sent,) * 3, wall, wall + took
            )
        return kept, kept_short, states

    def _merge_row(
        self, records: dict, earlier: list, infos: dict, row: tuple, owner: tuple, start: float, end: float
    ) -> int:
        """One row's states (`row`: task id, attempt, info key) into its attempt's open
        record; how many."""
        tid, attempt, info = row
        seen = [*ts.owner_states(owner), ts.RUNNING, start, ts.FINISHED, end]
        rec = records.get(tid)
        if rec is None or rec[1] != attempt:
            if rec is not None:
                earlier.append(rec)
            rec = records[tid] = [tid, attempt, [], -1, None]
        rec[2] += seen
        rec[3] = self._info_key(info, infos)
        return len(seen) // 2

    def _info_key(self, info: Any, infos: dict[int, dict]) -> int:
        """The batch's key of a cached info id, or of a spec's info built now."""
        if type(info) is int:
            if info not in infos:
                infos[info] = self._infos[info]
            return info
        i = next(self._next_info)
        infos[i] = task_info(info)
        return i

    def batch(self, node_id: str, worker_id: str, pid: int, in_flight: Iterable[Any] = ()) -> dict | None:
        """The `add_task_events` message for what was recorded since the last one (None:
        nothing): {node_id, worker_id, pid, infos (by key), events (the open records), done
        (one blob of `[node_id, worker_id, pid, infos, rows, short rows, their perf-to-wall
        offset]`, or None), done_records, done_jobs (rows by job), elsewhere (the rows of
        this owner's actor calls by the worker that ran them: `[blob, rows, rows by job]`
        each, the blob as `done`'s with that worker's node id, worker id and pid), num_events
        (a row counts five), dropped}."""
        drained = self.drain(in_flight)
        if drained is None:
            return None
        dropped, self.dropped = self.dropped, 0
        blob = None
        done = _num_rows(drained.done, drained.short)
        if done:
            blob = _encode(
                [node_id, worker_id, pid, drained.infos, drained.done, drained.short, drained.offset]
            )
        # rows of this owner's calls other workers ran, a blob per worker (their starts are
        # on the wall clock already: no offset)
        elsewhere = [
            [
                _encode([*executor, infos, their_done, their_short, 0.0]),
                _num_rows(their_done, their_short),
                jobs,
            ]
            for executor, infos, their_done, their_short, jobs in drained.elsewhere
        ]
        return {
            "node_id": node_id,
            "worker_id": worker_id,
            "pid": pid,
            "infos": drained.infos if drained.opened else {},
            "events": drained.opened,
            "done": blob,
            "done_records": done,
            "done_jobs": drained.jobs,
            "elsewhere": elsewhere,
            "num_events": drained.num_events,
            "dropped": dropped,
        }


def new_events_key() -> int:
    """A fresh `TaskSpec.events_key`: random, so that the keys of different owners (and of
    one owner's successive sessions) do not meet in a worker."""
    return int.from_bytes(os.urandom(8), "little") >> 1


def _static_key(spec: Any) -> tuple:
    """What tells one call's static info from another's: its function and options."""
    return (
        spec.name,
        spec.actor_id,
        spec.job_id,
        spec.method,
        spec.resources,
        spec.placement_group,
        spec.runtime_env,
    )


def _count_infos(rows: bytes | bytearray, fmt: struct.Struct = DONE_ROW) -> dict[int, int]:
    """How many of the packed rows (of format `fmt`, DONE_ROW or SHORT_ROW: the info key is
    the sixth 4-byte word of both) have each info key (usually a batch of one function)."""
    if _LITTLE_ENDIAN:
        keys = memoryview(rows).cast("i")[_INFO_WORD :: fmt.size // 4].tolist()
    else:
        keys = [row[2] for row in fmt.iter_unpack(rows)]
    if keys:
        first = keys[0]
        if keys.count(first) == len(keys):  # (a count in C: a tenth of a Counter's time)
            return {first: len(keys)}
    return collections.Counter(keys)


def _num_rows(done: bytes | bytearray, short: bytes | bytearray) -> int:
    return len(done) // DONE_ROW.size + len(short) // SHORT_ROW.size


def _take(rows: bytearray) -> bytearray:
    """Every row appended so far to `rows` (rows other threads append meanwhile stay)."""
    n = len(rows)  # whole rows: each append is one extend
    if n == 0:
        return bytearray()
    taken = rows[:n]  # (a copy: the drain's own; a bytes object would be a second)
    del rows[:n]  # (the front of a byte array goes without a copy)
    return taken


class Drained(NamedTuple):
    """What one drain took: the batch's info dicts by key, its open records, the done rows
    (packed, joined), the rows by job, how many events all that stands for, the short rows
    (SHORT_ROW, joined) and the perf-to-wall offset their start readings need."""

    infos: dict[int, dict]
    opened: list[list]
    done: bytes | bytearray
    jobs: dict[str, int]
    num_events: int
    short: bytes | bytearray = b""
    offset: float = 0.0
    # rows of this owner's calls that ran elsewhere: (executor, their infos, done rows,
    # short rows, rows by job) per executing worker
    elsewhere: tuple | list = ()


_encode = msgspec.msgpack.Encoder().encode
