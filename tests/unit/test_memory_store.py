"""The in-process object table with waiters, and the reference counter."""

from __future__ import annotations

import threading

from skate.core_worker.memory_store import IN_STORE, INLINE, MemoryStore, Waiter
from skate.core_worker.reference_counter import ReferenceCounter

A, B, C = b"a" * 16, b"b" * 16, b"c" * 16
ENTRY = (INLINE, [0, b"x", []])


# -- MemoryStore ----------------------------------------------------------------------------


def test_put_get_delete():
    store = MemoryStore()
    assert store.get(A) is None and A not in store and len(store) == 0
    store.put(A, ENTRY)
    store.put(B, (IN_STORE, "node", 100))
    assert store.get(A) == ENTRY and A in store and len(store) == 2
    assert store.delete(A) == ENTRY
    assert store.delete(A) is None
    assert A not in store and len(store) == 1


def test_waiter_fires_when_needed_count_reached():
    store = MemoryStore()
    w = Waiter(2)
    assert store.watch([A, B, C], w) == []
    assert sorted(store.waited_on()) == sorted([A, B, C])
    store.put(A, ENTRY)
    assert not w.done() and not w.woken
    store.put(C, ENTRY)
    assert w.done() and w.woken
    assert w.ready == [A, C]
    store.put(B, ENTRY)
    assert w.done()
    assert store.waited_on() == []


def test_waiter_counts_objects_already_present():
    store = MemoryStore()
    store.put(A, ENTRY)
    store.put(B, ENTRY)
    w = Waiter(2)
    assert store.watch([A, B, C], w) == [A, B]
    assert w.done() and w.woken
    assert store.waited_on() == [C]  # still registered for the missing one


def test_waiter_mixes_present_and_later_objects():
    store = MemoryStore()
    store.put(A, ENTRY)
    w = Waiter(2)
    assert store.watch([A, B], w) == [A]
    assert not w.done()
    store.put(B, ENTRY)
    assert w.done() and w.ready == [A, B]


def test_callback_waiter_called_exactly_once():
    store = MemoryStore()
    calls = []
    w = Waiter(2, callback=calls.append)
    assert w._waking is None
    store.watch([A, B, C], w)
    store.put(A, ENTRY)
    assert calls == []
    store.put(B, ENTRY)
    assert calls == [w]
    store.put(C, ENTRY)
    assert calls == [w]


def test_callback_waiter_fires_inside_watch_when_all_present():
    store = MemoryStore()
    store.put(A, ENTRY)
    calls = []
    w = Waiter(1, callback=calls.append)
    store.watch([A], w)
    assert calls == [w]


def test_unwatch():
    store = MemoryStore()
    w1, w2 = Waiter(1), Waiter(1)
    store.watch([A, B], w1)
    store.watch([A], w2)
    store.unwatch([A, B], w1)
    assert store.waited_on() == [A]  # w2 still waits on A
    store.put(A, ENTRY)
    store.put(B, ENTRY)
    assert not w1.done() and not w1.woken
    assert w2.done()
    store.unwatch([A, B], w1)  # unwatching again is harmless
    assert store.waited_on() == []


def test_put_from_another_thread_wakes_a_waiting_thread():
    store = MemoryStore()
    w = Waiter(2)
    store.watch([A, B], w)
    woke = []
    waiting = threading.Event()

    def waiter_thread():
        waiting.set()
        woke.append(w.wait(2.0))

    t = threading.Thread(target=waiter_thread)
    t.start()
    assert waiting.wait(2.0)
    store.put(A, ENTRY)
    assert not w.woken  # one of two is not enough (put wakes synchronously)
    assert woke == []
    threading.Thread(target=store.put, args=(B, ENTRY)).start()
    t.join(2.0)
    assert not t.is_alive()
    assert woke == [True]
    assert sorted(w.ready) == [A, B]


def test_concurrent_puts_and_watches_lose_no_wakeup():
    store = MemoryStore()
    ids = [i.to_bytes(4, "little") for i in range(200)]
    waiters = []

    def producer():
        for oid in ids:
            store.put(oid, ENTRY)

    t = threading.Thread(target=producer)
    t.start()
    for oid in ids:
        w = Waiter(1)
        store.watch([oid], w)
        waiters.append(w)
    t.join(2.0)
    assert all(w.wait(1.0) for w in waiters)
    assert store.waited_on() == []


