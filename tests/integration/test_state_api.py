"""The state API (`skate.util.state`) on a two-node cluster: every list, get and summarize
call, with filters, checked against what the workload really did."""

from __future__ import annotations

import os
import time

import pytest

import skate
from skate.cluster_utils import Cluster
from skate.util import state
from skate.util.placement_group import placement_group, remove_placement_group
from tests.integration._cluster_helpers import node_args
from tests.integration._helpers import wait_for


@skate.remote
def add_one(x):
    return x + 1


@skate.remote
def explode():
    raise ValueError("boom in explode")


@skate.remote(resources={"b": 1})
def where_b():
    return skate.get_runtime_context().get_node_id()


@skate.remote(resources={"b": 1})
def hold_b(seconds):
    time.sleep(seconds)
    return seconds


@skate.remote
class SlowStart:
    def __init__(self, seconds):
        time.sleep(seconds)

    def ping(self):
        return "pong"


@skate.remote(resources={"b": 1})
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n

    def pid(self):
        return os.getpid()


@skate.remote
class Quiet:
    def m(self):
        return 1

    @skate.method(enable_task_events=False)
    def hidden(self):
        return 2


@pytest.fixture(scope="module")
def observed():
    """A head (1 CPU) and a second node with resource b, and a workload that left traces."""
    if skate.is_initialized():
        skate.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1))
    try:
        other = cluster.add_node(**node_args(num_cpus=2, resources={"b": 2}))
        skate.init(address=cluster.address)
        assert skate.get([add_one.remote(i) for i in range(5)]) == [1, 2, 3, 4, 5]
        with pytest.raises(ValueError):
            skate.get(explode.remote())
        assert skate.get(where_b.remote()) == other.node_id
        counter = Counter.options(name="the_counter").remote()
        assert skate.get(counter.incr.remote()) == 1
        actor_pid = skate.get(counter.pid.remote())
        pg = placement_group([{"CPU": 1}], name="the_group")
        assert pg.wait(30)
        kept = skate.put(b"x" * 1000)
        yield {
            "cluster": cluster,
            "other": other,
            "counter": counter,
            "actor_pid": actor_pid,
            "pg": pg,
            "kept": kept,
        }
        remove_placement_group(pg)
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()


def _tasks_settled(**filters) -> list:
    """Task rows once the events of their owner and of the workers that ran them reached the
    GCS (each process sends them once a second)."""
    flt = [(k, "=", v) for k, v in filters.items()]

    def settled():
        rows = state.list_tasks(filters=flt, detail=True)
        # (a failed attempt settles once the worker's side, which says why, arrived too)
        done = all(
            r["worker_pid"] and r["end_time_ms"] and (r["state"] != "FAILED" or r["error_type"]) for r in rows
        )
        return rows if rows and done else None

    return wait_for(settled, timeout=15) or []


@pytest.mark.timeout(60)
def test_list_nodes_and_get_node(observed):
    nodes = state.list_nodes()
    assert {n["node_id"] for n in nodes} == {observed["cluster"].head_node.node_id, observed["other"].node_id}
    assert all(n["state"] == "ALIVE" for n in nodes)
    [head] = state.list_nodes(filters=[("is_head_node", "=", True)])
    assert head["node_id"] == observed["cluster"].head_node.node_id
    other = state.get_node(observed["other"].node_id)
    assert other is not None and other.resources_total["b"] == 2.0 and other.state == "ALIVE"
    assert state.get_node("00" * 20) is None


@pytest.mark.timeout(60)
def test_list_actors_shows_node_and_state(observed):
    [row] = state.list_actors(filters=[("class_name", "=", "Counter")])
    assert row["state"] == "ALIVE" and row["name"] == "the_counter"
    assert row["node_id"] == observed["other"].node_id and row["pid"] == observed["actor_pid"]
    assert row.actor_id == observed["counter"]._actor_id.hex()
    assert state.list_actors(filters=[("state", "!=", "ALIVE"), ("class_name", "=", "Counter")]) == []
    got = state.get_actor(row["actor_id"])
    assert got is not None and got["class_name"] == "Counter" and "methods" in got  # detail


