"""The raylet's lease state machine: events in, actions out."""

from __future__ import annotations

import itertools

from skate.raylet.scheduler import (
    IDLE,
    LEASED,
    STARTING,
    Grant,
    Infeasible,
    KillWorker,
    LocalScheduler,
    Reclaim,
    StartWorkers,
)


def of(actions: list, cls) -> list:
    return [a for a in actions if isinstance(a, cls)]


class Sim:
    """Plays the raylet server: starts workers when told to, and remembers what happened."""

    def __init__(self, total: dict, soft_limit: int):
        self.s = LocalScheduler(total, soft_limit)
        self._ids = itertools.count()
        self.starting: list[str] = []
        self.killed: list[str] = []
        self.grants: list[Grant] = []
        self.infeasible: list[Infeasible] = []
        self.reclaims: list[Reclaim] = []
        self.max_starting = 0

    def apply(self, actions: list) -> list:
        for a in actions:
            if isinstance(a, StartWorkers):
                assert a.count > 0
                for _ in range(a.count):
                    wid = f"w{next(self._ids)}"
                    self.s.worker_starting(wid)
                    self.starting.append(wid)
            elif isinstance(a, KillWorker):
                self.killed.append(a.worker_id)
            elif isinstance(a, Grant):
                self.grants.append(a)
            elif isinstance(a, Infeasible):
                self.infeasible.append(a)
            elif isinstance(a, Reclaim):
                self.reclaims.append(a)
        n = sum(1 for w in self.s.workers.values() if w.state == STARTING)
        self.max_starting = max(self.max_starting, n)
        return actions

    def request(self, owner: str, shape: dict):
        req, actions = self.s.request_lease(owner, shape)
        return req, self.apply(actions)

    def register_all_starting(self) -> list:
        out = []
        while self.starting:
            out += self.apply(self.s.worker_registered(self.starting.pop(0)))
        return out

    def add_idle(self, n: int) -> list[str]:
        wids = []
        for _ in range(n):
            wid = f"w{next(self._ids)}"
            self.s.worker_starting(wid)
            assert self.apply(self.s.worker_registered(wid)) == []
            wids.append(wid)
        return wids

    def available(self) -> dict:
        return self.s.available_float()


def test_grant_when_idle_worker_and_resources_fit():
    sim = Sim({"CPU": 2}, soft_limit=2)
    sim.add_idle(2)
    req, actions = sim.request("A", {"CPU": 1})
    [grant] = of(actions, Grant)
    assert grant.request is req and req.owner == "A"
    assert sim.s.workers[grant.worker_id].state == LEASED
    assert sim.s.workers[grant.worker_id].owner == "A"
    assert sim.s.leases[grant.lease_id] == grant.worker_id
    assert sim.available() == {"CPU": 1.0}
    assert of(actions, StartWorkers) == [] and of(actions, Reclaim) == []


def test_lease_ids_are_unique():
    sim = Sim({"CPU": 4}, soft_limit=4)
    sim.add_idle(4)
    for _ in range(4):
        sim.request("A", {"CPU": 1})
    assert len({g.lease_id for g in sim.grants}) == 4
    assert len({g.worker_id for g in sim.grants}) == 4


def test_queued_when_resources_short_then_granted_on_return():
    sim = Sim({"CPU": 1}, soft_limit=2)
    sim.add_idle(2)
    _, actions = sim.request("A", {"CPU": 1})
    [first] = of(actions, Grant)
    req2, actions = sim.request("B", {"CPU": 1})
    assert of(actions, Grant) == []
    assert of(actions, StartWorkers) == []  # an idle worker exists; CPU is what is missing
    assert list(sim.s.queue) == [req2]
    actions = sim.apply(sim.s.return_lease(first.lease_id))
    [second] = of(actions, Grant)
    assert second.request is req2
    assert sim.available() == {"CPU": 0.0}
    assert not sim.s.queue


