"""Task events: the per-process buffer (batching, bounds) and the GCS's bounded window."""

from __future__ import annotations

import threading

import msgspec
import pytest

from skate import _task_states as ts
from skate._system_config import parse
from skate._task_states import DONE_ROW
from skate.core_worker.task_events import MAX_CACHED_INFOS, TaskEventBuffer, owner_times
from skate.gcs.task_event_store import TaskEventStore, answer
from skate.protocol.messages import TaskSpec


def _spec(n: int, attempt: int = 0, actor_id: bytes | None = None, method: str | None = None) -> TaskSpec:
    spec = TaskSpec(n.to_bytes(4, "little") * 4, f"f{n}", 1, ["w", "addr"], "01000000", "ns", b"k")
    spec.attempt = attempt
    spec.actor_id = actor_id
    spec.method = method
    spec.resources = {"CPU": 1.0}
    return spec


def _sent(spec: TaskSpec) -> TaskSpec:
    """The spec as an owner that records events sends it, with no times it saw (NaN): a
    worker records a call only when its spec carries the owner's times."""
    spec.sent_at = float("nan")
    return spec


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _buffer(max_events: int = 100_000) -> TaskEventBuffer:
    """A buffer on the test's clock, whose worker side takes `Clock` readings for the
    executor's `perf_counter` ones (no offset between the two)."""
    return TaskEventBuffer(max_events, clock=Clock(), perf_offset=lambda: 0.0)


def _times(spec: TaskSpec) -> tuple | None:
    return owner_times(spec)