@pytest.mark.timeout(60)
def test_list_tasks_with_states_errors_and_placement(observed):
    finished = _tasks_settled(func_or_class_name="add_one", state="FINISHED")
    assert len(finished) == 5
    assert all(t["type"] == "NORMAL_TASK" and t["worker_pid"] for t in finished)
    [failed] = _tasks_settled(name="explode")
    assert failed["state"] == "FAILED" and failed["error_type"] == "TASK_EXECUTION_EXCEPTION"
    assert "boom in explode" in failed["error_message"]
    assert [e["state"] for e in failed["events"]][-2:] == ["RUNNING", "FAILED"]
    [on_b] = _tasks_settled(name="where_b")
    assert on_b["node_id"] == observed["other"].node_id and on_b["required_resources"] == {
        "CPU": 1.0,
        "b": 1.0,
    }
    calls = _tasks_settled(name="Counter.incr")
    assert calls and calls[0]["type"] == "ACTOR_TASK"
    assert calls[0]["actor_id"] == observed["counter"]._actor_id.hex()
    assert len(state.list_tasks(filters=[("name", "=", "add_one")], limit=2)) == 2
    assert "events" not in state.list_tasks(limit=1)[0]  # without detail


@pytest.mark.timeout(60)
def test_a_task_waiting_for_a_node_shows_so_and_its_events_keep_the_wait(observed):
    # One b is free (the counter holds the other): the second call waits for the first.
    first, second = hold_b.remote(3.0), hold_b.remote(0.0)
    pending = [("name", "=", "hold_b"), ("state", "=", "PENDING_NODE_ASSIGNMENT")]
    waiting = wait_for(lambda: state.list_tasks(filters=pending), timeout=15)
    assert [t["task_id"] for t in waiting] == [second.task_id().hex()]
    assert skate.get([first, second]) == [3.0, 0.0]
    rows = {r["task_id"]: r for r in _tasks_settled(name="hold_b")}
    seen = {e["state"]: e["created_ms"] for e in rows[second.task_id().hex()]["events"]}
    assert list(seen) == [
        "PENDING_ARGS_AVAIL",
        "PENDING_NODE_ASSIGNMENT",
        "SUBMITTED_TO_WORKER",
        "RUNNING",
        "FINISHED",
    ]
    assert seen["PENDING_ARGS_AVAIL"] == seen["PENDING_NODE_ASSIGNMENT"]  # nothing to wait for
    assert seen["SUBMITTED_TO_WORKER"] - seen["PENDING_NODE_ASSIGNMENT"] >= 2000  # the wait for b


@pytest.mark.timeout(60)
def test_an_actor_call_waiting_for_its_actor_keeps_the_wait_in_its_events(observed):
    slow = SlowStart.remote(2.0)
    ref = slow.ping.remote()  # queued while the actor is being made
    assert skate.get(ref) == "pong"
    [row] = _tasks_settled(name="SlowStart.ping")
    seen = {e["state"]: e["created_ms"] for e in row["events"]}
    assert list(seen)[:3] == ["PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER"]
    assert seen["SUBMITTED_TO_WORKER"] - seen["PENDING_NODE_ASSIGNMENT"] >= 1500
    skate.kill(slow)


@pytest.mark.timeout(60)
def test_calls_with_enable_task_events_false_leave_no_record(observed):
    quiet, loud = Quiet.options(enable_task_events=False).remote(), Quiet.remote()
    assert skate.get([quiet.m.remote(), loud.hidden.remote()]) == [1, 2]
    silent = add_one.options(enable_task_events=False, name="add_one_silently").remote(1)
    failed = explode.options(enable_task_events=False, name="explode_silently").remote()
    assert skate.get(silent) == 2
    with pytest.raises(ValueError):
        skate.get(failed)
    # Then calls with events on from the same processes: once theirs have arrived, anything
    # the calls above had recorded would have too (each process sends its events in order).
    assert skate.get([quiet.m.options(enable_task_events=True).remote(), loud.m.remote()]) == [1, 1]
    with pytest.raises(ValueError):
        skate.get(explode.options(name="explode_loudly").remote())
    assert skate.get(add_one.options(name="add_one_loudly").remote(1)) == 2
    for name in ("explode_loudly", "add_one_loudly"):
        assert _tasks_settled(name=name), (name, state.summarize_tasks())
    marked = wait_for(lambda: len(_tasks_settled(name="Quiet.m")) == 2 or None, timeout=15)
    assert marked, state.list_tasks(filters=[("name", "=", "Quiet.m")])
    names = [t["name"] for t in state.list_tasks(limit=10_000)]
    for gone in ("add_one_silently", "explode_silently", "Quiet.hidden"):
        assert gone not in names
    assert names.count("Quiet.__init__") == 1  # the loud one's constructor
    for actor in (quiet, loud):
        skate.kill(actor)


