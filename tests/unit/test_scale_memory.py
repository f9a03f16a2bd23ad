"""Memory per queued task and per kept task record (issue 19): what a million queued tasks
share instead of each holding its own copy."""

from __future__ import annotations

import os
import types

import msgspec

from skate import _task_states as ts
from skate.core_worker.args import NO_REFS, prepare_args
from skate.core_worker.submitter import TaskSubmitter
from skate.gcs.task_event_store import SHARED_INFO_LIMIT, TaskEventStore
from skate.protocol.messages import TaskSpec


def _spec() -> TaskSpec:
    return TaskSpec(os.urandom(16), "f", 1, ["worker", "unix:///x"])


def test_calls_without_ref_arguments_share_one_empty_tuple():
    for args, kwargs in [((), {}), ((1, "two"), {"three": 3.0})]:
        spec = _spec()
        dep_refs, hold, uses = prepare_args(None, spec, args, kwargs)  # no refs: the core is not used
        assert dep_refs is NO_REFS and hold is NO_REFS and uses is NO_REFS
        assert (spec.args is None) == (not args)


def _submitter() -> TaskSubmitter:
    return TaskSubmitter(types.SimpleNamespace(handlers={}))


def test_scheduling_keys_are_one_object_per_distinct_key():
    sub = _submitter()
    shape = {"CPU": 1.0}
    first = sub._scheduling_key(b"fn", shape, None, None, "")
    assert sub._scheduling_key(b"fn", shape, None, None, "") is first  # the identity fast path
    assert sub._scheduling_key(b"fn", {"CPU": 1.0}, None, None, "") is first  # equal: interned
    other = sub._scheduling_key(b"fn", {"CPU": 2.0}, None, None, "")
    assert other != first and other[1] == (("CPU", 2.0),)
    affinity = {"node_id": "n1", "soft": False}
    pinned = sub._scheduling_key(b"fn", shape, affinity, None, "")
    assert pinned[2] == ("n1", False) and pinned is not first
    assert sub._scheduling_key(b"fn", shape, dict(affinity), None, "") is pinned
    assert sub._scheduling_key(b"fn", shape, None, None, "") is first


def _batch(events: list) -> dict:
    """A batch as the GCS decodes it off the wire (every info dict a fresh copy), from
    (task_id, attempt, state, time, info) events: one open record and one info each."""
    records = [
        [tid, attempt, [state, when], i, None] for i, (tid, attempt, state, when, _) in enumerate(events)
    ]
    infos = {i: e[4] for i, e in enumerate(events)}
    wire = msgspec.msgpack.encode(
        {
            "node_id": "n",
            "worker_id": "w",
            "pid": 1,
            "infos": infos,
            "events": records,
            "num_events": len(events),
        }
    )
    return msgspec.msgpack.decode(wire)


def _info(name: str) -> dict:
    return {"name": name, "type": 0, "job_id": "01000000", "required_resources": {"CPU": 1.0}}


def test_task_records_with_equal_info_share_one_dict():
    store = TaskEventStore()
    ids = [os.urandom(16) for _ in range(3)]
    store.add_batch(_batch([[ids[0], 0, ts.PENDING_ARGS_AVAIL, 1.0, _info("f")]]))
    store.add_batch(_batch([[ids[1], 0, ts.PENDING_ARGS_AVAIL, 2.0, _info("f")]]))
    store.add_batch(_batch([[ids[2], 0, ts.PENDING_ARGS_AVAIL, 3.0, _info("g")]]))
    [a], [b], [c] = (store.get(t) for t in ids)
    assert a.info is b.info and a.info == _info("f")
    assert c.info == _info("g") and c.info is not a.info
    assert b.row()["required_resources"] == {"CPU": 1.0} and c.row()["name"] == "g"


def test_shared_info_table_stays_bounded():
    store = TaskEventStore(max_tasks=10)
    events = [
        [os.urandom(16), 0, ts.PENDING_ARGS_AVAIL, 1.0, _info(f"f{i}")] for i in range(SHARED_INFO_LIMIT + 5)
    ]
    store.add_batch(_batch(events))
    assert len(store._infos) <= SHARED_INFO_LIMIT and len(store) == 10


def _actor_manager():
    from skate.gcs.actor_manager import ActorManager
    from skate.gcs.placement import PlacementIndex

    gcs = types.SimpleNamespace(
        tables=types.SimpleNamespace(save_actor=lambda info: None), node_conns={}, placement=PlacementIndex()
    )
    return ActorManager(gcs)


def test_dead_actors_leave_the_live_table_and_drop_their_creation_spec():
    from skate.gcs.actor_manager import DEAD

    mgr = _actor_manager()
    ids = [os.urandom(16) for _ in range(3)]
    for aid in ids:
        p = {"actor_id": aid, "namespace": "ns", "max_restarts": 0, "owner": ["w1", "a"], "job": "j"}
        assert mgr.h_register(None, p) == {"created": True}
        info = mgr.actors[aid]
        info.spec = {"place": {"CPU": 1}, "res": {}}
        mgr.set_target(info, "node-a")
    loads = mgr.gcs.placement.loads
    assert list(mgr.live) == ids and loads()["node-a"][0] == {"CPU": 3 * 10_000}
    assert mgr.h_kill(None, {"actor_id": ids[0]}) is True
    dead = mgr.actors[ids[0]]
    assert dead.state == DEAD and dead.spec is None  # kept for queries, without its spec
    assert list(mgr.live) == ids[1:] and loads()["node-a"][0] == {"CPU": 2 * 10_000}
    mgr.owner_gone(worker_id="w1")  # the owner's death ends the live ones, and only those
    assert not mgr.live and all(mgr.actors[a].state == DEAD for a in ids)
    assert not any(placed for placed, _ in loads().values())
