"""Task events: the per-process buffer (batching, bounds) and the GCS's bounded window."""

from __future__ import annotations

import pytest

from skate import _task_states as ts
from skate._system_config import parse
from skate.core_worker.task_events import TaskEventBuffer
from skate.gcs.task_event_store import TaskEventStore, answer
from skate.protocol.messages import TaskSpec


def _spec(n: int, attempt: int = 0, actor_id: bytes | None = None, method: str | None = None) -> TaskSpec:
    spec = TaskSpec(n.to_bytes(4, "little") * 4, f"f{n}", 1, ["w", "addr"], "01000000", "ns", b"k")
    spec.attempt = attempt
    spec.actor_id = actor_id
    spec.method = method
    spec.resources = {"CPU": 1.0}
    return spec


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _owner_life(buf: TaskEventBuffer, spec: TaskSpec) -> None:
    buf.submitted(spec)
    buf.state(spec, ts.PENDING_NODE_ASSIGNMENT)
    buf.state(spec, ts.SUBMITTED_TO_WORKER)


@pytest.mark.timeout(10)
def test_buffer_batches_every_event_into_one_message_then_empties():
    buf = TaskEventBuffer(clock=Clock())
    specs = [_spec(i) for i in range(3)]
    for spec in specs:
        _owner_life(buf, spec)
    batch = buf.batch("node", "worker", 7)
    assert batch is not None
    assert batch["node_id"] == "node" and batch["worker_id"] == "worker" and batch["pid"] == 7
    assert len(batch["events"]) == 9
    first = batch["events"][0]
    assert first[0] == specs[0].task_id and first[1] == 0 and first[2] == ts.PENDING_ARGS_AVAIL
    assert first[3] == 101.0
    assert first[4]["name"] == "f0" and first[4]["type"] == ts.NORMAL_TASK
    assert first[4]["required_resources"] == {"CPU": 1.0} and first[4]["job_id"] == "01000000"
    assert batch["events"][1][4] is None
    assert buf.batch("node", "worker", 7) is None  # nothing new: no message at all


@pytest.mark.timeout(10)
def test_buffer_is_bounded_and_counts_overflow():
    buf = TaskEventBuffer(max_events=4, clock=Clock())
    for i in range(10):
        buf.state(_spec(i), ts.RUNNING)
    batch = buf.batch("n", "w", 1)
    assert batch is not None
    assert [e[0] for e in batch["events"]] == [_spec(i).task_id for i in range(6, 10)]  # the newest kept
    assert batch["dropped"] == 1
    buf.state(_spec(1), ts.RUNNING)
    assert buf.batch("n", "w", 1)["dropped"] == 0  # type: ignore[index]


@pytest.mark.timeout(10)
def test_failed_events_carry_error_type_and_a_bounded_message():
    buf = TaskEventBuffer(clock=Clock())
    buf.failed(_spec(1), "WORKER_DIED", "x" * 5000)
    buf.failed(_spec(2), None)
    events = buf.drain()
    assert events is not None
    assert events[0][2] == ts.FAILED and events[0][4][0] == "WORKER_DIED" and len(events[0][4][1]) == 1000
    assert events[1][4] is None


def _batch(node: str, worker: str, pid: int, events: list) -> dict:
    return {"node_id": node, "worker_id": worker, "pid": pid, "events": events, "dropped": 0}


@pytest.mark.timeout(10)
def test_store_merges_owner_and_worker_events_into_one_attempt():
    owner, worker = TaskEventBuffer(clock=Clock()), TaskEventBuffer(clock=Clock())
    spec = _spec(1)
    _owner_life(owner, spec)
    worker.state(spec, ts.RUNNING)
    worker.failed(spec, ts.TASK_EXECUTION_EXCEPTION, "ValueError: boom")
    owner.failed(spec, None)
    store = TaskEventStore(10)
    store.add_batch(worker.batch("nodeB", "workerB", 42))  # type: ignore[arg-type]
    store.add_batch(owner.batch("nodeA", "driver", 1))  # type: ignore[arg-type]
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
    for i in range(5000):
        tid = i.to_bytes(16, "little")
        info = {"name": "f", "job_id": "01000000", "type": ts.NORMAL_TASK, "func_or_class_name": "f"}
        store.add_batch(
            _batch(
                "n", "w", 1, [[tid, 0, ts.PENDING_ARGS_AVAIL, 1.0, info], [tid, 0, ts.FINISHED, 2.0, None]]
            )
        )
    assert len(store) == 100
    assert store.evicted == 4900 and store.evicted_by_job["01000000"] == 4900
    assert store.events_received == 10_000


@pytest.mark.timeout(10)
def test_store_counts_events_dropped_at_the_source():
    store = TaskEventStore(10)
    store.add_batch({"node_id": "n", "worker_id": "w", "pid": 1, "events": [], "dropped": 5})
    assert store.stats()["num_dropped_at_source"] == 5


@pytest.mark.timeout(10)
def test_answer_filters_limits_and_summarizes():
    store = TaskEventStore(100)
    owner = TaskEventBuffer(clock=Clock())
    for i in range(5):
        spec = _spec(i)
        owner.submitted(spec)
        if i % 2:
            owner.failed(spec, "WORKER_DIED", "gone")
        else:
            owner.state(spec, ts.FINISHED)
    store.add_batch(owner.batch("n", "w", 1))  # type: ignore[arg-type]
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
