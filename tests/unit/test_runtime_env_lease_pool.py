"""LeasePool: a lease request refused because the runtime env cannot be set up fails the key's queue."""

from __future__ import annotations

from skate.core_worker.lease_pool import REQUEST, LeasePool


class Task:
    def __init__(self, n: int) -> None:
        self.task_id = n.to_bytes(16, "little")
        self.done = False
        self.lease = None


def test_a_fatal_failure_fails_the_queue_even_with_requests_pending():
    pool = LeasePool(clock=lambda: 0.0, max_pending_requests=3)
    ks = pool.key_state(("f", (("CPU", 1.0),), None, "envhash"), {"CPU": 1.0}, None)
    tasks = [Task(i) for i in range(3)]
    rids = [a[2] for t in tasks for a in pool.enqueue(ks, t) if a[0] == REQUEST]
    assert len(rids) == 3
    actions, failed = pool.request_failed(ks, rids[0], fatal=True)
    assert actions == [] and failed == tasks and not ks.queue
    # The other requests' refusals then find nothing left to fail, and ask for nothing more.
    assert pool.request_failed(ks, rids[1], fatal=True) == ([], [])
    assert pool.request_failed(ks, rids[2]) == ([], [])
