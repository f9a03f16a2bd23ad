"""TaskManager: what happens to a task at each step, exactly, with no sockets."""

from __future__ import annotations

import pytest

from skate._serialization import KIND_ERROR, serialize
from skate.core_worker.errors import error_entry, task_error_entry
from skate.core_worker.task_manager import RETRY, Complete, Fail, TaskEntry, TaskManager, is_put_id
from skate.exceptions import (
    ActorDiedError,
    ObjectLostError,
    ObjectReconstructionFailedLineageEvictedError,
    ObjectReconstructionFailedMaxAttemptsExceededError,
    OutOfMemoryError,
    RaySystemError,
    TaskCancelledError,
    WorkerCrashedError,
)
from skate.protocol.messages import IN_STORE, INLINE, TaskReply, TaskSpec

OWNER = ["w" * 28, "unix:///tmp/x.sock"]


class Ref:
    """A stand-in for an ObjectRef (only the id and owner are read)."""

    def __init__(self, oid: bytes, owner=None):
        self._id = oid
        self._owner = owner

    def hex(self) -> str:
        return self._id.hex()


_counter = iter(range(1, 1 << 30))


def make_entry(retries=0, retry_exceptions=False, deps=(), key=("fn", (), None), nret=1, args=None):
    tid = bytes(12) + next(_counter).to_bytes(4, "little")
    spec = TaskSpec(tid, "f", nret, OWNER, function=b"k" * 16, args=args)
    return_ids = [tid + (i + 1).to_bytes(4, "little") for i in range(nret)]
    return TaskEntry(
        spec, return_ids, [r._id for _, r in deps], retries, retry_exceptions, key, list(deps), []
    )


def value_entry(v):
    return (INLINE, serialize(v).to_inline())


def app_error_reply(exc: BaseException) -> TaskReply:
    return TaskReply([list(task_error_entry("f", exc, 1, "127.0.0.1"))], 0.01, True)


# -- dependencies -------------------------------------------------------------------------
def test_resolve_fills_deps_with_values_and_owners():
    a, b = Ref(b"a" * 20), Ref(b"b" * 20, owner=("o", "addr"))
    entry = make_entry(deps=[(0, a), (1, b)])
    tm = TaskManager()
    store = {a._id: value_entry(1), b._id: (IN_STORE, "node1", 100)}
    assert tm.resolve(entry, store.get) is None
    assert entry.resolved
    assert entry.spec.deps[0][:2] == [0, a._id] and entry.spec.deps[0][3] is None
    assert entry.spec.deps[1] == [1, b._id, [IN_STORE, "node1", 100], ("o", "addr")]


def test_a_failed_dependency_fails_the_task_with_its_error():
    a = Ref(b"a" * 20)
    err = error_entry(ValueError("upstream"))
    entry = make_entry(deps=[(0, a)])
    assert TaskManager().resolve(entry, {a._id: err}.get) == err
    assert not entry.resolved


def test_a_vanished_dependency_is_a_system_error():
    entry = make_entry(deps=[(0, Ref(b"a" * 20))])
    out = TaskManager().resolve(entry, {}.get)
    assert isinstance(out, Fail) and isinstance(out.error, RaySystemError)


def test_missing_dependencies_are_listed_once():
    a = Ref(b"a" * 20)
    entry = make_entry(deps=[(0, a), (1, a), (2, Ref(b"c" * 20))])
    assert TaskManager().missing_dependencies(entry, {b"c" * 20}.__contains__) == [a._id]


# -- replies and retries ------------------------------------------------------------------
def test_a_result_completes_the_task():
    entry = make_entry()
    out = TaskManager().on_reply(entry, TaskReply([list(value_entry(3))], 0.1, False, holder="h"))
    assert isinstance(out, Complete) and out.holder == "h"


def test_application_errors_are_not_retried_by_default():
    entry = make_entry(retries=3)
    assert isinstance(TaskManager().on_reply(entry, app_error_reply(ValueError("x"))), Complete)
    assert entry.retries_left == 3


def test_retry_exceptions_true_retries_until_the_budget_is_spent():
    entry = make_entry(retries=2, retry_exceptions=True)
    tm = TaskManager()
    assert tm.on_reply(entry, app_error_reply(ValueError("x"))) is RETRY
    assert tm.on_reply(entry, app_error_reply(ValueError("x"))) is RETRY
    assert isinstance(tm.on_reply(entry, app_error_reply(ValueError("x"))), Complete)
    assert entry.spec.attempt == 2


def test_retry_exceptions_list_retries_only_listed_types():
    tm = TaskManager()
    entry = make_entry(retries=5, retry_exceptions=[KeyError])
    assert isinstance(tm.on_reply(entry, app_error_reply(ValueError("x"))), Complete)
    assert tm.on_reply(entry, app_error_reply(KeyError("x"))) is RETRY


def test_infinite_retries_never_run_out():
    tm = TaskManager()
    entry = make_entry(retries=-1)
    for _ in range(50):
        assert tm.on_worker_lost(entry, "gone", "w" * 8, None) is RETRY
    assert entry.retries_left == -1