def test_requests_are_granted_in_fifo_order():
    sim = Sim({"CPU": 1}, soft_limit=3)
    sim.add_idle(3)
    _, actions = sim.request("A", {"CPU": 1})
    [held] = of(actions, Grant)
    waiting = [sim.request(o, {"CPU": 1})[0] for o in ("B", "C")]
    actions = sim.apply(sim.s.return_lease(held.lease_id))
    assert [g.request for g in of(actions, Grant)] == [waiting[0]]


def test_small_request_not_stuck_behind_big_one():
    sim = Sim({"CPU": 2}, soft_limit=3)
    sim.add_idle(3)
    sim.request("A", {"CPU": 1})
    big, actions = sim.request("B", {"CPU": 2})  # fits the node but not right now
    assert of(actions, Grant) == [] and of(actions, Infeasible) == []
    small, actions = sim.request("C", {"CPU": 1})
    assert [g.request for g in of(actions, Grant)] == [small]
    assert list(sim.s.queue) == [big]


def test_start_workers_when_none_idle():
    sim = Sim({"CPU": 4}, soft_limit=4)
    req, actions = sim.request("A", {"CPU": 1})
    assert of(actions, StartWorkers) == [StartWorkers(1)]
    assert of(actions, Grant) == []
    [wid] = sim.starting
    assert sim.s.workers[wid].state == STARTING
    actions = sim.register_all_starting()
    [grant] = of(actions, Grant)
    assert grant.request is req and grant.worker_id == wid


def test_no_duplicate_start_for_a_worker_already_starting():
    sim = Sim({"CPU": 4}, soft_limit=4)
    sim.request("A", {"CPU": 1})
    assert len(sim.starting) == 1
    # An unrelated event must not start a second worker for the same request.
    assert sim.apply(sim.s.cancel_request(12345)) == []
    assert sim.apply(sim.s.worker_died("no-such-worker")) == []
    assert sim.apply(sim.s.return_lease(999)) == []
    assert len(sim.starting) == 1


def test_never_more_than_soft_limit_starting_at_once():
    sim = Sim({"CPU": 8}, soft_limit=2)
    reqs = [sim.request("A", {"CPU": 1})[0] for _ in range(6)]
    assert len(sim.starting) == 2
    assert sim.max_starting == 2
    sim.register_all_starting()
    # Every request got a worker eventually, with at most soft_limit starting at any time.
    assert sim.max_starting <= 2
    assert sorted(g.request.request_id for g in sim.grants) == sorted(r.request_id for r in reqs)
    assert not sim.s.queue
    assert sim.available() == {"CPU": 2.0}
    # Returning every lease trims the idle pool back to the soft limit.
    for g in list(sim.grants):
        sim.apply(sim.s.return_lease(g.lease_id))
    assert len(sim.s.workers) == 2
    assert sim.s.num_idle() == 2
    assert len(sim.killed) == 4
    assert sim.available() == {"CPU": 8.0}


def test_idle_workers_beyond_soft_limit_are_trimmed():
    sim = Sim({"CPU": 4}, soft_limit=1)
    for wid in ("a", "b"):
        sim.s.worker_starting(wid)
    assert sim.apply(sim.s.worker_registered("a")) == []
    actions = sim.apply(sim.s.worker_registered("b"))
    assert len(of(actions, KillWorker)) == 1
    assert len(sim.s.workers) == 1
    # idle: retired (it sends its last task events first), not killed outright
    assert [k.retire for k in of(actions, KillWorker)] == [True]


