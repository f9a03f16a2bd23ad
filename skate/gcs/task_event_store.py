"""The GCS's window of task attempts, built from batches of task events. No I/O.

Each task attempt (task id, attempt number) is one `TaskRecord`, merged from the events its
owner and the worker that ran it sent: static info, the first time each state was seen,
where it ran, and why it failed. At most `max_tasks` attempts are kept
(`task_events_max_num_task_in_gcs`, Ray's default 100,000): past it the oldest finished
attempt goes first, then the oldest still running or pending. Every eviction is counted
(overall and per job), and so are the events processes report they dropped, so a listing
can say it is incomplete. Memory stays flat however many tasks run.

Attempts that began and ended between two sends of their process arrive as one blob per
batch, kept undecoded until something reads the window (a listing, a summary, stats): the
common case costs the GCS no per-task work. Blobs count against the window too (at most
`max_tasks` records, one per attempt: the worker's, with its owner's times); past it the oldest blobs
are dropped unread and counted as evicted.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Iterator
from typing import Any

import msgspec

from skate import _task_states as ts

_encode = msgspec.msgpack.Encoder().encode

DEFAULT_MAX_TASKS = 100_000
_decode = msgspec.msgpack.Decoder().decode
_MALFORMED = (msgspec.DecodeError, ValueError, TypeError, IndexError, KeyError, AttributeError, struct.error)
# Distinct static task infos shared between records (see TaskEventStore._shared_info); the
# table is emptied when it reaches this size (records keep the dicts they already share).
SHARED_INFO_LIMIT = 4096


class TaskRecord:
    """One attempt of one task, as far as its events tell."""

    __slots__ = ("task_id", "attempt", "info", "times", "node_id", "worker_id", "pid", "error")

    def __init__(self, task_id: bytes, attempt: int):
        self.task_id = task_id
        self.attempt = attempt
        self.info: dict | None = None  # shared by the attempts of one function (see add_batch)
        # the first time each state was reported, by state (None: not seen)
        self.times: list[float | None] = [None] * len(ts.NAMES)
        self.node_id: str | None = None
        self.worker_id: str | None = None
        self.pid: int | None = None
        self.error: tuple[str, str] | None = None  # (error_type, message)

    @property
    def state(self) -> int:
        times = self.times
        if times[ts.FAILED] is not None:
            return ts.FAILED
        for state in range(ts.FINISHED, ts.PENDING_ARGS_AVAIL, -1):
            if times[state] is not None:
                return state
        return ts.PENDING_ARGS_AVAIL

    @property
    def job_id(self) -> str | None:
        return self.info.get("job_id") if self.info else None

    def row(self) -> dict:
        """The attempt in Ray's TaskState fields (times in milliseconds since the epoch)."""
        info = self.info or {}
        times = self.times
        seen = [(s, t) for s, t in enumerate(times) if t is not None]
        start = times[ts.RUNNING]
        end = times[ts.FAILED] if times[ts.FAILED] is not None else times[ts.FINISHED]
        created = times[ts.PENDING_ARGS_AVAIL]
        if created is None and seen:
            created = min(t for _, t in seen)
        return {
            "task_id": self.task_id.hex(),
            "attempt_number": self.attempt,
            "name": info.get("name"),
            "state": ts.NAMES[self.state],
            "job_id": info.get("job_id"),
            "actor_id": info.get("actor_id"),
            "type": info.get("type"),
            "func_or_class_name": info.get("func_or_class_name"),
            "parent_task_id": info.get("parent_task_id"),
            "node_id": self.node_id,
            "worker_id": self.worker_id,
            "worker_pid": self.pid,
            "error_type": self.error[0] if self.error else None,
            "error_message": self.error[1] if self.error else None,
            "language": "PYTHON",
            "required_resources": info.get("required_resources"),
            "runtime_env_info": info.get("runtime_env"),
            "placement_group_id": info.get("placement_group_id"),
            "events": [{"state": ts.NAMES[s], "created_ms": _ms(t)} for s, t in seen],
            "creation_time_ms": _ms(created),
            "start_time_ms": _ms(start),
            "end_time_ms": _ms(end),
        }


def _ms(t: float | None) -> int | None:
    return None if t is None else int(t * 1000)