class Entry:
    """What the buffer reads of an owner's TaskEntry."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.ev_args = 0.0
        self.ev_ready = None
        self.ev_reported = False


def _owner_life(buf: TaskEventBuffer, entry: Entry) -> None:
    buf.submitted(entry)
    buf.ready(entry)
    buf.stamp(entry)  # as the submitters do when they push


def _wire(spec: TaskSpec) -> TaskSpec:
    """The spec as a worker gets it: decoded afresh (no object shared with the owner's)."""
    return TaskSpec.from_wire(msgspec.msgpack.decode(msgspec.msgpack.encode(spec)))


def _run(worker: TaskEventBuffer, spec: TaskSpec) -> TaskSpec:
    """The worker runs the call: its row, with the owner's times the spec carries."""
    got = _wire(spec)
    start = worker.clock()
    worker.ran(got, start, worker.clock() - start)
    return got


@pytest.mark.timeout(10)
def test_in_flight_calls_are_reported_once_as_open_records_newest_first():
    buf = _buffer()
    entries = [Entry(_spec(i)) for i in range(3)]
    for entry in entries:
        _owner_life(buf, entry)
    batch = buf.batch("node", "worker", 7, reversed(entries))
    assert batch is not None
    assert batch["node_id"] == "node" and batch["worker_id"] == "worker" and batch["pid"] == 7
    records = {r[0]: r for r in batch["events"]}
    assert len(records) == 3 and batch["done"] is None
    tid, attempt, times, info, error = records[entries[0].spec.task_id]
    assert attempt == 0 and error is None
    assert times == [
        ts.PENDING_ARGS_AVAIL,
        101.0,
        ts.PENDING_NODE_ASSIGNMENT,
        102.0,
        ts.SUBMITTED_TO_WORKER,
        103.0,
    ]
    first = batch["infos"][info]
    assert first["name"] == "f0" and first["type"] == ts.NORMAL_TASK
    assert first["required_resources"] == {"CPU": 1.0} and first["job_id"] == "01000000"
    late = Entry(_spec(9))
    buf.submitted(late, ready=True)  # no arguments to wait for: pending a node at once (111)
    # submitted since the last drain (110): not in flight for an interval yet, not reported
    assert buf.batch("n", "w", 1, reversed([*entries, late])) is None
    again = buf.batch("n", "w", 1, reversed([*entries, late]))
    assert again is not None and [r[0] for r in again["events"]] == [
        late.spec.task_id
    ]  # the walk stops there
    assert again["events"][0][2] == [ts.PENDING_ARGS_AVAIL, 111.0, ts.PENDING_NODE_ASSIGNMENT, 111.0]
    assert buf.batch("node", "worker", 7, reversed(entries)) is None  # nothing new: no message at all
    assert entries[1].spec.task_id in buf._reported
    buf.finished(entries[1])  # reported in flight: forgotten (the worker's events say how it ended)
    assert entries[1].spec.task_id not in buf._reported and not entries[1].ev_reported
    assert buf.batch("n", "w", 1) is None


@pytest.mark.timeout(10)
def test_the_owner_records_nothing_for_a_call_that_ends_unreported():
    owner = _buffer()
    entry = Entry(_spec(1))
    _owner_life(owner, entry)
    assert _times(entry.spec) == (101.0, 102.0, 103.0)  # its times go with the spec instead
    owner.finished(entry)
    owner.failed_entry(Entry(_spec(2)), None)  # failed in the worker: the worker's events say it all
    assert owner.batch("n", "w", 1, ()) is None and not owner.events and not owner.done


@pytest.mark.timeout(10)
def test_calls_that_begin_and_end_between_sends_are_rows_with_one_info_per_function():
    owner, worker = _buffer(), _buffer()
    entries = []
    for i in range(4):
        spec = _spec(i)
        spec.name = "same"
        entry = Entry(spec)
        entries.append(entry)
        _owner_life(owner, entry)
        _run(worker, spec)  # each decoded afresh: the info cache compares options by value
    assert len(worker._infos) == 1
    batch = worker.batch("n", "w", 1)
    assert batch is not None and batch["events"] == [] and batch["done_records"] == 4
    assert batch["done_jobs"] == {"01000000": 4} and batch["num_events"] == 20
    store = TaskEventStore(10)
    store.add_batch(batch)
    rows = answer(store, {"limit": 10})["rows"]
    assert {r["state"] for r in rows} == {"FINISHED"} and {r["name"] for r in rows} == {"same"}
    assert {r["node_id"] for r in rows} == {"n"}
    first = store.get(entries[0].spec.task_id)[0]
    assert first.times == [101.0, 102.0, 103.0, 101.0, 102.0, None]  # the owner's three, the worker's two
    assert first.info is store.get(entries[3].spec.task_id)[0].info


@pytest.mark.timeout(10)
def test_buffer_is_bounded_and_counts_overflow():
    buf = _buffer(max_events=4)
    for i in range(10):
        buf.failed(_spec(i), None)
    batch = buf.batch("n", "w", 1)
    assert batch is not None
    assert [e[0] for e in batch["events"]] == [_spec(i).task_id for i in range(6, 10)]  # the newest kept
    assert batch["dropped"] == 1
    buf.failed(_spec(1), None)
    assert buf.batch("n", "w", 1)["dropped"] == 0  # type: ignore[index]


@pytest.mark.timeout(10)
def test_failed_events_carry_error_type_and_a_bounded_message():
    buf = _buffer()
    buf.failed(_spec(1), "WORKER_DIED", "x" * 5000)
    buf.failed(_spec(2), None)
    drained = buf.drain()
    assert drained is not None
    records = drained.opened
    assert (
        records[0][2][0] == ts.FAILED and records[0][4][0] == "WORKER_DIED" and len(records[0][4][1]) == 1000
    )
    assert records[1][4] is None


def _batch(node: str, worker: str, pid: int, events: list, infos: list | None = None) -> dict:
    """A batch in wire form from (task_id, attempt, state, time, error) events, one record each."""
    records = [[tid, attempt, [state, when], -1, error] for tid, attempt, state, when, error in events]
    return {
        "node_id": node,
        "worker_id": worker,
        "pid": pid,
        "infos": dict(enumerate(infos or [])),
        "events": records,
        "dropped": 0,
    }


@pytest.mark.timeout(10)
def test_store_merges_owner_and_worker_events_into_one_attempt():
    owner, worker = _buffer(), _buffer()
    spec = _spec(1)
    _owner_life(owner, Entry(spec))
    entry = Entry(spec)
    _owner_life(owner, entry)  # (the spec was sent before: its first two times stay)
    began = worker.clock()
    worker.ran_and_failed(_wire(spec), began, ts.TASK_EXECUTION_EXCEPTION, "ValueError: boom")
    owner.failed_entry(entry, None)
    assert owner.batch("nodeA", "driver", 1) is None
    store = TaskEventStore(10)
    store.add_batch(worker.batch("nodeB", "workerB", 42))  # type: ignore[arg-type]
    (rec,) = store.get(spec.task_id)
    row = rec.row()
    assert row["state"] == "FAILED" and row["name"] == "f1" and row["type"] == "NORMAL_TASK"
    assert (row["node_id"], row["worker_id"], row["worker_pid"]) == ("nodeB", "workerB", 42)
    assert row["error_type"] == "TASK_EXECUTION_EXCEPTION" and row["error_message"] == "ValueError: boom"
    assert [e["state"] for e in row["events"]] == [
        "PENDING_ARGS_AVAIL",
        "PENDING_NODE_ASSIGNMENT",
        "SUBMITTED_TO_WORKER",
        "RUNNING",
        "FAILED",
    ]
    assert row["start_time_ms"] == 101_000 and row["end_time_ms"] == 102_000
    assert [e["created_ms"] for e in row["events"][:3]] == [101_000, 102_000, 106_000]  # the owner's


@pytest.mark.timeout(10)
def test_a_system_error_type_replaces_the_generic_one_and_retries_are_separate_attempts():
    store = TaskEventStore(10)
    tid = _spec(1).task_id
    store.add_batch(_batch("n", "w", 1, [[tid, 0, ts.FAILED, 1.0, ["TASK_EXECUTION_EXCEPTION", "a"]]]))
    store.add_batch(_batch("n", "w", 1, [[tid, 0, ts.FAILED, 2.0, ["WORKER_DIED", "b"]]]))
    store.add_batch(_batch("n", "w", 1, [[tid, 1, ts.RUNNING, 3.0, None]]))
    first, second = store.get(tid)
    assert first.row()["error_type"] == "WORKER_DIED"
    assert second.attempt == 1 and second.row()["state"] == "RUNNING"


@pytest.mark.timeout(10)
def test_store_keeps_a_bounded_window_evicting_finished_attempts_first():
    store = TaskEventStore(3)
    ids = [_spec(i).task_id for i in range(6)]
    store.add_batch(_batch("n", "w", 1, [[ids[0], 0, ts.RUNNING, 1.0, None]]))  # still running
    for i in range(1, 6):
        store.add_batch(_batch("n", "w", 1, [[ids[i], 0, ts.FINISHED, float(i), None]]))
    assert len(store) == 3
    kept = {r.task_id for r in store.records()}
    assert kept == {ids[0], ids[4], ids[5]}  # the running one outlives older finished ones
    assert store.evicted == 3
    assert store.stats()["num_evicted"] == 3


@pytest.mark.timeout(10)
def test_store_memory_is_flat_past_the_window():
    store = TaskEventStore(100)
    info = {"name": "f", "job_id": "01000000", "type": ts.NORMAL_TASK, "func_or_class_name": "f"}
    for i in range(5000):  # open records (merged at once)
        tid = i.to_bytes(16, "little")
        batch = _batch("n", "w", 1, [[tid, 0, ts.FINISHED, 2.0, None]], [info])
        batch["events"][0][2] = [ts.PENDING_ARGS_AVAIL, 1.0, ts.FINISHED, 2.0]
        batch["events"][0][3] = 0
        batch["num_events"] = 2
        store.add_batch(batch)
    assert len(store) == 100
    assert store.evicted == 4900 and store.evicted_by_job["01000000"] == 4900
    assert store.events_received == 10_000
    buf = _buffer()
    for i in range(5000):  # done records (kept as blobs until read)
        buf.ran(_sent(_spec(10_000 + i)), 1.0, 0.5)
        store.add_batch(buf.batch("n", "w", 1))  # type: ignore[arg-type]
        assert store._blob_records <= 100
    # a row counts five states; past the info cache a call goes as single events (its two)
    cached = MAX_CACHED_INFOS
    assert len(store) == 100 and store.evicted == 9900
    assert store.events_received == 10_000 + 5 * cached + 2 * (5000 - cached)


@pytest.mark.timeout(10)
def test_store_counts_events_dropped_at_the_source():
    store = TaskEventStore(10)
    store.add_batch({"node_id": "n", "worker_id": "w", "pid": 1, "events": [], "dropped": 5})
    assert store.stats()["num_dropped_at_source"] == 5


@pytest.mark.timeout(10)
def test_answer_filters_limits_and_summarizes():
    store = TaskEventStore(100)
    owner, worker = _buffer(), _buffer()
    for i in range(5):
        entry = Entry(_spec(i))
        owner.submitted(entry)
        if i % 2:
            owner.failed_entry(entry, "WORKER_DIED", "gone")  # on the owner's side, with its info
        else:
            owner.stamp(entry)
            _run(worker, entry.spec)
    store.add_batch(owner.batch("n", "w", 1))  # type: ignore[arg-type]
    store.add_batch(worker.batch("n", "w", 1))  # type: ignore[arg-type]
    failed = answer(store, {"filters": [("state", "=", "failed")], "limit": 100})
    assert failed["total"] == 2 and {r["name"] for r in failed["rows"]} == {"f1", "f3"}
    assert all(r["error_type"] == "WORKER_DIED" for r in failed["rows"])
    limited = answer(store, {"filters": [("state", "!=", "FAILED")], "limit": 2})
    assert limited["total"] == 3 and len(limited["rows"]) == 2
    one = answer(store, {"task_id": _spec(3).task_id.hex()})
    assert [r["name"] for r in one["rows"]] == ["f3"]
    summary = answer(store, {"summary": True})["summary"]
    assert summary["f1"]["state_counts"] == {"FAILED": 1} and summary["f0"]["type"] == "NORMAL_TASK"


@pytest.mark.timeout(10)
def test_system_config_switches_task_events_for_the_node_processes():
    assert parse({}).task_events
    off = parse({"enable_task_events": False})
    assert not off.task_events and dict(off.env) == {"SKATE_TASK_EVENTS": "0"}
    assert not parse({"task_events_report_interval_ms": 0}).task_events  # Ray's way to turn them off
    window = parse({"task_events_max_num_task_in_gcs": 50})
    assert dict(window.env) == {"SKATE_TASK_EVENTS_MAX_NUM_TASK_IN_GCS": "50"}
    assert "task_events_max_num_task_in_gcs" not in window.no_effect
    with pytest.raises(ValueError, match="enable_task_events"):
        parse({"enable_task_events": "no"})
    with pytest.raises(ValueError, match="task_events_max_num_task_in_gcs"):
        parse({"task_events_max_num_task_in_gcs": 0})


@pytest.mark.timeout(10)
def test_done_attempts_wait_as_one_blob_until_a_read_and_open_ones_merge_at_once():
    owner, worker = _buffer(), _buffer()
    quick, slow = Entry(_spec(1)), Entry(_spec(2))
    for entry in (quick, slow):
        _owner_life(owner, entry)
    owner.finished(quick)
    _run(worker, quick.spec)
    slow_began = worker.clock()
    worker.running_calls = lambda: [(slow.spec, slow_began)]
    store = TaskEventStore(10)
    ob, wb = owner.batch("nodeA", "driver", 1, [slow]), worker.batch("nodeB", "w", 2)
    assert ob is not None and wb is not None
    assert [r[0] for r in ob["events"]] == [slow.spec.task_id] and ob["done_records"] == 0
    assert [r[0] for r in wb["events"]] == [slow.spec.task_id] and wb["done_records"] == 1
    assert ob["done"] is None and wb["done_jobs"] == {"01000000": 1}
    store.add_batch(ob)
    store.add_batch(wb)
    assert len(store._live) == 1 and len(store._done) == 0 and len(store._blobs) == 1  # nothing decoded yet
    owner.finished(slow)  # ends after the slow attempt was reported open: the worker says so
    worker.running_calls = tuple
    worker.ran(_wire(slow.spec), slow_began, worker.clock() - slow_began)
    assert owner.batch("nodeA", "driver", 1) is None
    wb2 = worker.batch("nodeB", "w", 2)
    assert wb2 is not None and wb2["done"] is None  # its start went out already: open
    store.add_batch(wb2)
    assert not store._live  # the slow attempt ended, without reading any blob
    rows = {r["task_id"]: r for r in answer(store, {"limit": 10})["rows"]}
    assert not store._blobs
    for entry in (quick, slow):
        row = rows[entry.spec.task_id.hex()]
        assert row["state"] == "FINISHED" and row["name"] == entry.spec.name and row["node_id"] == "nodeB"
        assert [e["state"] for e in row["events"]] == [
            "PENDING_ARGS_AVAIL",
            "PENDING_NODE_ASSIGNMENT",
            "SUBMITTED_TO_WORKER",
            "RUNNING",
            "FINISHED",
        ]


@pytest.mark.timeout(10)
def test_unread_blobs_past_the_window_are_dropped_and_counted_by_job():
    store = TaskEventStore(2)
    for i in range(6):
        buf = _buffer()
        buf.ran(_sent(_spec(i)), 1.0, 0.5)
        store.add_batch(buf.batch("n", "w", 1))  # type: ignore[arg-type]
    assert store._blob_records == 2 and store.evicted == 4
    assert store.evicted_by_job["01000000"] == 4
    assert len(store) == 2  # the window after reading: the newest attempts
    assert {r.task_id for r in store.records()} == {_spec(4).task_id, _spec(5).task_id}


@pytest.mark.timeout(10)
def test_a_malformed_blob_is_counted_and_the_rest_of_the_window_survives():
    store = TaskEventStore(10)
    store.add_batch(_batch("n", "w", 1, [[_spec(1).task_id, 0, ts.RUNNING, 1.0, None]]))
    bad = _batch("n", "w", 1, [])
    bad.update(done=b"\xc1not msgpack", done_records=3, done_jobs={})
    store.add_batch(bad)
    wrong_shape = _batch("n", "w", 1, [])
    wrong_shape.update(done=b"\x93\x01\x02\x03", done_records=1, done_jobs={})
    store.add_batch(wrong_shape)
    assert [r["state"] for r in answer(store, {"limit": 10})["rows"]] == ["RUNNING"]
    assert store.stats()["num_malformed_batches"] == 2


@pytest.mark.timeout(10)
def test_a_worker_reports_a_long_call_as_running_once_then_its_end():
    worker = _buffer()
    quick, slow = _sent(_spec(1)), _sent(_spec(2))
    began = worker.clock()
    worker.ran(quick, began, worker.clock() - began)
    slow_began = worker.clock()
    worker.running_calls = lambda: [(slow, slow_began)]  # the executor's table
    first = worker.batch("n", "w", 1)
    assert first is not None
    assert first["done_records"] == 1  # the quick call: RUNNING and FINISHED in one record
    (rec,) = first["events"]
    assert rec[:3] == [slow.task_id, 0, [ts.RUNNING, slow_began]] and rec[4] is None
    # named by the worker: its owner may not have reported the call (it would list nameless)
    assert first["infos"][rec[3]]["name"] == "f2"
    assert worker.batch("n", "w", 1) is None  # still running: not reported again
    fresh = _spec(3)
    worker.running_calls = lambda: [(slow, slow_began), (fresh, worker.clock())]
    assert worker.batch("n", "w", 1) is None  # begun since the last drain: not yet
    worker.ran_and_failed(slow, slow_began, ts.TASK_EXECUTION_EXCEPTION, "ValueError: late")
    worker.running_calls = tuple
    last = worker.batch("n", "w", 1)
    assert last is not None and last["done"] is None  # its start went out already: open
    (rec,) = last["events"]
    assert rec[2] == [ts.RUNNING, slow_began, ts.FAILED, 108.0] and rec[4] == [
        ts.TASK_EXECUTION_EXCEPTION,
        "ValueError: late",
    ]
    assert last["infos"][rec[3]]["name"] == "f2"  # with its info (the owner saw no times: NaN)


def _finish_all(buf: TaskEventBuffer, specs: list[TaskSpec]) -> None:
    """Each call submitted by an owner and run by the worker `buf`."""
    owner = _buffer()
    for spec in specs:
        _owner_life(owner, Entry(spec))
        _run(buf, spec)


def _stored_rows(batch: dict | None) -> dict[str, dict]:
    store = TaskEventStore(100)
    store.add_batch(batch)  # type: ignore[arg-type]
    return {r["task_id"]: r for r in answer(store, {"limit": 100})["rows"]}


@pytest.mark.timeout(10)
def test_interleaved_functions_and_changed_options_keep_their_own_infos():
    buf = _buffer()
    specs = [_spec(i) for i in range(6)]
    for i, spec in enumerate(specs):
        spec.name = "f" if i % 2 else "g"  # two functions, alternating
    specs[5].resources = {"CPU": 2.0}  # same function as 1 and 3, other options
    specs[4].actor_id, specs[4].method, specs[4].name = b"a" * 16, "m", "A.m"
    assert buf.batch("n", "w", 1, ()) is None  # nothing yet
    _finish_all(buf, specs)
    assert len(buf._infos) == 4
    batch = buf.batch("n", "w", 1, ())
    assert batch is not None and batch["done_records"] == 6 and batch["done_jobs"] == {"01000000": 6}
    rows = _stored_rows(batch)
    got = [(rows[s.task_id.hex()]["name"], rows[s.task_id.hex()]["required_resources"]) for s in specs]
    assert got == [
        ("g", {"CPU": 1.0}),
        ("f", {"CPU": 1.0}),
        ("g", {"CPU": 1.0}),
        ("f", {"CPU": 1.0}),
        ("A.m", {"CPU": 1.0}),
        ("f", {"CPU": 2.0}),
    ]
    assert rows[specs[4].task_id.hex()]["type"] == ts.ACTOR_TASK
    assert rows[specs[4].task_id.hex()]["actor_id"] == (b"a" * 16).hex()


@pytest.mark.timeout(10)
def test_rows_of_two_jobs_are_counted_by_job_and_calls_past_the_cache_go_with_their_info(monkeypatch):
    from skate.core_worker import task_events

    monkeypatch.setattr(task_events, "MAX_CACHED_INFOS", 2)
    buf = _buffer()
    specs = [_spec(i) for i in range(5)]
    for i, spec in enumerate(specs):
        spec.name = f"fn{i}"  # five functions: three past the cache
        spec.job_id = "02000000" if i >= 2 else "01000000"
    _finish_all(buf, specs)
    batch = buf.batch("n", "w", 1, ())
    assert batch is not None
    assert batch["done_records"] == 2 and batch["done_jobs"] == {"01000000": 2}
    assert batch["num_events"] == 25 and len(batch["events"]) == 3  # the rest: open records
    rows = _stored_rows(batch)
    assert [rows[s.task_id.hex()]["name"] for s in specs] == [f"fn{i}" for i in range(5)]
    assert [rows[s.task_id.hex()]["job_id"] for s in specs] == ["01000000"] * 2 + ["02000000"] * 3
    assert {rows[s.task_id.hex()]["state"] for s in specs} == {"FINISHED"}


@pytest.mark.timeout(10)
def test_done_rows_are_bounded_and_each_row_trimmed_counts_a_drop():
    buf = _buffer(max_events=3)
    _finish_all(buf, [_spec(i) for i in range(5)])
    batch = buf.batch("n", "w", 1, ())
    assert batch is not None and batch["done_records"] == 3 and batch["dropped"] == 2
    assert set(_stored_rows(batch)) == {_spec(i).task_id.hex() for i in (2, 3, 4)}  # the newest
    _finish_all(buf, [_spec(5)])
    again = buf.batch("n", "w", 1, ())
    assert again is not None and again["done_records"] == 1 and again["dropped"] == 0


@pytest.mark.timeout(10)
def test_times_never_seen_stay_unset_and_a_call_without_times_is_not_recorded():
    owner, buf = _buffer(), _buffer()
    bare = _spec(1)  # its owner records nothing (its events are off): no times, no row
    direct = _spec(2, actor_id=b"a" * 16, method="m")
    direct.submitted_at = direct.ready_at = direct.sent_at = 50.0  # pushed by its user thread when submitted
    creation = Entry(_spec(3, actor_id=b"a" * 16))
    owner.submitted(creation, True)
    owner.stamp(creation, float("nan"))  # the GCS sends an actor's constructor
    for spec in (bare, direct, creation.spec):
        _run(buf, spec)
    batch = buf.batch("n", "w", 1, ())
    assert batch is not None and batch["num_events"] == 5 + 5 and batch["done_records"] == 2
    rows = _stored_rows(batch)
    assert bare.task_id.hex() not in rows
    buf.ran_and_failed(bare, 100.0, "TASK_EXECUTION_EXCEPTION", "ValueError: x")  # nor if it fails
    assert buf.batch("n", "w", 1, ()) is None
    assert [(e["state"], e["created_ms"]) for e in rows[direct.task_id.hex()]["events"]] == [
        ("PENDING_ARGS_AVAIL", 50_000),
        ("PENDING_NODE_ASSIGNMENT", 50_000),
        ("SUBMITTED_TO_WORKER", 50_000),
        ("RUNNING", 103_000),
        ("FINISHED", 104_000),
    ]
    made = rows[creation.spec.task_id.hex()]
    assert made["type"] == ts.ACTOR_CREATION_TASK
    assert [e["state"] for e in made["events"]] == [
        "PENDING_ARGS_AVAIL",
        "PENDING_NODE_ASSIGNMENT",
        "RUNNING",
        "FINISHED",
    ]


@pytest.mark.timeout(10)
def test_a_retry_is_sent_with_its_first_times_and_a_new_push_time():
    owner = _buffer()
    entry = Entry(_spec(1))
    _owner_life(owner, entry)
    entry.spec.attempt += 1  # as the task manager does for a retry
    owner.stamp(entry)
    assert _times(entry.spec) == (101.0, 102.0, 104.0)


@pytest.mark.timeout(10)
def test_the_owner_times_go_over_the_wire_checked():
    spec = _spec(1)
    spec.submitted_at, spec.ready_at, spec.sent_at = 1.0, float("nan"), 3.0
    got = _wire(spec)
    assert got.submitted_at == 1.0 and got.ready_at != got.ready_at and got.sent_at == 3.0
    fields = msgspec.msgpack.decode(msgspec.msgpack.encode(spec))
    fields[-3:] = ["now", "then", "later"]
    with pytest.raises(msgspec.ValidationError):
        TaskSpec.from_wire(fields)


@pytest.mark.timeout(10)
def test_a_row_blob_of_the_wrong_size_is_malformed():
    store = TaskEventStore(10)
    bad = _batch("n", "w", 1, [])
    bad.update(done=msgspec.msgpack.encode(["n", "w", 1, {}, b"\x00" * 7]), done_records=1, done_jobs={})
    store.add_batch(bad)
    assert len(store) == 0 and store.stats()["num_malformed_batches"] == 1


@pytest.mark.timeout(10)
def test_a_worker_turns_the_executors_perf_counter_readings_into_its_clock():
    offset = [1000.0]  # the wall clock minus perf_counter, as the buffer last read it
    worker = TaskEventBuffer(clock=Clock(), perf_offset=lambda: offset[0])
    entry = Entry(_spec(1))
    _owner_life(_buffer(), entry)
    worker.ran(_wire(entry.spec), 5.0, 0.25)  # began at perf 5.0, ran a quarter second
    offset[0] = 2000.0  # the wall clock was stepped: each drain reads the offset again
    slow = _spec(2)
    worker.running_calls = lambda: [(slow, -1990.0)]
    batch = worker.batch("n", "w", 1)
    assert batch is not None and [r[:3] for r in batch["events"]] == [[slow.task_id, 0, [ts.RUNNING, 10.0]]]
    row = _stored_rows(batch)[entry.spec.task_id.hex()]
    assert [e["created_ms"] for e in row["events"]] == [101_000, 102_000, 103_000, 1_005_000, 1_005_250]


@pytest.mark.timeout(10)
def test_a_call_a_row_cannot_hold_goes_as_single_events():
    worker = _buffer()
    odd_id, bad_attempt, one_time = _sent(_spec(1)), _sent(_spec(2)), _sent(_spec(3))
    odd_id.task_id += b"!"  # 17 bytes: a row would cut it
    bad_attempt.attempt = -1
    one_time.ready_at = 7.0  # its owner sent when it was ready (so submitted) but not when sent
    for spec in (odd_id, bad_attempt, one_time):
        worker.ran(spec, 10.0, 1.0)
    batch = worker.batch("n", "w", 1)
    assert batch is not None and batch["done_records"] == 1
    assert sorted(r[0] for r in batch["events"]) == sorted([odd_id.task_id, bad_attempt.task_id])
    for rec in batch["events"]:
        assert rec[2] == [ts.RUNNING, 10.0, ts.FINISHED, 11.0]
        assert batch["infos"][rec[3]]["name"] in ("f1", "f2")
    rows = _stored_rows(batch)
    assert [(e["state"], e["created_ms"]) for e in rows[one_time.task_id.hex()]["events"]] == [
        ("PENDING_ARGS_AVAIL", 7_000),
        ("PENDING_NODE_ASSIGNMENT", 7_000),
        ("RUNNING", 10_000),
        ("FINISHED", 11_000),
    ]


@pytest.mark.timeout(10)
def test_a_call_that_ends_after_a_drain_reported_it_running_ends_as_an_open_record():
    worker = _buffer()
    slow, quick = _sent(_spec(1)), _sent(_spec(2))
    worker.running_calls = lambda: [(slow, 1.0)]
    worker.batch("n", "w", 1)  # the first drain reports every running call
    worker.running_calls = tuple
    worker.ran(slow, 1.0, 50.0)
    worker.ran(quick, 2.0, 1.0)
    batch = worker.batch("n", "w", 1)
    assert batch is not None and batch["done_records"] == 1  # the quick one stays a row
    (rec,) = batch["events"]
    assert rec[0] == slow.task_id and rec[2] == [ts.RUNNING, 1.0, ts.FINISHED, 51.0]
    assert batch["infos"][rec[3]]["name"] == "f1" and not worker._reported
    assert batch["num_events"] == 2 + 5  # the record's two states, the row's five


@pytest.mark.timeout(10)
def test_a_call_pushed_as_it_is_submitted_carries_one_time_and_a_retry_keeps_it():
    owner, worker = _buffer(), _buffer()
    entry = Entry(_spec(1))
    owner.stamp(entry)  # pushed at once: never recorded as waiting
    spec = entry.spec
    assert (spec.submitted_at, spec.ready_at, spec.sent_at) == (None, None, 101.0)
    assert owner_times(spec) == (101.0, 101.0, 101.0)
    waited = Entry(_spec(2))
    owner.submitted(waited, ready=True)  # waited for a lease from 102: submitted and ready then
    owner.stamp(waited)
    assert (waited.spec.submitted_at, waited.spec.ready_at, waited.spec.sent_at) == (None, 102.0, 103.0)
    _run(worker, spec)
    rows = _stored_rows(worker.batch("n", "w", 1))
    assert [e["created_ms"] for e in rows[spec.task_id.hex()]["events"]][:3] == [101_000] * 3
    spec.attempt += 1  # a retry, pushed later: its first two times stay the first push's
    owner.stamp(entry)
    assert owner_times(spec) == (101.0, 101.0, 104.0)


@pytest.mark.timeout(10)
def test_calls_with_the_owners_events_key_find_their_info_by_it(monkeypatch):
    """An owner's `events_key` names a function with its options: the worker finds the info
    by it (interleaved keys too, and past its bound of remembered keys), and the first call
    of a key still looks the function up by value, so two keys of one function share it."""
    from skate.core_worker import task_events

    monkeypatch.setattr(task_events, "MAX_EVENTS_KEYS", 3)
    buf = _buffer()
    keys = [task_events.new_events_key() for _ in range(5)]
    assert len(set(keys)) == 5 and all(0 <= k < 1 << 63 for k in keys)
    specs = [_spec(i) for i in range(12)]
    for i, spec in enumerate(specs):
        spec.name = "f" if i % 2 else "g"  # two functions, alternating...
        spec.events_key = keys[i % 2]
    specs[10].events_key = keys[2]  # ...g with a second key (another owner's, say)
    specs[11].resources, specs[11].events_key = {"CPU": 2.0}, keys[3]  # f with other options
    _finish_all(buf, specs)
    assert len(buf._infos) == 3  # g, f, f with 2 CPUs
    assert set(buf._by_events_key) <= set(keys) and len(buf._by_events_key) <= 3
    rows = _stored_rows(buf.batch("n", "w", 1, ()))
    got = [(rows[s.task_id.hex()]["name"], rows[s.task_id.hex()]["required_resources"]) for s in specs]
    assert got == [("g", {"CPU": 1.0}), ("f", {"CPU": 1.0})] * 5 + [("g", {"CPU": 1.0}), ("f", {"CPU": 2.0})]


@pytest.mark.timeout(10)
def test_an_events_key_survives_the_wire_and_a_bad_one_is_refused():
    spec = _spec(1)
    spec.events_key = (1 << 63) - 1
    assert _wire(spec).events_key == (1 << 63) - 1
    fields = msgspec.msgpack.decode(msgspec.msgpack.encode(spec))
    fields[-1] = "not a number"
    with pytest.raises(msgspec.ValidationError):
        TaskSpec.from_wire(fields)


@pytest.mark.timeout(10)
def test_a_burst_of_one_key_takes_the_short_way_and_hands_the_rest_on_unchanged():
    """Calls with the previous call's events key and only the owner's send time are packed
    straight away; one of them that waited, one a row cannot hold and one of another key
    take the long way, with the perf-to-wall offset added once and their own info."""
    from skate.core_worker import task_events

    worker = TaskEventBuffer(clock=Clock(), perf_offset=lambda: 1000.0)
    key, other = task_events.new_events_key(), task_events.new_events_key()
    specs = [_spec(i) for i in range(5)]
    for spec in specs:
        spec.events_key, spec.sent_at = key, 50.0
    specs[2].ready_at = 40.0  # waited for a lease since 40
    specs[3].attempt = -1  # a row cannot hold it: single events
    specs[4].events_key, specs[4].name = other, "g"
    for i, spec in enumerate(specs):
        worker.ran(_wire(spec), 10.0 * i, 1.0)
    batch = worker.batch("n", "w", 1)
    assert batch is not None and batch["done_records"] == 4
    (rec,) = batch["events"]
    assert rec[0] == specs[3].task_id and rec[2][-4:] == [ts.RUNNING, 1030.0, ts.FINISHED, 1031.0]
    rows = _stored_rows(batch)
    events = {i: rows[s.task_id.hex()]["events"] for i, s in enumerate(specs)}
    times = {i: [(e["state"], e["created_ms"]) for e in got] for i, got in events.items()}
    assert times[1] == [
        ("PENDING_ARGS_AVAIL", 50_000),
        ("PENDING_NODE_ASSIGNMENT", 50_000),
        ("SUBMITTED_TO_WORKER", 50_000),
        ("RUNNING", 1_010_000),
        ("FINISHED", 1_011_000),
    ]
    assert times[2][:3] == [
        ("PENDING_ARGS_AVAIL", 40_000),
        ("PENDING_NODE_ASSIGNMENT", 40_000),
        ("SUBMITTED_TO_WORKER", 50_000),
    ]
    assert times[2][3:] == [("RUNNING", 1_020_000), ("FINISHED", 1_021_000)]
    assert [rows[s.task_id.hex()]["name"] for s in specs] == ["f0", "f0", "f0", "f0", "g"]
    assert batch["done_jobs"] == {"01000000": 4}


@pytest.mark.timeout(10)
def test_rows_are_counted_by_info_whether_one_or_several():
    from skate.core_worker.task_events import DONE_ROW, _count_infos

    def rows(infos: list[int]) -> bytes:
        return b"".join(DONE_ROW.pack(bytes(16), 0, i, 1.0, 1.0, 1.0, 2.0, 3.0) for i in infos)

    assert dict(_count_infos(rows([7] * 5))) == {7: 5}
    assert dict(_count_infos(rows([7, 7, 3, 7, 2]))) == {7: 3, 3: 1, 2: 1}
    assert dict(_count_infos(b"")) == {}


@pytest.mark.timeout(10)
def test_a_trim_between_sends_keeps_the_newest_rows_and_counts_the_rest():
    buf = _buffer(max_events=3)
    _finish_all(buf, [_spec(i) for i in range(4)])
    buf.trim()
    assert len(buf.done) == 3 * DONE_ROW.size and buf.dropped == 1
    buf.trim()  # at the bound: nothing more goes
    assert len(buf.done) == 3 * DONE_ROW.size and buf.dropped == 1
    _finish_all(buf, [_spec(4)])
    batch = buf.batch("n", "w", 1, ())
    assert batch is not None and batch["done_records"] == 3 and batch["dropped"] == 2
    assert set(_stored_rows(batch)) == {_spec(i).task_id.hex() for i in (2, 3, 4)}


@pytest.mark.timeout(30)
def test_rows_appended_while_drains_run_are_each_sent_once_and_whole():
    """A thread appends rows of both kinds (a spec without the owner's events key: the long
    way; with one, after its first: the short way) while drains take them."""
    from skate.core_worker import task_events

    buf = _buffer()
    key = task_events.new_events_key()
    specs = [_sent(_spec(i)) for i in range(20_000)]
    for i, spec in enumerate(specs):
        spec.name = "f"  # one function: every call a row
        if i // 10 % 2:  # runs of ten calls each way
            spec.events_key, spec.sent_at = key, 50.0
    done = threading.Event()

    def run() -> None:
        for spec in specs:
            buf.ran(spec, 1.0, 1.0)
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    seen: list[bytes] = []
    batches = shorts = 0
    while True:
        finished = done.is_set()
        batch = buf.batch("n", "w", 1, ())
        if batch is not None and batch["done"] is not None:
            batches += 1
            _, _, _, _, rows, short, _ = msgspec.msgpack.decode(batch["done"])
            assert len(rows) % DONE_ROW.size == 0 and len(short) % task_events.SHORT_ROW.size == 0
            got = [row[0] for row in DONE_ROW.iter_unpack(rows)]
            got += [row[0] for row in task_events.SHORT_ROW.iter_unpack(short)]
            assert len(got) == batch["done_records"]
            seen += got
            shorts += len(short) // task_events.SHORT_ROW.size
        if finished:
            break
    thread.join()
    assert buf.dropped == 0 and not buf.done and not buf.short and batches > 1, (
        batches
    )  # drains ran meanwhile
    assert sorted(seen) == sorted(s.task_id for s in specs)
    assert shorts == 9_000  # each run of ten with the key: its first the long way


@pytest.mark.timeout(10)
def test_a_short_row_of_a_call_reported_running_ends_as_an_open_record_and_the_rest_stay_rows():
    """Calls of one events key pushed as submitted take `ran`'s short way (SHORT_ROW, the
    perf reading kept raw): one a drain reported running comes out of the short rows as an
    open record, its times on the wall clock; the others stay short rows, read by the GCS
    with the batch's offset."""
    from skate.core_worker import task_events

    worker = TaskEventBuffer(clock=Clock(), perf_offset=lambda: 1000.0)
    key = task_events.new_events_key()
    specs = [_spec(i) for i in range(4)]
    for spec in specs:
        spec.events_key, spec.sent_at = key, 50.0
    worker.ran(_wire(specs[0]), 1.0, 1.0)  # the key's first call: the long way, found its info
    worker.running_calls = lambda: [(specs[1], 2.0)]
    first = worker.batch("n", "w", 1)
    assert first is not None and first["done_records"] == 1
    assert [r[:3] for r in first["events"]] == [[specs[1].task_id, 0, [ts.RUNNING, 1002.0]]]
    worker.running_calls = tuple
    for i in (1, 2, 3):
        worker.ran(_wire(specs[i]), 10.0 * i, 1.0)
    assert len(worker.short) == 3 * task_events.SHORT_ROW.size and not worker.done  # the short way
    batch = worker.batch("n", "w", 1)
    assert batch is not None and batch["done_records"] == 2 and batch["done_jobs"] == {"01000000": 2}
    (rec,) = batch["events"]
    assert rec[0] == specs[1].task_id
    assert rec[2] == [
        *(ts.PENDING_ARGS_AVAIL, 50.0, ts.PENDING_NODE_ASSIGNMENT, 50.0, ts.SUBMITTED_TO_WORKER, 50.0),
        *(ts.RUNNING, 1010.0, ts.FINISHED, 1011.0),  # on the wall clock
    ]
    assert not worker._reported and batch["num_events"] == 5 + 2 * 5
    rows = _stored_rows(batch)
    assert set(rows) == {specs[i].task_id.hex() for i in (1, 2, 3)}
    assert {rows[specs[i].task_id.hex()]["state"] for i in (1, 2, 3)} == {"FINISHED"}
    got = [(e["state"], e["created_ms"]) for e in rows[specs[3].task_id.hex()]["events"]]
    assert got == [
        ("PENDING_ARGS_AVAIL", 50_000),
        ("PENDING_NODE_ASSIGNMENT", 50_000),
        ("SUBMITTED_TO_WORKER", 50_000),
        ("RUNNING", 1_030_000),
        ("FINISHED", 1_031_000),
    ]


@pytest.mark.timeout(10)
def test_a_blob_with_bad_short_rows_is_counted_malformed_and_the_window_keeps_the_rest():
    store = TaskEventStore(100)
    good = _buffer()
    _finish_all(good, [_spec(1)])
    store.add_batch(good.batch("n", "w", 1, ()))  # type: ignore[arg-type]
    enc = msgspec.msgpack.encode
    row = ts.SHORT_ROW.pack(_spec(2).task_id, 0, 0, 1.0, 2.0, 3.0)
    for bad in (
        [b"", b"x" * 5, 0.0],
        [b"", row, "offset"],
        [b"", row],
    ):  # a torn row, a bad offset, no offset
        store.add_batch(
            {
                "node_id": "n",
                "worker_id": "w",
                "pid": 1,
                "events": [],
                "done_records": 1,
                "done": enc(["n", "w", 1, {}, *bad]),
            }
        )
    rows = answer(store, {"limit": 100})["rows"]
    assert [r["task_id"] for r in rows] == [_spec(1).task_id.hex()]
    assert store.stats()["num_malformed_batches"] == 3


@pytest.mark.timeout(10)
def test_rows_are_trimmed_between_sends_at_most_a_second_apart(monkeypatch):
    """With a send interval past a second, the I/O loop trims the rows in between, so they
    never pile up past the bound by more than a second's."""
    import types

    from skate.core_worker.core import CoreWorker

    monkeypatch.setenv("SKATE_TASK_EVENTS_REPORT_INTERVAL_MS", "3500")
    later: list[tuple[float, object]] = []
    buf = _buffer(max_events=2)
    _finish_all(buf, [_spec(i) for i in range(5)])
    core = types.SimpleNamespace(
        task_events=buf,
        stopped=False,
        gcs=None,
        node_id="n",
        worker_id="w",
        submitter=types.SimpleNamespace(manager=types.SimpleNamespace(pending={})),
        loop=types.SimpleNamespace(call_later=lambda delay, fn, *args: later.append((delay, fn))),
    )
    core._trim_task_events = types.MethodType(CoreWorker._trim_task_events, core)
    core._send_task_events = types.MethodType(CoreWorker._send_task_events, core)
    core._task_events_batch = types.MethodType(CoreWorker._task_events_batch, core)
    CoreWorker._send_task_events(core, True)  # type: ignore[arg-type]
    assert [round(d, 3) for d, _ in later] == [0.875, 1.75, 2.625, 3.5]  # three trims, the next send
    _finish_all(buf, [_spec(i) for i in range(5, 9)])
    later[0][1]()  # the first trim
    assert len(buf.done) == 2 * DONE_ROW.size and buf.dropped == 2