def test_infeasible_reported_exactly_once():
    sim = Sim({"CPU": 2}, soft_limit=2)
    sim.add_idle(1)
    req, actions = sim.request("A", {"CPU": 3})
    assert of(actions, Infeasible) == [Infeasible(req)]
    assert of(actions, StartWorkers) == [] and of(actions, Grant) == []
    # Later events never report it again, and never grant it.
    _, actions = sim.request("B", {"CPU": 1})
    [g] = of(actions, Grant)
    sim.apply(sim.s.return_lease(g.lease_id))
    sim.add_idle(1)
    sim.request("C", {"CPU": 3})
    assert [i.request.owner for i in sim.infeasible] == ["A", "C"]
    assert all(g.request.owner == "B" for g in sim.grants)
    assert {"CPU": 3.0} in sim.s.pending_shapes()


def test_infeasible_custom_resource_and_cancel():
    sim = Sim({"CPU": 2}, soft_limit=2)
    req, actions = sim.request("A", {"CPU": 1, "GPU": 1})
    assert of(actions, Infeasible) == [Infeasible(req)]
    assert sim.s.pending_shapes() == [{"CPU": 1.0, "GPU": 1.0}]
    sim.s.cancel_request(req.request_id)
    assert sim.s.pending_shapes() == []


def test_fractional_cpus():
    sim = Sim({"CPU": 1}, soft_limit=3)
    sim.add_idle(3)
    _, a1 = sim.request("A", {"CPU": 0.5})
    _, a2 = sim.request("A", {"CPU": 0.5})
    r3, a3 = sim.request("A", {"CPU": 0.5})
    assert len(of(a1, Grant)) == 1 and len(of(a2, Grant)) == 1
    assert of(a3, Grant) == [] and of(a3, Infeasible) == []
    assert sim.available() == {"CPU": 0.0}
    actions = sim.apply(sim.s.return_lease(of(a1, Grant)[0].lease_id))
    assert [g.request for g in of(actions, Grant)] == [r3]


def test_fractions_add_up_exactly():
    sim = Sim({"CPU": 1}, soft_limit=10)
    sim.add_idle(10)
    for _ in range(10):
        sim.request("A", {"CPU": 0.1})
    assert len(sim.grants) == 10
    assert sim.s.available["CPU"] == 0
    for g in sim.grants:
        sim.s.return_lease(g.lease_id)
    assert sim.available() == {"CPU": 1.0}


def test_zero_cpu_request_needs_only_a_worker():
    sim = Sim({"CPU": 1}, soft_limit=2)
    sim.add_idle(2)
    sim.request("A", {"CPU": 1})
    _, actions = sim.request("B", {"CPU": 0})
    assert len(of(actions, Grant)) == 1
    assert sim.available() == {"CPU": 0.0}


def test_worker_blocked_lends_cpu_and_unblocked_takes_it_back():
    sim = Sim({"CPU": 1}, soft_limit=2)
    sim.add_idle(2)
    _, actions = sim.request("A", {"CPU": 1})
    [outer] = of(actions, Grant)
    nested, actions = sim.request("A", {"CPU": 1})
    assert of(actions, Grant) == []
    actions = sim.apply(sim.s.worker_blocked(outer.worker_id))
    [g] = of(actions, Grant)
    assert g.request is nested
    assert sim.s.available["CPU"] == 0
    # Blocking twice lends nothing more.
    assert sim.apply(sim.s.worker_blocked(outer.worker_id)) == []
    assert sim.s.available["CPU"] == 0
    assert sim.apply(sim.s.worker_unblocked(outer.worker_id)) == []
    assert sim.s.available["CPU"] == -10_000  # oversubscribed until the nested lease returns
    sim.apply(sim.s.return_lease(g.lease_id))
    assert sim.s.available["CPU"] == 0
    sim.apply(sim.s.return_lease(outer.lease_id))
    assert sim.available() == {"CPU": 1.0}


def test_lease_returned_while_blocked_does_not_count_cpu_twice():
    sim = Sim({"CPU": 1}, soft_limit=2)
    sim.add_idle(2)
    [outer] = of(sim.request("A", {"CPU": 1})[1], Grant)
    sim.apply(sim.s.worker_blocked(outer.worker_id))
    assert sim.available() == {"CPU": 1.0}
    sim.apply(sim.s.return_lease(outer.lease_id))
    assert sim.available() == {"CPU": 1.0}
    # A late unblock for a lease that is gone changes nothing.
    assert sim.apply(sim.s.worker_unblocked(outer.worker_id)) == []
    assert sim.available() == {"CPU": 1.0}