# -- ReferenceCounter -----------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, oid, owner):
        self.calls.append((oid, owner))


def test_on_zero_after_local_refs_only():
    rec = Recorder()
    rc = ReferenceCounter(rec)
    owner = ("10.0.0.1", 1234)
    rc.add_local(A, owner)
    rc.add_local(A, owner)
    assert rc.counts(A) == (2, 0) and rc.has(A) and len(rc) == 1
    rc.remove_local(A)
    assert rec.calls == []
    rc.remove_local(A)
    assert rec.calls == [(A, owner)]
    assert not rc.has(A) and len(rc) == 0 and rc.counts(A) == (0, 0)
    rc.remove_local(A)  # an extra decrement never fires again
    assert rec.calls == [(A, owner)]


def test_on_zero_waits_for_both_local_and_task_uses():
    rec = Recorder()
    rc = ReferenceCounter(rec)
    rc.add_local(A, None)
    rc.add_task_uses([A, A], [None, None])
    assert rc.counts(A) == (1, 2)
    rc.remove_local(A)
    assert rec.calls == [] and rc.has(A)
    rc.remove_task_uses([A])
    assert rec.calls == []
    rc.remove_task_uses([A])
    assert rec.calls == [(A, None)]
    rc.remove_task_uses([A])
    rc.remove_local(A)
    assert rec.calls == [(A, None)]


def test_task_uses_first_then_local_refs():
    rec = Recorder()
    rc = ReferenceCounter(rec)
    rc.add_task_uses([A], [None])
    rc.add_local(A, None)
    rc.remove_task_uses([A])
    assert rec.calls == []
    rc.remove_local(A)
    assert rec.calls == [(A, None)]


def test_task_uses_alone_release_with_their_owner():
    rec = Recorder()
    rc = ReferenceCounter(rec)
    rc.add_task_uses([A, B], [("x", 1), None])
    rc.remove_task_uses([A, B, C])  # C is unknown: ignored
    assert sorted(rec.calls) == sorted([(A, ("x", 1)), (B, None)])
    assert len(rc) == 0


def test_owner_is_the_one_first_recorded():
    rec = Recorder()
    rc = ReferenceCounter(rec)
    rc.add_local(A, ("first", 1))
    rc.add_task_uses([A], [("second", 2)])
    rc.remove_task_uses([A])
    rc.remove_local(A)
    assert rec.calls == [(A, ("first", 1))]


def test_on_zero_may_reenter_the_counter():
    rc_box = []

    def on_zero(oid, owner):
        # Callbacks run outside the lock, so they may touch the counter.
        rc_box[0].add_local(B, None)

    rc = ReferenceCounter(on_zero)
    rc_box.append(rc)
    rc.add_local(A, None)
    done = threading.Event()
    t = threading.Thread(target=lambda: (rc.remove_local(A), done.set()), daemon=True)
    t.start()
    assert done.wait(1.0)
    assert rc.has(B) and not rc.has(A)


def test_snapshot():
    rc = ReferenceCounter(Recorder())
    rc.add_local(A, ("h", 1))
    rc.add_task_uses([A, B], [None, None])
    assert rc.snapshot() == {A: (1, 1, ("h", 1), 0), B: (0, 1, None, 0)}


def test_borrowers_keep_an_owned_object_alive():
    rec = Recorder()
    rc = ReferenceCounter(rec)
    rc.add_local(A, None)
    assert rc.add_borrowers([A, B]) == [True, False]  # B is unknown here
    rc.remove_local(A)
    assert rc.has(A) and rc.borrowers(A) == 1
    rc.remove_borrowers([A])
    assert not rc.has(A)


def test_borrowed_refs_are_queued_for_registration_once():
    rc = ReferenceCounter(Recorder())
    rc.add_local(A, ("owner", "unix:///x"))
    rc.add_local(A, ("owner", "unix:///x"))
    rc.add_local(B, None)
    assert list(rc.new_borrowed) == [(A, ("owner", "unix:///x"))]
    assert rc.add_borrowers([A]) == [False]  # not ours to lend
