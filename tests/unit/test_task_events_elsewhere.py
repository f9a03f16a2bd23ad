"""Rows an owner writes from its actor calls' replies (`TaskEventBuffer.ran_elsewhere`): the
worker that ran the call only puts its start in the reply (`Executor._succeeded`), and the
GCS lists the row as run by that worker."""

from __future__ import annotations

import collections
import types

import pytest

from skate import _task_states as ts
from skate.core_worker.executor import Executor
from skate.core_worker.task_events import MAX_CACHED_INFOS, TaskEventBuffer
from skate.gcs.task_event_store import TaskEventStore
from skate.protocol.messages import TaskSpec

ACTOR = b"a" * 16
EXEC_B = ("nodeB", "workerB", 42)
EXEC_C = ("nodeC", "workerC", 43)


def _spec(n: int, method: str = "m", sent: float | None = 10.0) -> TaskSpec:
    spec = TaskSpec(n.to_bytes(4, "little") * 4, f"Cls.{method}", 1, ["w", "addr"], "01000000", "ns")
    spec.actor_id = ACTOR
    spec.method = method
    spec.sent_at = sent
    return spec


def _buffer(max_events: int = 100_000) -> TaskEventBuffer:
    return TaskEventBuffer(max_events, clock=lambda: 1000.0, perf_offset=lambda: 0.0)


class Actor:
    """What the buffer is given of an owner's ActorState."""

    def __init__(self, executor: tuple) -> None:
        self.executor = executor
        self.ev_infos: dict = {}


ACTORS: dict[tuple, Actor] = {}  # (by test: an info id is its owner's buffer's)


@pytest.fixture(autouse=True)
def _fresh_actors():
    ACTORS.clear()


def _ran(owner: TaskEventBuffer, executor: tuple, spec: TaskSpec, started, took) -> None:
    """The owner handles the reply of a call its actor at `executor` ran (as `_on_reply`)."""
    actor = ACTORS.setdefault(executor, Actor(executor))
    owner.ran_elsewhere(actor, actor.executor, actor.ev_infos, spec, started, took)


def _listed(store: TaskEventStore) -> dict[bytes, dict]:
    return {r.task_id: r.row() | {"_rec": r} for r in store.records()}


def test_an_owner_writes_the_row_of_a_call_pushed_as_submitted_as_run_by_its_worker():
    owner, store = _buffer(), TaskEventStore()
    spec = _spec(1)
    _ran(owner, EXEC_B, spec, 20.0, 0.5)
    batch = owner.batch("nodeA", "ownerA", 7)
    assert batch is not None and batch["done"] is None and batch["done_records"] == 0
    [[blob, count, jobs]] = batch["elsewhere"]
    assert count == 1 and jobs == {"01000000": 1} and batch["num_events"] == 5
    store.add_batch(batch)
    [rec] = store.records()
    assert (rec.node_id, rec.worker_id, rec.pid) == EXEC_B  # where it ran, not where its owner is
    assert rec.state == ts.FINISHED and rec.info is not None and rec.info["name"] == "Cls.m"
    assert rec.times[ts.SUBMITTED_TO_WORKER] == 10.0
    assert rec.times[ts.RUNNING] == 20.0 and rec.times[ts.FINISHED] == 20.5
    assert owner.batch("nodeA", "ownerA", 7) is None  # taken once


def test_a_call_that_waited_keeps_the_owners_three_times():
    owner, store = _buffer(), TaskEventStore()
    spec = _spec(2)
    spec.submitted_at, spec.ready_at = 5.0, 8.0
    _ran(owner, EXEC_B, spec, 20.0, 1.0)
    store.add_batch(owner.batch("nodeA", "ownerA", 7))
    [rec] = store.records()
    assert rec.times[ts.PENDING_ARGS_AVAIL] == 5.0 and rec.times[ts.PENDING_NODE_ASSIGNMENT] == 8.0
    assert rec.times[ts.SUBMITTED_TO_WORKER] == 10.0 and rec.times[ts.FINISHED] == 21.0
    assert (rec.node_id, rec.worker_id, rec.pid) == EXEC_B