class TaskEventStore:
    """A bounded window of task attempts, fed by `add_batch`."""

    def __init__(self, max_tasks: int = DEFAULT_MAX_TASKS):
        if max_tasks < 1:
            raise ValueError(f"task_events_max_num_task_in_gcs must be >= 1, got {max_tasks}")
        self.max_tasks = max_tasks
        self._live: collections.OrderedDict[tuple, TaskRecord] = collections.OrderedDict()
        self._done: collections.OrderedDict[tuple, TaskRecord] = collections.OrderedDict()
        self.evicted = 0  # attempts dropped to stay within max_tasks
        self.evicted_by_job: collections.Counter = collections.Counter()
        self.reported_dropped = 0  # events processes dropped before sending (their buffer was full)
        self.events_received = 0
        self.malformed = 0  # blobs that could not be read
        # done records not read yet: (blob, records, {job: records with info}), oldest first
        self._blobs: collections.deque[tuple[bytes, int, dict]] = collections.deque()
        self._blob_records = 0
        self._infos: dict[bytes, dict] = {}  # equal infos, one dict (see _shared_info)

    def __len__(self) -> int:
        self._read_blobs()
        return len(self._live) + len(self._done)

    def add_batch(self, batch: dict) -> None:
        """Take one `add_task_events` message (`core_worker.task_events.TaskEventBuffer.batch`).

        Its open records are merged now. Its done records (attempts that began and ended
        between two sends) stay one opaque blob until a read needs them: most attempts cost
        the GCS nothing but keeping a few bytes. Past `max_tasks` records waiting, the
        oldest blobs go unread (evicted: finished attempts, and the oldest)."""
        self.reported_dropped += int(batch.get("dropped") or 0)
        self.events_received += int(batch.get("num_events") or 0)
        blob = batch.get("done")
        if blob:
            self._add_blob(blob, batch.get("done_records"), batch.get("done_jobs"))
        for item in batch.get("elsewhere") or ():  # an owner's rows of calls other workers ran
            try:
                blob, count, jobs = item
            except (TypeError, ValueError):
                self.malformed += 1
                continue
            self._add_blob(blob, count, jobs)
        if batch["events"]:
            try:
                self._merge(
                    batch.get("node_id"),
                    batch.get("worker_id"),
                    batch.get("pid"),
                    batch.get("infos") or {},
                    batch["events"],
                )
            except _MALFORMED:
                self.malformed += 1  # a sender's bug: the records merged so far stay

    def _add_blob(self, blob: Any, count: Any, jobs: Any) -> None:
        """Keep one blob of done rows (`count` of them, `jobs` counting them by job) unread,
        dropping the oldest blobs past `max_tasks` rows, counted as evicted."""
        jobs = jobs or {}
        count = count or 0
        if (
            not isinstance(blob, bytes)
            or type(count) is not int
            or not isinstance(jobs, dict)
            or not all(type(n) is int for n in jobs.values())
        ):
            self.malformed += 1
            return
        self._blobs.append((blob, count, jobs))
        self._blob_records += count
        while self._blob_records > self.max_tasks and len(self._blobs) > 1:
            _, dropped, old_jobs = self._blobs.popleft()
            self._blob_records -= dropped
            for job, n in old_jobs.items():
                self.evicted += n
                self.evicted_by_job[job or None] += n

    def _merge(self, node_id: Any, worker_id: Any, pid: Any, infos: Any, records: list) -> None:
        """Merge records `[task_id, attempt, [state, time, ...], info key, error]`."""
        if infos:  # one dict per distinct info across batches, not one per batch
            infos = {k: self._shared_info(v) for k, v in infos.items()}
        live, done = self._live, self._done
        for tid, attempt, times, info, error in records:
            key = (tid, attempt)
            rec = live.get(key)
            if rec is None:
                rec = done.get(key)
                if rec is None:
                    rec = self._new(key)
            seen = rec.times
            it = iter(times)
            for state, when in zip(it, it):
                if seen[state] is None:
                    seen[state] = when
                if state == ts.RUNNING:  # the executing side says where it runs
                    rec.node_id, rec.worker_id, rec.pid = node_id, worker_id, pid
            if info >= 0:
                rec.info = infos[info]
            if error is not None and (rec.error is None or rec.error[0] == ts.TASK_EXECUTION_EXCEPTION):
                rec.error = (error[0], error[1])
            if (seen[ts.FINISHED] is not None or seen[ts.FAILED] is not None) and key in live:
                del live[key]
                done[key] = rec

    def _read_blobs(self) -> None:
        """Merge every waiting blob (a read is about to look at the window)."""
        blobs = self._blobs
        while blobs:
            blob, count, _ = blobs.popleft()
            self._blob_records -= count
            try:
                node_id, worker_id, pid, infos, rows, *short = _decode(blob)
                records = _done_records(rows)
                if short:  # [short rows, the perf-to-wall offset of their readings]
                    records += _short_records(*short)
                self._merge(node_id, worker_id, pid, infos, records)
            except _MALFORMED:
                self.malformed += 1  # a sender's bug: its records are lost, the window is not

    def _shared_info(self, info: dict) -> dict:
        """One dict for every record with equal static info (read-only once stored): each
        batch carries its own copies, and a full window of records would otherwise hold a
        copy per batch (about 700 bytes a record when batches are small)."""
        try:
            key = _encode(info)
        except (TypeError, ValueError):
            return info
        shared = self._infos.get(key)
        if shared is None:
            if len(self._infos) >= SHARED_INFO_LIMIT:
                self._infos.clear()
            shared = self._infos[key] = info
        return shared

    def _new(self, key: tuple) -> TaskRecord:
        while len(self._live) + len(self._done) >= self.max_tasks:
            pool = self._done if self._done else self._live
            _, old = pool.popitem(last=False)
            self.evicted += 1
            self.evicted_by_job[old.job_id] += 1
        rec = TaskRecord(key[0], key[1])
        self._live[key] = rec
        return rec

    def records(self) -> Iterator[TaskRecord]:
        """Every kept attempt, finished ones first, each group oldest first."""
        self._read_blobs()
        yield from self._done.values()
        yield from self._live.values()

    def get(self, task_id: bytes) -> list[TaskRecord]:
        """Every kept attempt of one task, by attempt number."""
        self._read_blobs()
        found = [r for key, r in list(self._live.items()) + list(self._done.items()) if key[0] == task_id]
        return sorted(found, key=lambda r: r.attempt)

    def stats(self) -> dict[str, Any]:
        self._read_blobs()
        return {
            "num_tasks": len(self),
            "max_tasks": self.max_tasks,
            "num_evicted": self.evicted,
            "num_evicted_by_job": {k or "": v for k, v in self.evicted_by_job.items()},
            "num_dropped_at_source": self.reported_dropped,
            "num_events_received": self.events_received,
            "num_malformed_batches": self.malformed,
        }


