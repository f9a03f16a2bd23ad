"""The raylet's lease decisions as a state machine: events in, actions out, no I/O.

A lease gives one owner one worker plus a resource shape until the owner returns it.
Requests wait in FIFO order for resources and an idle worker; the pool is grown on
demand; a request that can never fit on this node is reported infeasible once.
A worker blocked in `get` lends its CPUs back so nested tasks can run, unless it hosts an
actor (or runs an actor's constructor): as in Ray, an actor keeps what it holds while blocked.

A request with a node-label constraint (skate._labels) runs only on a node matching its hard
expressions; where it goes is decided afresh on every pass, in Ray's order: a node matching its
soft expressions too with room now, any matching node with room now, a soft-matching node that
could hold it, any matching node that could. Waiting here counts as going here; with no matching
node at all it is infeasible (pending until one joins).

Workers are pooled by runtime env (its hash; "" is the default env): a request is granted
only a worker started for its env, and idle workers of other envs are trimmed first.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from skate import _labels
from skate.gcs.pg_scheduler import group_of_resource, group_resources
from skate.raylet import resources as res

STARTING, IDLE, LEASED = "starting", "idle", "leased"


@dataclass
class LeaseRequest:
    request_id: int
    owner: str
    shape: dict[str, int]  # what must be free to grant the lease
    hold: dict[str, int]  # what the lease holds once granted (an actor may hold less)
    reported_infeasible: bool = False
    spill_ok: bool = True  # False once the request was redirected here: no ping-pong
    spread: bool = False
    actor: bool = False  # the lease hosts an actor: it never lends its CPU while blocked
    labels: _labels.Constraint | None = None  # node-label constraint (hard, soft), if any
    env: str = ""  # the runtime env's hash ("" for none): only a worker of that env serves it


@dataclass
class WorkerSlot:
    worker_id: str
    state: str = STARTING
    lease_id: int | None = None
    owner: str | None = None
    held: dict[str, int] = field(default_factory=dict)
    blocked: bool = False
    gpus: dict[int, int] = field(default_factory=dict)  # GPU id -> share held (fixed point)
    owns_objects: bool = False
    actor: bool = False  # leased to host an actor (set per lease)
    env: str = ""  # the runtime env this worker was started in, for good
    idle_since: float = 0.0  # when it last became idle (the scheduler's clock)


# Actions
@dataclass
class Grant:
    request: LeaseRequest
    worker_id: str
    lease_id: int
    gpu_ids: list[int] = field(default_factory=list)


@dataclass
class StartWorkers:
    count: int
    env: str = ""  # start them in this runtime env (set up first if needed)


@dataclass
class Infeasible:
    request: LeaseRequest


@dataclass
class KillWorker:
    """Stop a worker's process. `retire`: an idle worker the pool no longer needs, which
    first sends what it still holds (its task events), not one killed for a reason."""

    worker_id: str
    retire: bool = False


@dataclass
class Spillback:
    """Send the owner to another node that can run the request."""

    request: LeaseRequest
    node_id: str
    address: str


@dataclass
class Rejected:
    """Fail the request: it can never run (it names a placement group that was removed)."""

    request: LeaseRequest
    reason: str
    runtime_env_failed: bool = False  # the reason is its runtime env's setup failure


@dataclass
class Reclaim:
    """Ask these owners to give back leases they hold but do not use."""

    owners: set[str]


class LocalScheduler:
    def __init__(
        self,
        total: dict[str, float],
        soft_limit: int,
        node_id: str = "",
        labels: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.node_id = node_id
        self.labels = dict(labels or {})  # this node's labels
        self.clock = clock
        self.cluster: dict[str, tuple[dict[str, int], dict[str, int], str]] = {}  # other nodes
        self.cluster_labels: dict[str, dict[str, str]] = {}
        self._spread_turn = 0
        self.total = res.to_fixed(total)
        # Each GPU id and how much of it is free: whole GPUs go to one lease, fractions share an id.
        self.gpu_free = {i: res.UNIT for i in range(self.total.get("GPU", 0) // res.UNIT)}
        self.available = dict(self.total)
        self.soft_limit = soft_limit
        self.workers: dict[str, WorkerSlot] = {}
        self.leases: dict[int, str] = {}
        self.queue: deque[LeaseRequest] = deque()
        self.infeasible: list[LeaseRequest] = []
        self._lease_ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self._starting = 0
        self.leases_granted = 0  # since start, for the node's metrics
        # Placement-group bundles on this node: (group, index) -> (shape, committed).
        self.bundles: dict[tuple[str, int], tuple[dict[str, int], bool]] = {}
        self.removed_groups: dict[str, None] = {}  # recently removed groups (insertion ordered)

    # -- queries ----------------------------------------------------------------------
    def num_idle(self) -> int:
        return sum(1 for w in self.workers.values() if w.state == IDLE)

    def available_float(self) -> dict[str, float]:
        return {k: max(v, 0) / res.UNIT for k, v in self.available.items()}

    def total_float(self) -> dict[str, float]:
        return res.to_float(self.total)

    def pending_shapes(self) -> list[dict[str, float]]:
        return [res.to_float(r.shape) for r in list(self.queue) + self.infeasible]

    # -- events -----------------------------------------------------------------------
    def set_cluster_view(self, view: dict[str, dict]) -> list:
        """The GCS's latest view of the other alive nodes: (total, available, address)."""
        self.cluster = {
            nid: (res.to_fixed(n["resources"]), res.to_fixed(n.get("available") or {}), n["address"])
            for nid, n in view.items()
            if n["alive"] and nid != self.node_id
        }
        self.cluster_labels = {nid: dict(view[nid].get("labels") or {}) for nid in self.cluster}
        return self._schedule() if self.infeasible or self.queue else []

    def _pick_remote(self, shape: dict[str, int], now: bool) -> tuple[str, str] | None:
        """Another node for `shape`: one with it free now (now=True), else any that can ever hold
        it; the one with the most free CPU first."""
        best = None
        for nid, (total, available, address) in self.cluster.items():
            if not res.fits(shape, available if now else total):
                continue
            free_cpu = available.get("CPU", 0)
            if best is None or free_cpu > best[0]:
                best = (free_cpu, nid, address)
        if best is None:
            return None
        if now:  # count what we send there, so the next request looks elsewhere
            res.subtract(self.cluster[best[1]][1], shape)
        return best[1], best[2]

    def request_lease(
        self,
        owner: str,
        shape: dict[str, float],
        hold: dict[str, float] | None = None,
        *,
        spill_ok: bool = True,
        spread: bool = False,
        actor: bool = False,
        labels: _labels.Constraint | None = None,
        env: str = "",
    ) -> tuple[LeaseRequest, list]:
        """Queue a lease request; `actor` marks a lease that hosts an actor for its lifetime;
        `labels` is a node-label constraint (skate._labels wire form), `env` the runtime env
        (hash) its worker must run in."""
        fixed = res.to_fixed(shape)
        req = LeaseRequest(
            next(self._request_ids),
            owner,
            fixed,
            fixed if hold is None else res.to_fixed(hold),
            spill_ok=spill_ok,
            spread=spread,
            actor=actor,
            labels=labels,
            env=env,
        )
        group = self._removed_group_of(fixed)
        if group is not None:
            return req, [Rejected(req, f"placement group {group} was removed")]
        self.queue.append(req)
        return req, self._schedule(new_request=True)

    # -- placement-group bundles ------------------------------------------------------
    def prepare_bundles(self, group: str, bundles: list[tuple[int, dict[str, float]]]) -> bool:
        """Phase one: reserve the bundles' resources, all or none. False if they do not fit
        (or the group is gone); nothing is reserved then."""
        if group in self.removed_groups:
            return False
        fixed = [(i, res.to_fixed(shape)) for i, shape in bundles if (group, i) not in self.bundles]
        need: dict[str, int] = {}
        for _, shape in fixed:
            res.add(need, shape)
        if not res.fits(need, self.available):
            return False
        for i, shape in fixed:
            res.subtract(self.available, shape)
            self.bundles[(group, i)] = (shape, False)
        return True

    def commit_bundles(self, group: str, indices: list[int]) -> list:
        """Phase two: the reserved resources become the bundles' own (`CPU_group_<pg>` ...)."""
        for i in indices:
            entry = self.bundles.get((group, i))
            if entry is None or entry[1]:
                continue
            shape = entry[0]
            self.bundles[(group, i)] = (shape, True)
            added = group_resources(group, i, shape)
            res.add(self.total, added)
            res.add(self.available, added)
        return self._schedule()

    def return_bundles(self, group: str, indices: list[int] | None = None, removed: bool = False) -> list:
        """Give back bundles (all of the group's here if `indices` is None): prepared ones free
        their reservation; committed ones lose their bundle resources, and the workers leased
        with those are killed. With `removed`, later requests naming the group are rejected."""
        actions: list = []
        if removed:
            self.removed_groups[group] = None
            while len(self.removed_groups) > 10_000:
                del self.removed_groups[next(iter(self.removed_groups))]
            for slot in list(self.workers.values()):
                if slot.lease_id is not None and any(group_of_resource(k) == group for k in slot.held):
                    self.leases.pop(slot.lease_id, None)
                    self._release(slot)
                    del self.workers[slot.worker_id]
                    actions.append(KillWorker(slot.worker_id))
            for req in list(self.queue) + self.infeasible:
                if self._removed_group_of(req.shape) == group:
                    actions.append(Rejected(req, f"placement group {group} was removed"))
            self.queue = deque(r for r in self.queue if self._removed_group_of(r.shape) != group)
            self.infeasible = [r for r in self.infeasible if self._removed_group_of(r.shape) != group]
        keys = [k for k in self.bundles if k[0] == group and (indices is None or k[1] in indices)]
        for key in keys:
            shape, committed = self.bundles.pop(key)
            if committed:
                taken = group_resources(group, key[1], shape)
                res.subtract(self.total, taken)
                res.subtract(self.available, taken)
            res.add(self.available, shape)
        for amounts in (self.total, self.available):
            for name in [k for k, v in amounts.items() if v == 0 and group_of_resource(k) == group]:
                del amounts[name]
        return actions + self._schedule()

    def _removed_group_of(self, shape: dict[str, int]) -> str | None:
        if not self.removed_groups:
            return None
        for name in shape:
            group = group_of_resource(name)
            if group is not None and group in self.removed_groups:
                return group
        return None

    def cancel_request(self, request_id: int) -> list:
        self.queue = deque(r for r in self.queue if r.request_id != request_id)
        self.infeasible = [r for r in self.infeasible if r.request_id != request_id]
        return []

    def worker_starting(self, worker_id: str, env: str = "") -> None:
        self.workers[worker_id] = WorkerSlot(worker_id, env=env)

    def reap_idle_env_workers(self, max_idle: float) -> list:
        """Workers of runtime envs idle for `max_idle` seconds go, even within the pool's
        limit (default-env workers stay): an env nobody uses holds no process, and its files
        may then be collected."""
        now = self.clock()
        actions: list = []
        for slot in list(self.workers.values()):
            if (
                slot.env
                and slot.state == IDLE
                and not slot.owns_objects
                and now - slot.idle_since >= max_idle
            ):
                del self.workers[slot.worker_id]
                actions.append(KillWorker(slot.worker_id, retire=True))
        return actions

    def env_failed(self, env: str, reason: str) -> list:
        """Setting up runtime env `env` failed: its requests fail with the reason, and its
        workers that were waiting for it to start are forgotten (they were never started).
        Later requests for the env try the setup again."""
        actions: list = []
        for req in list(self.queue) + self.infeasible:
            if req.env == env:
                actions.append(Rejected(req, reason, runtime_env_failed=True))
        self.queue = deque(r for r in self.queue if r.env != env)
        self.infeasible = [r for r in self.infeasible if r.env != env]
        for slot in list(self.workers.values()):
            if slot.env == env and slot.state == STARTING:
                del self.workers[slot.worker_id]
        return actions + self._schedule()

    def worker_registered(self, worker_id: str, env: str = "") -> list:
        """A worker connected (`env`: the runtime env it was started in, which a slot dropped
        while it started no longer records)."""
        slot = self.workers.setdefault(worker_id, WorkerSlot(worker_id, env=env))
        if slot.state == STARTING:
            slot.state = IDLE
            slot.idle_since = self.clock()
        return self._schedule()

    def return_lease(self, lease_id: int, kill: bool = False, retire: bool = False) -> list:
        """The owner is done with a lease; with `kill` its worker goes too (`retire`: one
        that leaves on its own account, max_calls reached, rather than a broken one)."""
        worker_id = self.leases.pop(lease_id, None)
        if worker_id is None:
            return []
        slot = self.workers.get(worker_id)
        actions: list = []
        if slot is not None:
            self._release(slot)
            if kill:
                actions.append(KillWorker(worker_id, retire=retire))
                del self.workers[worker_id]
            else:
                slot.state = IDLE
                slot.idle_since = self.clock()
        return actions + self._schedule()

    def worker_died(self, worker_id: str) -> list:
        slot = self.workers.pop(worker_id, None)
        if slot is None:
            return []
        if slot.lease_id is not None:
            self.leases.pop(slot.lease_id, None)
            self._release(slot)
        return self._schedule()

    def owner_gone(self, owner: str) -> list:
        self.queue = deque(r for r in self.queue if r.owner != owner)
        self.infeasible = [r for r in self.infeasible if r.owner != owner]
        actions: list = []
        for slot in list(self.workers.values()):
            if slot.owner == owner and slot.lease_id is not None:
                self.leases.pop(slot.lease_id, None)
                self._release(slot)
                del self.workers[slot.worker_id]
                actions.append(KillWorker(slot.worker_id))
        return actions + self._schedule()

    def worker_owns_objects(self, worker_id: str, owns: bool) -> None:
        slot = self.workers.get(worker_id)
        if slot is not None:
            slot.owns_objects = owns

    def worker_blocked(self, worker_id: str) -> list:
        """A task's worker waits in `get`: lend its CPU to others. An actor's worker does not
        (Ray's semantics: actors hold their resources for life, so lending would oversubscribe)."""
        slot = self.workers.get(worker_id)
        if slot is None or slot.state != LEASED or slot.blocked or slot.actor:
            return []
        slot.blocked = True
        cpu = slot.held.get("CPU", 0)
        if cpu:
            self.available["CPU"] = self.available.get("CPU", 0) + cpu
        return self._schedule()

    def worker_unblocked(self, worker_id: str) -> list:
        slot = self.workers.get(worker_id)
        if slot is None or not slot.blocked:
            return []
        slot.blocked = False
        cpu = slot.held.get("CPU", 0)
        if cpu:
            self.available["CPU"] = self.available.get("CPU", 0) - cpu
        return []

    # -- internals --------------------------------------------------------------------
    def _release(self, slot: WorkerSlot) -> None:
        held = dict(slot.held)
        if slot.blocked:
            held.pop("CPU", None)
        res.add(self.available, held)
        for gpu, share in slot.gpus.items():
            self.gpu_free[gpu] = self.gpu_free.get(gpu, 0) + share
        slot.gpus = {}
        slot.held = {}
        slot.lease_id = None
        slot.owner = None
        slot.blocked = False
        slot.actor = False

    def _schedule(self, new_request: bool = False) -> list:
        actions: list = []
        idle = [w for w in self.workers.values() if w.state == IDLE]
        idle_by_env: dict[str, list[WorkerSlot]] = {}
        for w in idle:
            idle_by_env.setdefault(w.env, []).append(w)
        waiting_by_env: dict[str, int] = {}
        blocked_by_resources = False
        still_queued: deque[LeaseRequest] = deque()
        # Infeasible requests are looked at again: a node that can run them may have joined.
        pending = list(self.infeasible) + list(self.queue)
        self.infeasible = []
        for req in pending:
            if req.labels is not None:
                target = self._label_target(req)
                if target is None:
                    self.infeasible.append(req)
                    if not req.reported_infeasible:
                        req.reported_infeasible = True
                        actions.append(Infeasible(req))
                    continue
                if target != "local":
                    actions.append(Spillback(req, *target))
                    continue
            elif not res.fits(req.shape, self.total):
                target = self._pick_remote(req.shape, now=False) if req.spill_ok else None
                if target is not None:
                    actions.append(Spillback(req, *target))
                    continue
                self.infeasible.append(req)
                if not req.reported_infeasible:
                    req.reported_infeasible = True
                    actions.append(Infeasible(req))
                continue
            if req.spread and req.spill_ok and self.cluster and req.labels is None:
                req.spread = False  # decided once: a request kept here is not spread again
                target = self._spread_target(req.shape)
                if target is not None:
                    actions.append(Spillback(req, *target))
                    continue
            if not res.fits(req.shape, self.available):
                target = (
                    self._pick_remote(req.shape, now=True) if req.spill_ok and req.labels is None else None
                )
                if target is not None:
                    actions.append(Spillback(req, *target))
                    continue
                blocked_by_resources = True
                still_queued.append(req)
                continue
            gpus = self._pick_gpus(req.hold.get("GPU", 0))
            if gpus is None:  # enough GPU in sum, but no id has the fraction asked for
                still_queued.append(req)
                continue
            env_idle = idle_by_env.get(req.env)
            if env_idle:
                slot = env_idle.pop()
                idle.remove(slot)
                lease_id = next(self._lease_ids)
                self.leases_granted += 1
                slot.state, slot.lease_id, slot.owner = LEASED, lease_id, req.owner
                slot.held = dict(req.hold)
                slot.actor = req.actor
                res.subtract(self.available, req.hold)
                for gpu, share in gpus.items():
                    self.gpu_free[gpu] -= share
                slot.gpus = gpus
                self.leases[lease_id] = slot.worker_id
                actions.append(Grant(req, slot.worker_id, lease_id, sorted(gpus)))
            else:
                waiting_by_env[req.env] = waiting_by_env.get(req.env, 0) + 1
                still_queued.append(req)
        self.queue = still_queued
        starting: dict[str, int] = {}
        for w in self.workers.values():
            if w.state == STARTING:
                starting[w.env] = starting.get(w.env, 0) + 1
        # Start what the queue needs, but never more than soft_limit at once (no fork storms).
        for env, waiting in waiting_by_env.items():
            want = min(waiting, self.soft_limit) - starting.get(env, 0)
            if want > 0:
                actions.append(StartWorkers(want, env) if env else StartWorkers(want))
        # A worker that owns objects others still use is kept: its death would lose them.
        # Workers of other runtime envs go first (the default env's are the ones most reused).
        spare = sorted((w for w in idle if not w.owns_objects), key=lambda w: w.env == "")
        if not self.queue:
            # Trim idle workers beyond the soft limit once nothing waits for one.
            extra = len(idle) - max(self.soft_limit - self._busy(), 0)
            for slot in spare[: max(extra, 0)]:
                del self.workers[slot.worker_id]
                actions.append(KillWorker(slot.worker_id, retire=True))
        elif waiting_by_env:
            # Requests wait for workers of their env while idle workers of other (non-default)
            # envs sit here: over the limit, those make room, so the pool does not grow with
            # every env used. Default workers wait for the queue to empty, as above.
            extra = len(self.workers) - self.soft_limit
            for slot in [w for w in spare if w.env and w.env not in waiting_by_env][: max(extra, 0)]:
                del self.workers[slot.worker_id]
                actions.append(KillWorker(slot.worker_id, retire=True))
        if blocked_by_resources and new_request:
            owners = {w.owner for w in self.workers.values() if w.state == LEASED and w.owner}
            if owners:
                actions.append(Reclaim(owners))
        return actions

    def _label_target(self, req: LeaseRequest) -> str | tuple[str, str] | None:
        """Where a labeled request goes now: "local" (run or wait here), (node, address) to
        spill to, or None when no alive node matches its hard expressions and can hold it.
        A request redirected here that matches here stays (no ping-pong)."""
        assert req.labels is not None
        hard, soft = req.labels
        shape = req.shape
        local_ok = _labels.matches(self.labels, hard) and res.fits(shape, self.total)
        if local_ok and not req.spill_ok:
            return "local"
        local_now = local_ok and res.fits(shape, self.available)
        local_soft = local_ok and _labels.matches(self.labels, soft)
        remote = [
            (nid, total, avail, address)
            for nid, (total, avail, address) in sorted(self.cluster.items())
            if res.fits(shape, total) and _labels.matches(self.cluster_labels.get(nid, {}), hard)
        ]
        remote_soft = [r for r in remote if _labels.matches(self.cluster_labels.get(r[0], {}), soft)]
        tiers: list[tuple[bool, bool, list]] = [
            (local_now and local_soft, True, remote_soft),
            (local_now, True, remote),
            (local_soft, False, remote_soft),
            (local_ok, False, remote),
        ]
        for local, now, candidates in tiers:
            if local:
                return "local"
            best = None
            for nid, _, avail, address in candidates:
                if now and not res.fits(shape, avail):
                    continue
                free_cpu = avail.get("CPU", 0)
                if best is None or free_cpu > best[0]:
                    best = (free_cpu, nid, address)
            if best is not None:
                if now:  # count what we send there, so the next request looks elsewhere
                    res.subtract(self.cluster[best[1]][1], shape)
                return best[1], best[2]
        return None

    def _pick_gpus(self, need: int) -> dict[int, int] | None:
        """GPU ids for a lease: whole free GPUs, or one id with room for a fraction."""
        if need <= 0:
            return {}
        if need >= res.UNIT:
            whole = [g for g, free in sorted(self.gpu_free.items()) if free == res.UNIT]
            count = need // res.UNIT
            return {g: res.UNIT for g in whole[:count]} if len(whole) >= count else None
        fitting = [(free, g) for g, free in self.gpu_free.items() if free >= need]
        if not fitting:
            return None
        _, gpu = min(fitting)  # the fullest id that still fits: keep whole GPUs free
        return {gpu: need}

    def _spread_target(self, shape: dict[str, int]) -> tuple[str, str] | None:
        """Round-robin over the nodes (this one included) with room now; None means here."""
        candidates = [(self.node_id, "")] if res.fits(shape, self.available) else []
        candidates += [
            (nid, addr) for nid, (_, avail, addr) in sorted(self.cluster.items()) if res.fits(shape, avail)
        ]
        if not candidates:
            return None
        self._spread_turn += 1
        nid, address = candidates[self._spread_turn % len(candidates)]
        if nid == self.node_id:
            return None
        res.subtract(self.cluster[nid][1], shape)  # as for any spillback: count what we send
        return nid, address

    def _busy(self) -> int:
        """Leased workers that use CPU (actors holding none do not count against the pool)."""
        return sum(1 for w in self.workers.values() if w.state == LEASED and w.held.get("CPU", 0) > 0)