def test_rows_of_two_workers_go_as_two_blobs_each_with_its_worker():
    owner, store = _buffer(), TaskEventStore()
    _ran(owner, EXEC_B, _spec(1), 20.0, 0.5)
    _ran(owner, EXEC_C, _spec(2, "n"), 21.0, 0.5)
    _ran(owner, EXEC_B, _spec(3), 22.0, 0.5)
    batch = owner.batch("nodeA", "ownerA", 7)
    assert sorted(c for _, c, _ in batch["elsewhere"]) == [1, 2] and batch["num_events"] == 15
    store.add_batch(batch)
    where = {r.task_id[0]: (r.node_id, r.worker_id, r.pid, r.info["name"]) for r in store.records()}
    assert where == {1: (*EXEC_B, "Cls.m"), 2: (*EXEC_C, "Cls.n"), 3: (*EXEC_B, "Cls.m")}


@pytest.mark.parametrize("started, took", [("soon", 0.5), (20.0, None), (None, None)])
def test_a_reply_with_times_that_are_not_numbers_leaves_no_row_and_raises_nothing(started, took):
    owner = _buffer()
    _ran(owner, EXEC_B, _spec(1), started, took)
    batch = owner.batch("nodeA", "ownerA", 7)
    assert batch is None or (batch["elsewhere"] == [] and batch["events"] == [])


def test_rows_a_pack_refuses_go_as_single_events_and_still_list():
    owner, store = _buffer(), TaskEventStore()
    bad_attempt = _spec(1)
    bad_attempt.attempt = -1  # not an unsigned 32-bit number: the row format refuses it
    short_id = _spec(2)
    short_id.task_id = b"short"
    _ran(owner, EXEC_B, bad_attempt, 20.0, 0.5)
    _ran(owner, EXEC_B, short_id, 21.0, 0.5)
    store.add_batch(owner.batch("nodeA", "ownerA", 7))
    got = {r.task_id: r for r in store.records()}
    assert set(got) == {bad_attempt.task_id, b"short"}
    for rec in got.values():
        assert rec.state == ts.FINISHED and rec.info["name"] == "Cls.m"
        assert rec.node_id == "nodeA"  # (as the owner's: a single event names no other worker)


def test_an_info_past_the_cache_still_names_the_row():
    owner, store = _buffer(), TaskEventStore()
    for i in range(MAX_CACHED_INFOS):
        owner.info_id(_spec(1, method=f"f{i}"))
    late = _spec(1, method="late")
    _ran(owner, EXEC_B, late, 20.0, 0.5)
    store.add_batch(owner.batch("nodeA", "ownerA", 7))
    [rec] = [r for r in store.records() if r.info and r.info["name"] == "Cls.late"]
    assert rec.state == ts.FINISHED and rec.times[ts.RUNNING] == 20.0


def test_rows_written_for_other_workers_are_bounded_and_counted_when_trimmed():
    owner = _buffer(max_events=3)
    for i in range(5):
        _ran(owner, EXEC_B, _spec(i), 20.0 + i, 0.1)
    owner.trim()
    batch = owner.batch("nodeA", "ownerA", 7)
    [[_, count, _]] = batch["elsewhere"]
    assert count == 3 and batch["dropped"] == 2
    store = TaskEventStore()
    store.add_batch(batch)
    assert sorted(r.task_id[0] for r in store.records()) == [2, 3, 4]  # the newest kept


def test_a_call_the_owner_reported_in_flight_is_forgotten_once_its_row_is_sent():
    owner = _buffer()
    spec = _spec(1)
    owner._reported.add(spec.task_id)  # (as a drain does for a call in flight an interval)
    _ran(owner, EXEC_B, spec, 20.0, 0.5)
    owner.batch("nodeA", "ownerA", 7)
    assert spec.task_id not in owner._reported


