"""An actor's worker keeps its resources while it blocks in `get` (Ray: only normal tasks lend
their CPU back); a normal task's worker lends it so nested tasks cannot deadlock."""

from __future__ import annotations

from skate.raylet.scheduler import Grant, LocalScheduler, StartWorkers


def _scheduler_with_idle(total: dict, n: int) -> LocalScheduler:
    s = LocalScheduler(total, soft_limit=n)
    for i in range(n):
        s.worker_starting(f"w{i}")
        s.worker_registered(f"w{i}")
    return s


def _grants(actions: list) -> list[Grant]:
    return [a for a in actions if isinstance(a, Grant)]


def test_actor_lease_blocked_in_get_lends_nothing():
    s = _scheduler_with_idle({"CPU": 1}, 2)
    _, actions = s.request_lease("gcs", {"CPU": 1}, {"CPU": 1}, actor=True)
    [actor] = _grants(actions)
    nested, actions = s.request_lease("driver", {"CPU": 1})
    assert _grants(actions) == []
    assert _grants(s.worker_blocked(actor.worker_id)) == []
    assert s.available_float() == {"CPU": 0.0}
    assert list(s.queue) == [nested]  # still waits for a CPU the actor holds
    assert s.worker_unblocked(actor.worker_id) == []
    assert s.available_float() == {"CPU": 0.0}
    # The actor dies: its CPU goes to the waiting task.
    [g] = _grants(s.return_lease(actor.lease_id, kill=True))
    assert g.request is nested


def test_actor_lease_of_a_default_actor_blocked_lends_nothing():
    """A default actor is placed with 1 CPU but holds none: there is nothing to lend either way,
    and blocking must not make CPU appear from nowhere."""
    s = _scheduler_with_idle({"CPU": 1}, 2)
    [actor] = _grants(s.request_lease("gcs", {"CPU": 1}, {}, actor=True)[1])
    s.worker_blocked(actor.worker_id)
    assert s.available_float() == {"CPU": 1.0}


def test_normal_task_still_lends_its_cpu():
    s = _scheduler_with_idle({"CPU": 1}, 2)
    [outer] = _grants(s.request_lease("driver", {"CPU": 1})[1])
    nested, _ = s.request_lease("driver", {"CPU": 1})
    [g] = _grants(s.worker_blocked(outer.worker_id))
    assert g.request is nested


def test_worker_reused_after_an_actor_lease_lends_again():
    """The actor mark belongs to the lease, not to the worker: a worker given back (not killed)
    and leased to a normal task lends its CPU when that task blocks."""
    s = _scheduler_with_idle({"CPU": 1}, 1)
    [actor] = _grants(s.request_lease("gcs", {"CPU": 1}, {"CPU": 1}, actor=True)[1])
    s.return_lease(actor.lease_id)
    [task] = _grants(s.request_lease("driver", {"CPU": 1})[1])
    assert task.worker_id == actor.worker_id
    s.request_lease("driver", {"CPU": 1})
    actions = s.worker_blocked(task.worker_id)
    assert any(isinstance(a, StartWorkers) for a in actions)  # a worker for the nested task
    assert s.available_float() == {"CPU": 1.0}  # lent back
