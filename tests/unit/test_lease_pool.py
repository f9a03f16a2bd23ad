"""LeasePool: which worker runs a task, when to ask for leases and give them back; exact, no I/O."""

from __future__ import annotations

from skate.core_worker.lease_pool import CANCEL_REQUEST, IDLE_CHECK, PUSH, REQUEST, RETURN, Lease, LeasePool


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Task:
    _n = 0

    def __init__(self) -> None:
        Task._n += 1
        self.task_id = Task._n.to_bytes(16, "little")
        self.done = False
        self.lease = None


def kinds(actions):
    return [a[0] for a in actions]


def pool_and_key(**kw):
    clock = Clock()
    pool = LeasePool(
        clock=clock, idle_seconds=0.2, max_in_flight=8, short_task_seconds=0.002, max_pending_requests=3, **kw
    )
    ks = pool.key_state(("f", (("CPU", 1.0),), None), {"CPU": 1.0}, None)
    return pool, ks, clock


def grant(pool, ks, rid, worker="w1"):
    lease = Lease(1, worker, "addr", object(), ks)
    return lease, pool.granted(ks, rid, lease)


def test_a_queued_task_asks_for_a_lease_and_is_pushed_when_granted():
    pool, ks, _ = pool_and_key()
    t = Task()
    actions = pool.enqueue(ks, t)
    assert kinds(actions) == [REQUEST]
    rid = actions[0][2]
    lease, actions = grant(pool, ks, rid)
    assert actions[0] == (PUSH, lease, t)
    assert t.lease is lease and lease.inflight == {t.task_id: t}


def test_lease_requests_are_capped_and_not_repeated():
    pool, ks, _ = pool_and_key()
    actions = []
    for _ in range(10):
        actions += pool.enqueue(ks, Task())
    assert kinds(actions) == [REQUEST] * 3  # max_pending_requests, each asked once
    assert len(ks.pending_requests) == 3


def test_unknown_duration_runs_one_at_a_time_short_ones_are_pipelined():
    pool, ks, _ = pool_and_key()
    tasks = [Task() for _ in range(10)]
    rid = None
    for t in tasks:
        for a in pool.enqueue(ks, t):
            if a[0] == REQUEST and rid is None:
                rid = a[2]
    lease, actions = grant(pool, ks, rid)
    assert kinds(actions).count(PUSH) == 1  # duration unknown: one at a time
    pool.finished(lease, tasks[0], 0.0005)  # a short task
    actions = pool.dispatch(ks)
    assert kinds(actions).count(PUSH) == 8  # now pipelined 8 deep


def test_a_slow_function_is_never_pipelined():
    pool, ks, _ = pool_and_key()
    ks.duration = 0.5
    tasks = [Task() for _ in range(4)]
    ks.queue.extend(tasks)
    lease, actions = grant(pool, ks, 99)
    assert kinds(actions).count(PUSH) == 1


def test_an_idle_lease_goes_back_after_idle_seconds_on_the_clock():
    pool, ks, clock = pool_and_key()
    t = Task()
    rid = pool.enqueue(ks, t)[0][2]
    lease, _ = grant(pool, ks, rid)
    pool.finished(lease, t, 0.01)
    actions = pool.dispatch(ks)
    assert actions == [(IDLE_CHECK, lease, 0.2)]
    clock.now += 0.1
    again = pool.idle_expired(lease)
    assert kinds(again) == [IDLE_CHECK]  # not idle long enough yet
    clock.now += 0.1
    assert pool.idle_expired(lease) == [(RETURN, lease, False)]
    assert lease.dead and "w1" not in ks.leases


def test_a_lease_reused_before_its_idle_time_is_kept():
    pool, ks, clock = pool_and_key()
    t1, t2 = Task(), Task()
    rid = pool.enqueue(ks, t1)[0][2]
    lease, _ = grant(pool, ks, rid)
    pool.finished(lease, t1, 0.01)
    pool.dispatch(ks)
    clock.now += 0.1
    assert kinds(pool.enqueue(ks, t2)) == [PUSH]
    clock.now += 0.5
    assert pool.idle_expired(lease) == []  # busy again: the old timer does nothing


def test_an_empty_queue_cancels_pending_requests():
    pool, ks, _ = pool_and_key()
    t = Task()
    rid = pool.enqueue(ks, t)[0][2]
    t.done = True
    ks.queue.clear()
    assert pool.dispatch(ks) == [(CANCEL_REQUEST, rid)]


def test_a_failed_worker_returns_its_lease_with_kill():
    pool, ks, _ = pool_and_key()
    t = Task()
    rid = pool.enqueue(ks, t)[0][2]
    lease, _ = grant(pool, ks, rid)
    assert pool.lease_failed(lease, t) == [(RETURN, lease, True)]
    assert t.lease is None and not ks.leases


def test_a_failed_request_with_nothing_else_pending_fails_the_queue():
    pool, ks, _ = pool_and_key()
    t = Task()
    rid = pool.enqueue(ks, t)[0][2]
    actions, failed = pool.request_failed(ks, rid)
    assert actions == [] and failed == [t] and not ks.queue


def test_a_failed_request_while_others_are_pending_keeps_the_queue():
    pool, ks, _ = pool_and_key()
    tasks = [Task() for _ in range(3)]
    rids = [a[2] for t in tasks for a in pool.enqueue(ks, t) if a[0] == REQUEST]
    actions, failed = pool.request_failed(ks, rids[0])
    assert failed == [] and len(ks.queue) == 3