@pytest.mark.parametrize(
    "item",
    [b"not a triple", [b"blob", "three", {}], [b"blob", 1, {"job": "x"}], ["not bytes", 1, {}], [b"", 1]],
)
def test_a_malformed_blob_of_other_workers_rows_is_counted_and_the_rest_kept(item):
    owner, store = _buffer(), TaskEventStore()
    _ran(owner, EXEC_B, _spec(1), 20.0, 0.5)
    batch = owner.batch("nodeA", "ownerA", 7)
    batch["elsewhere"].insert(0, item)
    store.add_batch(batch)
    assert store.malformed == 1
    [rec] = store.records()
    assert rec.state == ts.FINISHED and rec.worker_id == "workerB"


def test_a_worker_knows_when_it_last_sent_its_events_by_its_own_clock():
    clock = iter([1000.0, 1001.0])
    worker = TaskEventBuffer(clock=lambda: next(clock), perf_offset=lambda: 900.0)
    assert worker.drained_perf == float("inf")  # before its first send: every call its own
    worker.batch("n", "w", 1)
    assert worker.drained_perf == 100.0  # (1000 by the wall clock, less the offset)


def _executor(events_drained: float = 50.0, offset: float = 1000.0) -> tuple[Executor, TaskEventBuffer]:
    ex = Executor.__new__(Executor)
    ex.core = types.SimpleNamespace(ownership=types.SimpleNamespace(contained={}, reported_owns=False))
    ex._calls = collections.Counter()
    events = TaskEventBuffer(perf_offset=lambda: offset)
    events.drained_perf = events_drained
    return ex, events


def test_an_actor_call_begun_since_the_last_send_leaves_its_row_to_its_owner():
    ex, events = _executor()
    reply = ex._succeeded(_spec(1), "ok", 60.0, events)
    assert reply.started == 1060.0 and not reply.app_error  # on the wall clock


@pytest.mark.parametrize(
    "case",
    ["events off", "a normal task", "begun before the last send"],
)
def test_other_calls_are_recorded_by_their_worker(case):
    ex, events = _executor()
    spec, start, ev = _spec(1), 60.0, events
    if case == "events off":
        ev = None
    elif case == "a normal task":
        spec.method = None
    else:
        start = 40.0  # (it may have been reported running: its worker ends the record)
    assert ex._succeeded(spec, "ok", start, ev).started is None


def test_an_actor_that_restarts_between_two_sends_has_each_row_listed_where_it_ran():
    owner, store = _buffer(), TaskEventStore()
    actor = Actor(EXEC_B)
    owner.ran_elsewhere(actor, actor.executor, actor.ev_infos, _spec(1), 20.0, 0.5)
    actor.executor = EXEC_C  # (its new incarnation, as `_locate` finds it)
    owner.ran_elsewhere(actor, actor.executor, actor.ev_infos, _spec(2), 21.0, 0.5)
    batch = owner.batch("nodeA", "ownerA", 7)
    assert len(batch["elsewhere"]) == 2
    store.add_batch(batch)
    where = {r.task_id[0]: (r.node_id, r.worker_id, r.pid) for r in store.records()}
    assert where == {1: EXEC_B, 2: EXEC_C}
    assert owner.batch("nodeA", "ownerA", 7) is None


def test_a_methods_info_is_remembered_per_job():
    owner, store = _buffer(), TaskEventStore()
    actor = Actor(EXEC_B)
    first, other_job = _spec(1), _spec(2)
    other_job.job_id = "02000000"
    for spec in (first, _spec(3), other_job):
        owner.ran_elsewhere(actor, actor.executor, actor.ev_infos, spec, 20.0, 0.5)
    assert set(actor.ev_infos) == {"m"} and actor.ev_infos["m"][0] == "02000000"
    store.add_batch(owner.batch("nodeA", "ownerA", 7))
    jobs = {r.task_id[0]: r.info["job_id"] for r in store.records()}
    assert jobs == {1: "01000000", 3: "01000000", 2: "02000000"}
