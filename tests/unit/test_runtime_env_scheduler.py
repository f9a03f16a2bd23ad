"""The raylet's worker pool keyed by runtime env (LocalScheduler): exact decisions."""

from __future__ import annotations

from skate.raylet.scheduler import Grant, KillWorker, LocalScheduler, Rejected, StartWorkers


def _pool(cpus: int = 2, idle: int = 2) -> LocalScheduler:
    s = LocalScheduler({"CPU": cpus}, cpus, "node")
    for i in range(idle):
        s.worker_starting(f"w{i}")
        s.worker_registered(f"w{i}")
    return s


def test_env_request_is_never_given_a_default_worker():
    s = _pool()
    req, actions = s.request_lease("owner", {"CPU": 1}, env="envA")
    assert not any(isinstance(a, Grant) for a in actions)
    starts = [a for a in actions if isinstance(a, StartWorkers)]
    assert starts == [StartWorkers(1, "envA")]


def test_env_worker_serves_only_its_env():
    s = _pool(idle=0)
    s.request_lease("owner", {"CPU": 1}, env="envA")
    s.worker_starting("a1", "envA")
    actions = s.worker_registered("a1")
    grants = [a for a in actions if isinstance(a, Grant)]
    assert [g.worker_id for g in grants] == ["a1"]
    s.return_lease(grants[0].lease_id)
    # A default-env request does not get the idle envA worker.
    _, actions = s.request_lease("owner", {"CPU": 1})
    assert not any(isinstance(a, Grant) for a in actions)
    assert StartWorkers(1) in actions
    # Another envA request does.
    _, actions = s.request_lease("owner", {"CPU": 1}, env="envA")
    assert [a.worker_id for a in actions if isinstance(a, Grant)] == ["a1"]


def test_idle_env_workers_are_trimmed_first():
    s = _pool(idle=2)
    s.worker_starting("a1", "envA")
    actions = s.worker_registered("a1")  # three idle workers, soft limit two
    assert [a for a in actions if isinstance(a, KillWorker)] == [KillWorker("a1", retire=True)]
    assert sorted(s.workers) == ["w0", "w1"]


def test_waiting_env_request_makes_room_by_trimming_other_envs():
    s = _pool(idle=1)
    s.worker_starting("a1", "envA")
    s.worker_registered("a1")  # idle: one default and one envA worker, the limit
    _, actions = s.request_lease("owner", {"CPU": 1}, env="envB")
    assert StartWorkers(1, "envB") in actions
    s.worker_starting("b1", "envB")
    actions = s._schedule()  # over the limit of 2 while envB waits: the idle envA worker goes
    assert [a for a in actions if isinstance(a, KillWorker)] == [KillWorker("a1", retire=True)]
    assert sorted(s.workers) == ["b1", "w0"]


def test_default_workers_are_not_trimmed_while_an_env_request_waits():
    s = _pool(idle=2)
    s.request_lease("owner", {"CPU": 1}, env="envB")
    s.worker_starting("b1", "envB")
    actions = s._schedule()
    assert not [a for a in actions if isinstance(a, KillWorker)]
    grants = [a for a in s.worker_registered("b1") if isinstance(a, Grant)]
    assert [g.worker_id for g in grants] == ["b1"]
    assert "w0" not in s.workers  # within the limit while b1 works: an idle default one went
    assert not [a for a in s.return_lease(grants[0].lease_id) if isinstance(a, KillWorker)]


def test_idle_env_workers_are_reaped_after_a_while():
    now = [0.0]
    s = LocalScheduler({"CPU": 2}, 2, "node", clock=lambda: now[0])
    s.worker_starting("w0")
    s.worker_registered("w0")
    s.worker_starting("a1", "envA")
    s.worker_registered("a1")
    now[0] = 5.0
    assert s.reap_idle_env_workers(10.0) == []
    grant = [a for a in s.request_lease("o", {"CPU": 1}, env="envA")[1] if isinstance(a, Grant)][0]
    now[0] = 20.0
    assert s.reap_idle_env_workers(10.0) == []  # leased: never reaped
    s.return_lease(grant.lease_id)
    now[0] = 29.0
    assert s.reap_idle_env_workers(10.0) == []
    now[0] = 30.0
    assert s.reap_idle_env_workers(10.0) == [KillWorker("a1", retire=True)]
    assert list(s.workers) == ["w0"]  # default workers stay


def test_default_only_pools_are_unchanged():
    s = _pool(idle=2)
    _, actions = s.request_lease("owner", {"CPU": 1})
    assert [type(a) for a in actions] == [Grant]


def test_env_failure_rejects_its_requests_and_drops_its_starting_workers():
    s = _pool(idle=1)
    r1, _ = s.request_lease("owner", {"CPU": 1}, env="bad")
    r2, _ = s.request_lease("owner", {"CPU": 1}, env="good")
    s.worker_starting("b1", "bad")
    s.worker_starting("g1", "good")
    actions = s.env_failed("bad", "pip failed: boom")
    rejected = [a for a in actions if isinstance(a, Rejected)]
    assert rejected == [Rejected(r1, "pip failed: boom", runtime_env_failed=True)]
    assert "b1" not in s.workers and "g1" in s.workers
    assert [r.request_id for r in s.queue] == [r2.request_id]
    # The pool is not wedged: the good env's worker still serves its request.
    actions = s.worker_registered("g1")
    assert [a.worker_id for a in actions if isinstance(a, Grant)] == ["g1"]
    # A later request for the failed env tries again (a new worker is started for it).
    _, actions = s.request_lease("owner", {"CPU": 1}, env="bad")
    assert StartWorkers(1, "bad") in actions


def test_a_dropped_env_worker_that_registers_keeps_its_env():
    s = _pool(idle=0)
    s.worker_starting("a1", "envA")
    s.workers.pop("a1")  # trimmed while it was starting
    s.worker_registered("a1", "envA")
    assert s.workers["a1"].env == "envA"
    _, actions = s.request_lease("owner", {"CPU": 1})
    assert not any(isinstance(a, Grant) for a in actions)


def test_fresh_interpreter_only_when_a_package_is_already_loaded_or_forced():
    from skate.raylet.zygote import needs_fresh_interpreter

    loaded = {"numpy": object(), "json": object()}
    assert not needs_fresh_interpreter({"modules": []}, loaded)
    assert not needs_fresh_interpreter({}, loaded, force=True)  # no pip/uv packages: fork is right
    assert not needs_fresh_interpreter({"modules": ["tiny_pkg"]}, loaded)
    assert needs_fresh_interpreter({"modules": ["tiny_pkg", "numpy"]}, loaded)
    assert needs_fresh_interpreter({"modules": ["tiny_pkg"]}, loaded, force=True)