def _done_records(rows: bytes) -> list[list]:
    """A worker's done rows (`_task_states.DONE_ROW`, packed) as records."""
    out = []
    for tid, attempt, info, args, ready, pushed, start, end in ts.DONE_ROW.iter_unpack(rows):
        times = ts.owner_states((args, ready, pushed))
        times += (ts.RUNNING, start, ts.FINISHED, end)
        out.append([tid, attempt, times, info, None])
    return out


def _short_records(rows: bytes, offset: float) -> list[list]:
    """A worker's short rows (`_task_states.SHORT_ROW`: one owner time, a perf reading and a
    duration) as records."""
    out = []
    for tid, attempt, info, sent, start, took in ts.SHORT_ROW.iter_unpack(rows):
        start += offset
        times = ts.owner_states((sent, sent, sent))
        times += (ts.RUNNING, start, ts.FINISHED, start + took)
        out.append([tid, attempt, times, info, None])
    return out


def answer(store: TaskEventStore, p: dict) -> dict:
    """The GCS's `get_task_events` request: {filters, limit, task_id, summary} in, rows out.

    With summary, the counts of every kept attempt by function (or class) name and state.
    """
    from skate._state_query import query  # foundation; local to keep this module's imports lean

    records: Any = store.records()
    if p.get("task_id"):
        records = store.get(bytes.fromhex(p["task_id"]))
    stats = store.stats()
    if p.get("summary"):
        summary: dict[str, dict] = {}
        for rec in records:
            info = rec.info or {}
            name = info.get("func_or_class_name") or "<unknown>"
            entry = summary.setdefault(
                name, {"func_or_class_name": name, "type": info.get("type"), "state_counts": {}}
            )
            state = ts.NAMES[rec.state]
            entry["state_counts"][state] = entry["state_counts"].get(state, 0) + 1
        return {"summary": summary, "stats": stats}
    rows, total = query((r.row() for r in records), p.get("filters"), p.get("limit") or 100)
    return {"rows": [dict(r) for r in rows], "total": total, "stats": stats}