@skate.remote
def twin_a(x):
    return x


@skate.remote
def twin_b(x):
    return -x


@skate.remote
class Twins:
    def left(self):
        return "l"

    def right(self):
        return "r"


@pytest.mark.timeout(60)
def test_interleaved_functions_and_methods_keep_their_names(observed):
    """Each remote function and actor method sends its own events key (TaskSpec.events_key):
    a worker that runs them interleaved, and the same function under another name or in a
    placement group, still records each call under its own name and options."""
    pg = observed["pg"]
    refs = {}
    for i in range(6):
        refs[twin_a.remote(i)] = "twin_a"
        refs[twin_b.remote(i)] = "twin_b"
        refs[twin_a.options(name="twin_renamed").remote(i)] = "twin_renamed"
    placed = twin_b.options(placement_group=pg).remote(7)
    refs[placed] = "twin_b"
    twins = Twins.remote()
    for _ in range(4):
        refs[twins.left.remote()] = "Twins.left"
        refs[twins.right.remote()] = "Twins.right"
    skate.get(list(refs))
    for name in ("twin_a", "twin_b", "twin_renamed", "Twins.left", "Twins.right"):
        assert _tasks_settled(name=name)
    want = len(refs) + 1  # (and the constructor)

    def ours():
        rows = state.list_tasks(limit=10_000, detail=True)
        got = [r for r in rows if r["name"].startswith(("twin", "Twins"))]
        return got if len(got) >= want else None

    rows = wait_for(ours, timeout=15)
    assert rows
    by_id = {r["task_id"]: r for r in rows}
    for ref, name in refs.items():
        assert by_id[ref.task_id().hex()]["name"] == name
    assert by_id[placed.task_id().hex()]["placement_group_id"] == pg.id.hex()
    assert by_id[next(iter(refs)).task_id().hex()]["placement_group_id"] is None
    skate.kill(twins)


@skate.remote
class Sleeper:
    def nap(self, seconds):
        time.sleep(seconds)
        return seconds


@pytest.mark.timeout(60)
def test_a_call_its_worker_reports_running_is_listed_with_its_name(observed):
    """A worker's first send reports every call running in it, and its owner reports the
    call only once it has been in flight for an interval: the worker's record names the call
    itself, so no listing shows it without a name while it runs."""
    sleeper = Sleeper.remote()
    ref = sleeper.nap.remote(4.0)
    tid = ref.task_id().hex()
    seen: list = []

    def running():
        rows = [r for r in state.list_tasks(limit=10_000) if r["task_id"] == tid]
        seen.extend(rows)
        return rows and rows[0]["state"] == "RUNNING" and rows[0]["worker_pid"]

    assert wait_for(running, timeout=15, interval=0.02)
    assert skate.get(ref) == 4.0
    assert seen and all(r["name"] == "Sleeper.nap" for r in seen), [(r["state"], r["name"]) for r in seen]
    skate.kill(sleeper)


@skate.remote
def call_counter(counter, n):
    return skate.get([counter.incr.remote() for _ in range(n)])[-1]


