"""ReferenceCounter: objects and actor handles counted alike; releases never deadlock."""

from __future__ import annotations

import gc
import threading

from skate.core_worker.reference_counter import ReferenceCounter

OWNER = ("owner-worker", "unix:///tmp/o.sock")


def test_local_refs_and_task_uses_must_all_go_before_release():
    freed = []
    rc = ReferenceCounter(lambda oid, owner: freed.append(oid))
    rc.add_local(b"a", None)
    rc.add_task_uses([b"a"], [None])
    rc.remove_local(b"a")
    assert freed == []
    rc.remove_task_uses([b"a"])
    assert freed == [b"a"]


def test_borrowers_keep_an_owned_id_alive():
    freed = []
    rc = ReferenceCounter(lambda oid, owner: freed.append(oid))
    rc.add_local(b"actor-id-16bytes", None)  # an actor handle, counted like a ref
    assert rc.add_borrowers([b"actor-id-16bytes"]) == [True]
    rc.remove_local(b"actor-id-16bytes")
    assert freed == []
    rc.remove_borrowers([b"actor-id-16bytes"])
    assert freed == [b"actor-id-16bytes"]


def test_a_borrowed_id_is_queued_for_registration_once():
    rc = ReferenceCounter(lambda oid, owner: None)
    rc.add_local(b"x", OWNER)
    rc.add_local(b"x", OWNER)
    assert list(rc.new_borrowed) == [(b"x", OWNER)]


def test_borrowers_are_refused_for_ids_not_owned_here_or_gone():
    rc = ReferenceCounter(lambda oid, owner: None)
    rc.add_local(b"x", OWNER)
    assert rc.add_borrowers([b"x", b"missing"]) == [False, False]


def test_release_reentered_from_del_on_the_same_thread_does_not_deadlock():
    """A garbage collection inside a locked section runs __del__, which releases again."""
    released = []
    rc = ReferenceCounter(lambda oid, owner: released.append(oid))

    class Holder:
        def __init__(self, oid: bytes) -> None:
            self.oid = oid
            rc.add_local(oid, None)
            self.cycle = self  # only the collector frees it

        def __del__(self) -> None:
            rc.remove_local(self.oid)

    def body() -> None:
        Holder(b"h1")
        gc.disable()
        try:
            with rc._lock:  # as if the collector ran while the counter held its lock
                gc.collect()
        finally:
            gc.enable()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "release from __del__ deadlocked"
    assert released == [b"h1"]


def test_release_from_del_on_another_thread_while_locked_only_waits():
    released = []
    rc = ReferenceCounter(lambda oid, owner: released.append(oid))
    rc.add_local(b"a", None)
    gate = threading.Event()

    def holder() -> None:
        with rc._lock:
            gate.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    t2 = threading.Thread(target=rc.remove_local, args=(b"a",))
    t2.start()
    gate.set()
    t.join(5)
    t2.join(5)
    assert released == [b"a"]