def test_worker_blocked_on_idle_or_unknown_worker_is_ignored():
    sim = Sim({"CPU": 1}, soft_limit=1)
    [wid] = sim.add_idle(1)
    assert sim.s.worker_blocked(wid) == []
    assert sim.s.worker_blocked("ghost") == []
    assert sim.s.worker_unblocked("ghost") == []
    assert sim.available() == {"CPU": 1.0}


def test_worker_died_releases_its_lease():
    sim = Sim({"CPU": 1}, soft_limit=2)
    sim.add_idle(2)
    [g] = of(sim.request("A", {"CPU": 1})[1], Grant)
    waiting, _ = sim.request("B", {"CPU": 1})
    actions = sim.apply(sim.s.worker_died(g.worker_id))
    assert g.worker_id not in sim.s.workers
    assert g.lease_id not in sim.s.leases
    [g2] = of(actions, Grant)
    assert g2.request is waiting and g2.worker_id != g.worker_id
    # Returning the dead worker's lease later must not add its CPU again.
    assert sim.apply(sim.s.return_lease(g.lease_id)) == []
    assert sim.available() == {"CPU": 0.0}
    sim.apply(sim.s.return_lease(g2.lease_id))
    assert sim.available() == {"CPU": 1.0}


def test_starting_worker_died_is_replaced():
    sim = Sim({"CPU": 1}, soft_limit=1)
    req, _ = sim.request("A", {"CPU": 1})
    [wid] = sim.starting
    sim.starting.clear()
    actions = sim.apply(sim.s.worker_died(wid))
    assert of(actions, StartWorkers) == [StartWorkers(1)]
    [g] = of(sim.register_all_starting(), Grant)
    assert g.request is req


def test_owner_gone_kills_leased_workers_and_drops_queued_requests():
    sim = Sim({"CPU": 3}, soft_limit=4)
    sim.add_idle(4)
    a_grants = of(sim.request("A", {"CPU": 1})[1] + sim.request("A", {"CPU": 1})[1], Grant)
    [b_grant] = of(sim.request("B", {"CPU": 1})[1], Grant)
    sim.request("A", {"CPU": 1})  # queued: no CPU left
    sim.request("A", {"CPU": 99})  # infeasible
    assert len(sim.s.queue) == 1
    actions = sim.apply(sim.s.owner_gone("A"))
    assert {k.worker_id for k in of(actions, KillWorker)} == {g.worker_id for g in a_grants}
    assert of(actions, Grant) == []  # A's queued request is gone, not granted
    assert not sim.s.queue and sim.s.pending_shapes() == []
    for g in a_grants:
        assert g.worker_id not in sim.s.workers
        assert g.lease_id not in sim.s.leases
    assert sim.s.workers[b_grant.worker_id].state == LEASED
    assert sim.available() == {"CPU": 2.0}


def test_return_lease_with_kill():
    sim = Sim({"CPU": 1}, soft_limit=1)
    sim.add_idle(1)
    [g] = of(sim.request("A", {"CPU": 1})[1], Grant)
    actions = sim.apply(sim.s.return_lease(g.lease_id, kill=True))
    assert KillWorker(g.worker_id) in actions
    assert g.worker_id not in sim.s.workers
    assert sim.available() == {"CPU": 1.0}
    # The next request needs a new worker.
    _, actions = sim.request("A", {"CPU": 1})
    assert of(actions, StartWorkers) == [StartWorkers(1)]