@pytest.mark.timeout(60)
def test_actor_calls_are_listed_where_their_actor_runs(observed):
    """An actor call's owner writes its row from the reply (the actor's worker only sends
    when the call began): the listing still says it ran in the actor's worker, on its node,
    whichever process made the call (the driver, or a task's worker) and however its reply
    came (on the connection, or on a lane read by the caller's thread)."""
    counter = observed["counter"]
    for _ in range(30):  # one at a time: after a few, on a lane whose replies this thread reads
        skate.get(counter.incr.remote())
    skate.get([counter.incr.remote() for _ in range(20)])
    last = skate.get(call_counter.remote(counter, 10))

    def all_listed():
        rows = _tasks_settled(name="Counter.incr")
        return rows if len(rows) >= last else None

    rows = wait_for(all_listed, timeout=20)
    assert rows and len(rows) == last
    assert {(r["state"], r["node_id"], r["worker_pid"]) for r in rows} == {
        ("FINISHED", observed["other"].node_id, observed["actor_pid"])
    }
    [worker] = [w for w in state.list_workers(detail=True) if w["pid"] == observed["actor_pid"]]
    assert {r["worker_id"] for r in rows} == {worker["worker_id"]}
    assert all(r["start_time_ms"] <= r["end_time_ms"] for r in rows)


@pytest.mark.timeout(60)
def test_get_task_by_id_and_by_ref(observed):
    ref = add_one.remote(41)
    assert skate.get(ref) == 42
    row = wait_for(
        # both sides' events have arrived (the worker's may come first: each sends once a second)
        lambda: (t := state.get_task(ref)) is not None and t["state"] == "FINISHED" and t["name"] and t,
        timeout=15,
    )
    assert row and row["name"] == "add_one" and row["attempt_number"] == 0
    assert state.get_task(row["task_id"])["task_id"] == row["task_id"]


@pytest.mark.timeout(60)
def test_summaries(observed):
    tasks = wait_for(lambda: (s := state.summarize_tasks())["summary"].get("explode") and s, timeout=15)
    assert tasks["summary"]["explode"]["state_counts"] == {"FAILED": 1}
    assert tasks["summary"]["add_one"]["state_counts"]["FINISHED"] >= 5
    actors = state.summarize_actors()
    assert actors["summary"]["Counter"]["state_counts"] == {"ALIVE": 1}
    objects = state.summarize_objects()
    assert objects["total_objects"] >= 1 and objects["total_size_mb"] > 0
    memory = objects["memory"]  # the memory report's totals (docs/memory.md)
    assert memory["total_bytes"] == memory["heap_bytes"] + memory["store_used_bytes"] > 0


@pytest.mark.timeout(60)
def test_list_objects_and_get_objects(observed):
    oid = observed["kept"].hex()
    rows = state.list_objects(filters=[("object_id", "=", oid)])
    assert rows and rows[0]["reference_type"] == "LOCAL_REFERENCE" and rows[0]["type"] == "DRIVER"
    assert rows[0]["object_size"] >= 1000
    assert state.get_objects(oid)[0]["object_id"] == oid


@pytest.mark.timeout(60)
def test_list_jobs_placement_groups_and_workers(observed):
    jobs = state.list_jobs()
    mine = skate.get_runtime_context().get_job_id()
    assert [j for j in jobs if j["job_id"] == mine and j["status"] == "RUNNING"]
    assert state.get_job(mine)["type"] == "DRIVER"
    [pg] = state.list_placement_groups(filters=[("name", "=", "the_group")])
    assert pg["state"] == "CREATED" and pg["bundles"][0]["unit_resources"] == {"CPU": 1.0}
    assert state.get_placement_group(pg["placement_group_id"])["name"] == "the_group"
    workers = state.list_workers(filters=[("pid", "=", observed["actor_pid"])])
    assert len(workers) == 1 and workers[0]["node_id"] == observed["other"].node_id
    assert workers[0]["worker_type"] == "WORKER"
    drivers = state.list_workers(filters=[("worker_type", "=", "DRIVER"), ("pid", "=", os.getpid())])
    assert len(drivers) == 1
    assert state.get_worker(workers[0]["worker_id"])["pid"] == observed["actor_pid"]


@pytest.mark.timeout(30)
def test_bad_queries_name_the_culprit(observed):
    with pytest.raises(ValueError, match="operator"):
        state.list_actors(filters=[("state", ">", "x")])
    with pytest.raises(ValueError, match="limit"):
        state.list_nodes(limit=0)
    with pytest.raises(ValueError, match="unknown resource"):
        state._list("gizmos", None, 10, 10, False)
