"""The raylet's side of placement groups: reserve (prepare), commit, return bundles (no I/O)."""

from __future__ import annotations

from skate.raylet.scheduler import Grant, KillWorker, LocalScheduler, Rejected


def sched(cpu: float = 4, workers: int = 2) -> LocalScheduler:
    s = LocalScheduler({"CPU": cpu}, soft_limit=int(cpu))
    for i in range(workers):
        s.worker_starting(f"w{i}")
        s.worker_registered(f"w{i}")
    return s


def test_prepare_reserves_all_or_nothing():
    s = sched(4)
    assert s.prepare_bundles("pg1", [(0, {"CPU": 1}), (1, {"CPU": 2})])
    assert s.available_float()["CPU"] == 1
    assert not s.prepare_bundles("pg2", [(0, {"CPU": 1}), (1, {"CPU": 1})])  # 2 > 1: nothing taken
    assert s.available_float()["CPU"] == 1


def test_commit_adds_bundle_resources_and_return_takes_them_away():
    s = sched(4)
    assert s.prepare_bundles("pg1", [(0, {"CPU": 1}), (1, {"CPU": 1})])
    s.commit_bundles("pg1", [0, 1])
    total, avail = s.total_float(), s.available_float()
    assert total["CPU_group_pg1"] == 2 and total["CPU_group_0_pg1"] == 1 and total["CPU_group_1_pg1"] == 1
    assert total["bundle_group_pg1"] == 2000 and avail["bundle_group_0_pg1"] == 1000
    assert avail["CPU"] == 2 and total["CPU"] == 4
    s.return_bundles("pg1", removed=True)
    assert s.total_float() == {"CPU": 4} and s.available_float() == {"CPU": 4}


def test_rollback_of_a_prepared_bundle_frees_its_reservation():
    s = sched(4)
    assert s.prepare_bundles("pg1", [(0, {"CPU": 3})])
    s.return_bundles("pg1", [0])
    assert s.available_float() == {"CPU": 4} and not s.bundles


def test_a_lease_in_a_bundle_runs_and_dies_with_the_group():
    s = sched(4)
    s.prepare_bundles("pg1", [(0, {"CPU": 1})])
    s.commit_bundles("pg1", [0])
    req, actions = s.request_lease("owner", {"CPU_group_0_pg1": 1, "bundle_group_0_pg1": 0.001})
    grants = [a for a in actions if isinstance(a, Grant)]
    assert len(grants) == 1
    # A second one does not fit the bundle: it waits.
    req2, actions = s.request_lease("owner", {"CPU_group_0_pg1": 1, "bundle_group_0_pg1": 0.001})
    assert not [a for a in actions if isinstance(a, Grant)]
    actions = s.return_bundles("pg1", removed=True)
    assert KillWorker(grants[0].worker_id) in actions
    assert [a.request for a in actions if isinstance(a, Rejected)] == [req2]
    assert s.available_float()["CPU"] == 4 and s.total_float() == {"CPU": 4}
    _, actions = s.request_lease("owner", {"CPU_group_pg1": 1})
    assert isinstance(actions[0], Rejected) and "pg1" in actions[0].reason


def test_prepare_for_a_removed_group_is_refused():
    s = sched(4)
    s.return_bundles("pg1", removed=True)
    assert not s.prepare_bundles("pg1", [(0, {"CPU": 1})])
    assert s.available_float() == {"CPU": 4}