def test_return_lease_without_kill_makes_worker_idle():
    sim = Sim({"CPU": 1}, soft_limit=1)
    sim.add_idle(1)
    [g] = of(sim.request("A", {"CPU": 1})[1], Grant)
    actions = sim.apply(sim.s.return_lease(g.lease_id))
    assert of(actions, KillWorker) == []
    slot = sim.s.workers[g.worker_id]
    assert slot.state == IDLE and slot.owner is None and slot.lease_id is None and slot.held == {}


def test_reclaim_sent_to_lease_holders_when_new_request_is_blocked():
    sim = Sim({"CPU": 2}, soft_limit=3)
    sim.add_idle(3)
    sim.request("A", {"CPU": 1})
    sim.request("B", {"CPU": 1})
    _, actions = sim.request("C", {"CPU": 1})
    assert of(actions, Reclaim) == [Reclaim({"A", "B"})]


def test_no_reclaim_when_request_fits_or_on_other_events():
    sim = Sim({"CPU": 2}, soft_limit=3)
    sim.add_idle(3)
    _, a1 = sim.request("A", {"CPU": 1})
    _, a2 = sim.request("B", {"CPU": 1})
    assert of(a1 + a2, Reclaim) == []
    sim.request("C", {"CPU": 1})  # blocked -> one Reclaim
    assert len(sim.reclaims) == 1
    sim.apply(sim.s.worker_died("no-such"))
    sim.s.worker_starting("late")
    actions = sim.apply(sim.s.worker_registered("late"))
    assert of(actions, Reclaim) == []


def test_custom_resources():
    sim = Sim({"CPU": 4, "custom": 2}, soft_limit=4)
    sim.add_idle(4)
    r1, a1 = sim.request("A", {"custom": 1})
    r2, a2 = sim.request("A", {"custom": 1, "CPU": 1})
    r3, a3 = sim.request("A", {"custom": 1})
    assert len(of(a1, Grant)) == 1 and len(of(a2, Grant)) == 1
    assert of(a3, Grant) == [] and of(a3, Infeasible) == []
    assert sim.available() == {"CPU": 3.0, "custom": 0.0}
    r4, a4 = sim.request("A", {"custom": 3})
    assert of(a4, Infeasible) == [Infeasible(r4)]
    actions = sim.apply(sim.s.return_lease(of(a1, Grant)[0].lease_id))
    assert [g.request for g in of(actions, Grant)] == [r3]


def test_gpu_ids_whole_and_fractional():
    from skate.raylet.scheduler import Grant, LocalScheduler

    s = LocalScheduler({"CPU": 4, "GPU": 2}, soft_limit=4, node_id="n")
    for w in ("w1", "w2", "w3", "w4"):
        s.worker_starting(w)
        s.worker_registered(w)
    _, a = s.request_lease("o", {"GPU": 1})
    _, b = s.request_lease("o", {"GPU": 0.5})
    _, c = s.request_lease("o", {"GPU": 0.5})
    grants = [x for x in a + b + c if isinstance(x, Grant)]
    assert [g.gpu_ids for g in grants] == [[0], [1], [1]]  # fractions share the partly used id
    _, d = s.request_lease("o", {"GPU": 1})
    assert not [x for x in d if isinstance(x, Grant)]  # no whole GPU left


def test_idle_workers_owning_objects_are_not_trimmed():
    from skate.raylet.scheduler import Grant, KillWorker, LocalScheduler

    s = LocalScheduler({"CPU": 1}, soft_limit=1, node_id="n")
    for w in ("w1", "w2", "w3"):
        s.worker_starting(w)
        s.worker_registered(w)
    s.worker_owns_objects("w1", True)
    s.worker_owns_objects("w2", True)
    _, actions = s.request_lease("o", {"CPU": 1})
    grant = next(a for a in actions if isinstance(a, Grant))
    killed = {a.worker_id for a in s.return_lease(grant.lease_id) if isinstance(a, KillWorker)}
    assert killed <= {"w3"} and "w1" not in killed and "w2" not in killed
