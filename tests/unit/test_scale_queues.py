"""Queues at scale (issue 19): taking cancelled tasks out of a long lease queue costs O(1) each,
and the queue still hands out exactly the tasks left, in order."""

from __future__ import annotations

import time

import pytest

from skate.core_worker.lease_pool import CANCEL_REQUEST, PUSH, REQUEST, Lease, LeasePool


class Task:
    _n = 0

    def __init__(self) -> None:
        Task._n += 1
        self.task_id = Task._n.to_bytes(16, "little")
        self.done = False
        self.lease = None


def _pool():
    pool = LeasePool(clock=lambda: 100.0, max_in_flight=1000, short_task_seconds=10.0, max_pending_requests=2)
    ks = pool.key_state(("f", (("CPU", 1.0),), None), {"CPU": 1.0}, None)
    ks.duration = 0.001  # short: pipelined up to max_in_flight on one lease
    return pool, ks


def _cancel(pool, ks, task) -> None:
    """What the submitter does: out of the queue, then finished (done)."""
    pool.remove_queued(ks, task)
    task.done = True


def test_removed_tasks_are_never_pushed_and_the_rest_keep_their_order():
    pool, ks = _pool()
    tasks = [Task() for _ in range(10)]
    actions = []
    for t in tasks:
        actions += pool.enqueue(ks, t)
    rid = next(a[2] for a in actions if a[0] == REQUEST)
    for t in (tasks[9], tasks[0], tasks[4]):
        _cancel(pool, ks, t)
    lease = Lease(1, "w1", "addr", object(), ks)
    pushed = [a[2] for a in pool.granted(ks, rid, lease) if a[0] == PUSH]
    assert pushed == [t for i, t in enumerate(tasks) if i not in (0, 4, 9)]
    assert not ks.queue and not ks.removed


def test_a_queue_of_only_cancelled_tasks_asks_for_no_lease():
    pool, ks = _pool()
    tasks = [Task() for _ in range(6)]
    for t in tasks:
        pool.enqueue(ks, t)
    assert len(ks.pending_requests) == 2
    for t in reversed(tasks):
        _cancel(pool, ks, t)
    assert not ks.queue and not ks.removed  # compacted once half were cancelled
    actions = pool.dispatch(ks)
    assert sorted(a[0] for a in actions) == [CANCEL_REQUEST, CANCEL_REQUEST]


def test_the_queue_holds_at_most_twice_its_live_tasks():
    pool, ks = _pool()
    tasks = [Task() for _ in range(1000)]
    for t in tasks:
        pool.enqueue(ks, t)
    for t in tasks[::-1][:900]:
        _cancel(pool, ks, t)
        live = sum(1 for e in ks.queue if e not in ks.removed)
        assert len(ks.queue) <= 2 * live + 1
    assert [e for e in ks.queue if e not in ks.removed] == tasks[:100]


def test_a_task_queued_again_after_removal_is_pushed_once():
    pool, ks = _pool()
    tasks = [Task() for _ in range(5)]
    actions = []
    for t in tasks:
        actions += pool.enqueue(ks, t)
    rid = next(a[2] for a in actions if a[0] == REQUEST)
    pool.remove_queued(ks, tasks[3])  # marked, still in the deque
    pool.enqueue(ks, tasks[3])  # and queued again (a rebuilt task): its old place goes
    lease = Lease(1, "w1", "addr", object(), ks)
    pushed = [a[2] for a in pool.granted(ks, rid, lease) if a[0] == PUSH]
    assert pushed == [tasks[0], tasks[1], tasks[2], tasks[4], tasks[3]]


@pytest.mark.timeout(60)
def test_cancelling_100k_queued_tasks_newest_first_is_linear():
    pool, ks = _pool()
    tasks = [Task() for _ in range(100_000)]
    for t in tasks:
        pool.enqueue(ks, t)
    start = time.perf_counter()
    for t in reversed(tasks):
        _cancel(pool, ks, t)
    elapsed = time.perf_counter() - start
    assert not ks.queue and not ks.removed
    assert elapsed < 5.0, f"{elapsed:.1f} s: removal searches the queue again"  # O(n^2) took minutes