def test_a_lost_worker_without_retries_is_a_worker_crash():
    out = TaskManager().on_worker_lost(make_entry(), "reset", "abcdefgh12", None)
    assert isinstance(out, Fail) and isinstance(out.error, WorkerCrashedError)
    assert "abcdefgh" in str(out.error)


def test_a_worker_killed_for_memory_fails_with_oom_once_retries_are_spent():
    tm = TaskManager()
    entry = make_entry(retries=1)
    assert tm.on_worker_lost(entry, "killed", "w" * 8, 0.95) is RETRY
    out = tm.on_worker_lost(entry, "killed", "w" * 8, 0.95)
    assert isinstance(out, Fail) and isinstance(out.error, OutOfMemoryError)


def test_a_cancelled_task_whose_worker_died_is_cancelled_not_retried():
    tm = TaskManager()
    entry = make_entry(retries=3)
    tm.add(entry)
    assert tm.cancel(entry.return_ids[0], force=True) is entry
    out = tm.on_worker_lost(entry, "killed", "w" * 8, None)
    assert isinstance(out, Fail) and isinstance(out.error, TaskCancelledError)


def test_a_lost_actor_connection_retries_within_max_task_retries():
    tm = TaskManager()
    entry = make_entry(retries=1, key=None)
    assert tm.on_actor_lost(entry, "A", b"\x01" * 16) is RETRY
    out = tm.on_actor_lost(entry, "A", b"\x01" * 16)
    assert isinstance(out, Fail) and isinstance(out.error, ActorDiedError)


def test_cancel_of_an_unknown_or_finished_task_does_nothing():
    tm = TaskManager()
    entry = make_entry()
    tm.add(entry)
    tm.finish(entry, None, lambda oid: False)
    assert tm.cancel(entry.return_ids[0], force=False) is None
    assert tm.cancel(b"z" * 20, force=False) is None


# -- lineage --------------------------------------------------------------------------------
def stored_returns(entry):
    return [[IN_STORE, "node", 1000] for _ in entry.return_ids]


def test_a_finished_task_with_stored_results_keeps_lineage_and_pins_its_arguments():
    tm = TaskManager()
    arg = Ref(b"a" * 20)
    entry = make_entry(retries=1, deps=[(0, arg)])
    tm.add(entry)
    released = tm.finish(entry, stored_returns(entry), lambda oid: True)
    assert released == []  # the argument stays pinned
    assert entry.task_id in tm.lineage
    # The result is freed: the lineage goes and the argument with it.
    assert tm.drop_lineage(entry.return_ids[0], lambda oid: False) == [arg._id]
    assert entry.task_id not in tm.lineage


def test_no_lineage_for_inline_results_tasks_without_retries_or_unreferenced_results():
    tm = TaskManager()
    for entry, returns, referenced in [
        (make_entry(retries=1), [list(value_entry(1))], True),
        (make_entry(retries=0), None, True),
        (make_entry(retries=1), None, False),
        (make_entry(retries=1, key=None), None, True),  # actor calls are not rebuilt
    ]:
        tm.add(entry)
        tm.finish(entry, returns or stored_returns(entry), lambda oid, r=referenced: r)
        assert entry.task_id not in tm.lineage


def test_reconstruct_requeues_the_task_and_spends_a_retry():
    tm = TaskManager()
    entry = make_entry(retries=2)
    tm.add(entry)
    tm.finish(entry, stored_returns(entry), lambda oid: True)
    again = tm.reconstruct(entry.return_ids[0])
    assert again is entry and not entry.done and entry.retries_left == 1
    assert tm.pending[entry.task_id] is entry


def test_reconstruct_without_retries_left_says_so():
    tm = TaskManager()
    entry = make_entry(retries=1)
    tm.add(entry)
    tm.finish(entry, stored_returns(entry), lambda oid: True)
    entry.retries_left = 0
    with pytest.raises(ObjectReconstructionFailedMaxAttemptsExceededError):
        tm.reconstruct(entry.return_ids[0])


def test_lineage_over_budget_evicts_the_oldest_and_the_error_says_so():
    tm = TaskManager(max_lineage_bytes=1000)
    entries = [make_entry(retries=1, args=[0, b"x" * 400, []]) for _ in range(3)]
    for e in entries:
        tm.add(e)
        tm.finish(e, stored_returns(e), lambda oid: True)
    assert entries[0].task_id not in tm.lineage
    assert tm.lineage_bytes <= 1000
    assert tm.take_unpinned() == entries[0].uses
    with pytest.raises(ObjectReconstructionFailedLineageEvictedError, match="max_lineage_bytes"):
        tm.reconstruct(entries[0].return_ids[0])


def test_a_lost_put_object_cannot_be_rebuilt():
    put_id = bytes(16) + (1 | 0x80000000).to_bytes(4, "little")
    assert is_put_id(put_id)
    with pytest.raises(ObjectLostError, match="put"):
        TaskManager().reconstruct(put_id)


def test_error_entries_are_errors():
    assert error_entry(ValueError())[1][0] == KIND_ERROR