def test_a_worker_gone_while_idle_puts_the_task_back_first():
    pool, ks, _ = pool_and_key()
    t1, t2 = Task(), Task()
    ks.queue.append(t2)
    lease, _ = grant(pool, ks, 7)
    pool.push_refused(lease, t2)
    assert ks.queue[0] is t2 and lease.dead and not ks.leases
    assert t1.lease is None


def test_reclaim_returns_only_idle_leases():
    pool, ks, _ = pool_and_key()
    t = Task()
    ks.queue.append(t)
    busy, _ = grant(pool, ks, 1, "busy")
    idle, _ = grant(pool, ks, 2, "idle")
    assert pool.idle_leases() == [(RETURN, idle, False)]


def test_connection_lost_drops_idle_leases_on_it():
    pool, ks, _ = pool_and_key()
    lease, _ = grant(pool, ks, 1)
    ks.queue.append(Task())
    again = pool.connection_lost(lease.conn)
    assert again == [ks] and lease.dead


def test_oom_marks_the_lease():
    pool, ks, _ = pool_and_key()
    lease, _ = grant(pool, ks, 1)
    pool.mark_oom("w1", 0.9)
    assert lease.oom == 0.9


# -- a user thread's own push (claim) --------------------------------------------------
def idle_lease(pool, ks):
    t = Task()
    rid = pool.enqueue(ks, t)[0][2]
    lease, _ = grant(pool, ks, rid)
    pool.finished(lease, t, 0.01)
    assert pool.dispatch(ks) == [(IDLE_CHECK, lease, 0.2)]
    return lease


def test_claim_takes_an_idle_lease_for_the_task():
    pool, ks, _ = pool_and_key()
    lease = idle_lease(pool, ks)
    t = Task()
    assert pool.claim(ks, t) is lease
    assert lease.inflight == {t.task_id: t} and t.lease is lease and lease.idle_since is None
    assert pool.claim(ks, Task()) is None  # busy now: the next one takes the loop's way


def test_a_claimed_lease_is_not_returned_by_its_idle_timer():
    pool, ks, clock = pool_and_key()
    lease = idle_lease(pool, ks)
    t = Task()
    pool.claim(ks, t)
    clock.now += 5
    assert pool.idle_expired(lease) == []
    assert not lease.dead
    pool.finished(lease, t, 0.01)
    assert pool.dispatch(ks) == [(IDLE_CHECK, lease, 0.2)]  # idle again: timed from now
    clock.now += 0.2
    assert pool.idle_expired(lease) == [(RETURN, lease, False)]


def test_no_claim_while_tasks_of_the_key_are_queued():
    """A queued task came first: a claim would let a later one overtake it."""
    pool, ks, _ = pool_and_key()
    lease = idle_lease(pool, ks)
    waiting = Task()
    ks.queue.append(waiting)  # as between the loop's append and its dispatch
    assert pool.claim(ks, Task()) is None
    assert lease.inflight == {}


def test_no_claim_of_a_returned_or_dead_lease():
    pool, ks, clock = pool_and_key()
    lease = idle_lease(pool, ks)
    clock.now += 0.2
    assert kinds(pool.idle_expired(lease)) == [RETURN]
    assert pool.claim(ks, Task()) is None
    pool2, ks2, _ = pool_and_key()
    lease2 = idle_lease(pool2, ks2)
    lease2.dead = True
    assert pool2.claim(ks2, Task()) is None


def test_unclaim_drops_the_lease_whose_connection_closed():
    pool, ks, _ = pool_and_key()
    lease = idle_lease(pool, ks)
    t = Task()
    pool.claim(ks, t)
    pool.unclaim(lease, t)
    assert t.lease is None and lease.inflight == {} and lease.dead
    assert "w1" not in ks.leases
    t2 = Task()
    assert kinds(pool.enqueue(ks, t2)) == [REQUEST]  # the task goes the loop's way: a new lease


def test_claims_racing_the_loops_idle_returns_never_share_a_lease():
    """A thread claiming while the loop returns idle leases: every lease is either claimed
    (busy, kept) or returned (dead, never claimed after), never both. The clock yields to
    the other thread inside the idle check, between its look at the lease and the return."""
    import threading
    import time

    class YieldingClock(Clock):
        def __call__(self) -> float:
            time.sleep(0.0002)
            return self.now

    for _ in range(5):
        clock = YieldingClock()
        pool = LeasePool(clock=clock, idle_seconds=0.2, max_in_flight=8)
        ks = pool.key_state(("f", (("CPU", 1.0),), None), {"CPU": 1.0}, None)
        leases = []
        for i in range(10):
            t = Task()
            rid = pool.enqueue(ks, t)[0][2]
            lease, _ = grant(pool, ks, rid, worker=f"w{i}")
            pool.finished(lease, t, 0.01)
            leases.append(lease)
        pool.dispatch(ks)
        clock.now += 1
        claimed: list = []
        start = threading.Event()
        th = threading.Thread(target=_claimer, args=(pool, ks, claimed, start))
        th.start()
        start.set()
        returned = [a[1] for lease in leases for a in pool.idle_expired(lease) if a[0] == RETURN]
        th.join()
        assert not set(map(id, claimed)) & set(map(id, returned))
        assert all(not le.dead for le in claimed)


def _claimer(pool, ks, claimed: list, start) -> None:
    import time

    start.wait()
    for _ in range(200):
        got = pool.claim(ks, Task())
        if got is not None:
            claimed.append(got)
        time.sleep(0.00005)
