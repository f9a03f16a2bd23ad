"""A simulated large cluster in one process (issue 19): the real GCS, fake nodes, no sockets.

What is real: the GCS server object (`gcs.server.GcsServer`: node table, `update_resources`),
its actor manager (`gcs.actor_manager`: registration, names, placement through
`gcs.placement`, leasing, the incarnation bookkeeping), its placement-group manager
(`gcs.placement_group_manager` over `gcs.pg_scheduler`, two-phase commit included), and on
every fake node the raylet's lease state machine (`raylet.scheduler.LocalScheduler`).
What is fake: the connections. A `SimRaylet` answers the GCS's raylet calls by driving its
node's `LocalScheduler` exactly as `raylet.server` does (workers "start" at once), and the
connection to an actor's worker (the actor manager's one seam, `ActorManager.connect`)
answers `create_actor` at once. No socket, thread or process is opened.

Measured per cluster size (`run`, one row of `table`): node registration throughput,
actor registration + placement throughput (the GCS picks a node, the node's scheduler grants
the lease), raylet lease decisions per second (one node's scheduler with the whole cluster in
its view: grants, and spillbacks when it is full), placement-group scheduling (4-bundle PACK
and SPREAD groups, created and committed), and the GCS's memory per actor (the deep size of
the actor manager's tables, and the process's RSS growth, which also holds the fake raylets'
worker slots).

    python -m skate._sim_cluster --nodes 10,100,1000 --actors 100000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import msgspec
import psutil

from skate._labels import from_wire
from skate.gcs.server import GcsServer
from skate.protocol import Connection
from skate.protocol.messages import ActorCreation, TaskSpec
from skate.raylet.scheduler import Grant, Infeasible, Rejected, Spillback, StartWorkers
from skate.raylet.scheduler import LocalScheduler as Scheduler

NODE_CPUS = 4
NODE_MEMORY = 16 * 2**30
DRIVER = "driver-0000"
COLUMNS = (
    "nodes",
    "actors",
    "node reg (nodes/s)",
    "actor placement (actors/s)",
    "raylet lease decisions/s",
    "PG scheduling (groups/s)",
    "GCS bytes/actor",
    "RSS bytes/actor",
)


class SimConn:
    """Stands in for a `protocol.Connection` the GCS holds (a driver's, a worker's)."""

    def __init__(self, name: str = "sim") -> None:
        self.name = name
        self.closed = False
        self.write_paused = False
        self.peer_info: dict = {}
        self._on_close: Any = None
        self.notified = 0

    def notify(self, method: str, payload: Any = None) -> None:
        self.notified += 1

    async def call(self, method: str, payload: Any = None) -> Any:
        if method == "create_actor":  # the constructor runs at once
            return {"pid": 0}
        raise NotImplementedError(f"the simulated {self.name} does not answer {method!r}")

    def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        callback, self._on_close = self._on_close, None
        if callback is not None:
            callback(self)


def as_conn(fake: SimConn) -> Connection:
    """A fake connection where the GCS's handlers expect a real one (they use only its
    `peer_info`, `closed`, `write_paused`, `notify`, `call`, `close` and `_on_close`)."""
    return cast(Connection, fake)


async def sim_connect(address: str, token: bytes, handlers: dict, name: str = "") -> SimConn:
    """The actor manager's `connect`: a worker connection that answers at once."""
    return SimConn(name or address)


class SimRaylet(SimConn):
    """One fake node: its raylet's connection to the GCS, carried out on a real LocalScheduler
    as `raylet.server` carries it out (resource reports coalesced per loop iteration)."""

    def __init__(self, gcs: GcsServer, node_id: str, resources: dict[str, float], labels: dict[str, str]):
        super().__init__(f"raylet {node_id[:8]}")
        self.gcs = gcs
        self.node_id = node_id
        self.resources = dict(resources)
        self.labels = labels
        self.scheduler = Scheduler(resources, int(resources.get("CPU", 1)), node_id, labels)
        self._workers = itertools.count()
        self.futures: dict[int, asyncio.Future] = {}
        self._dirty = False
        self.decisions = 0  # lease requests answered (granted, spilled or rejected)
        self.sched_seconds = 0.0  # time spent inside the scheduler

    def info(self) -> dict:
        """What a raylet sends in `register_node` (raylet.server's node_info)."""
        return {
            "node_id": self.node_id,
            "address": f"sim://{self.node_id}",
            "pid": 0,
            "resources": dict(self.resources),
            "available": self.scheduler.available_float(),
            "store_used": 0,
            "session_dir": f"/sim/{self.node_id}",
            "node_ip": "127.0.0.1",
            "is_head": False,
            "labels": dict(self.labels),
        }

    async def call(self, method: str, payload: Any = None) -> Any:
        answer = self.answer(method, payload)
        return (await answer) if isinstance(answer, asyncio.Future) else answer

    def answer(self, method: str, p: Any) -> Any:
        if method == "request_lease":
            start = time.perf_counter()
            req, actions = self.scheduler.request_lease(
                "gcs",
                p["shape"],
                p.get("hold"),
                spill_ok=not p.get("spilled"),
                spread=p.get("strategy") == "SPREAD",
                actor=bool(p.get("actor")),
                labels=from_wire(p.get("labels")),
            )
            fut = asyncio.get_running_loop().create_future()
            self.futures[req.request_id] = fut
            self.apply(actions)
            self.sched_seconds += time.perf_counter() - start
            return fut
        if method == "prepare_bundles":
            group = p["pg_id"]
            ok = self.scheduler.prepare_bundles(group, [(i, shape) for i, shape in p["bundles"]])
            if ok and p.get("commit"):
                self.apply(self.scheduler.commit_bundles(group, [i for i, _ in p["bundles"]]))
            self._mark_dirty()
            return ok
        if method == "commit_bundles":
            self.apply(self.scheduler.commit_bundles(p["pg_id"], p["indices"]))
            return True
        raise NotImplementedError(f"the simulated raylet does not answer {method!r}")

    def notify(self, method: str, payload: Any = None) -> None:
        self.notified += 1
        if method == "return_lease":
            self.apply(self.scheduler.return_lease(payload["lease_id"], kill=bool(payload.get("kill"))))
        elif method == "return_bundles":
            self.apply(
                self.scheduler.return_bundles(payload["pg_id"], payload["indices"], bool(payload["removed"]))
            )
        elif method == "kill_worker":
            self.apply(self.scheduler.worker_died(payload["worker_id"]))
        # cluster_view: a real raylet folds it into its scheduler (O(nodes) per raylet, in
        # parallel across machines); the GCS's actor placement does not depend on it, so the
        # simulation leaves it out rather than pay nodes x nodes in one process.

    def apply(self, actions: list) -> None:
        for action in actions:
            if isinstance(action, Grant):
                self.decisions += 1
                fut = self.futures.pop(action.request.request_id, None)
                if fut is None or fut.done():
                    self.apply(self.scheduler.return_lease(action.lease_id))
                    continue
                fut.set_result(
                    {
                        "lease_id": action.lease_id,
                        "worker_id": action.worker_id,
                        "address": f"sim://{self.node_id}/{action.worker_id}",
                        "gpu_ids": action.gpu_ids,
                    }
                )
            elif isinstance(action, Spillback):
                self.decisions += 1
                fut = self.futures.pop(action.request.request_id, None)
                if fut is not None and not fut.done():
                    fut.set_result({"spillback": {"node_id": action.node_id, "address": action.address}})
            elif isinstance(action, Rejected):
                self.decisions += 1
                fut = self.futures.pop(action.request.request_id, None)
                if fut is not None and not fut.done():
                    fut.set_exception(RuntimeError(action.reason))
            elif isinstance(action, StartWorkers):  # the worker forks and registers at once
                for _ in range(action.count):
                    worker_id = f"{self.node_id[:8]}-w{next(self._workers)}"
                    self.scheduler.worker_starting(worker_id, action.env)
                    self.apply(self.scheduler.worker_registered(worker_id, action.env))
            elif isinstance(action, Infeasible):
                pass  # it waits in the scheduler, as on a real node
        self._mark_dirty()

    def _mark_dirty(self) -> None:
        if not self._dirty:
            self._dirty = True
            asyncio.get_running_loop().call_soon(self._report)

    def _report(self) -> None:
        self._dirty = False
        if not self.closed:
            self.gcs.h_update_resources(
                as_conn(self),
                {
                    "node_id": self.node_id,
                    "available": self.scheduler.available_float(),
                    "resources": {**self.resources, **self.scheduler.total_float()},
                    "store_used": 0,
                    "pending": self.scheduler.pending_shapes(),
                },
            )


@dataclass
class SimCluster:
    """A GcsServer with `raylets` registered, on an event loop of its own."""

    gcs: GcsServer
    loop: asyncio.AbstractEventLoop
    raylets: dict[str, SimRaylet]
    driver: SimConn

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        """Cancel what still waits (actors with no room, say) and close the loop."""
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()
        asyncio.set_event_loop(None)


def node_id_of(i: int) -> str:
    """A node id as the GCS sees them: hex, fixed width (ordering by id is ordering by i)."""
    return f"{i:08x}" + "0" * 48


def new_cluster() -> SimCluster:
    """An empty simulated cluster: the GCS, a driver connected to it, no nodes yet."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    gcs = GcsServer("/sim", b"sim-token", owns_session=False)
    gcs.actors.connect = cast(Any, sim_connect)
    driver = SimConn("driver")
    driver.peer_info = {"job_id": "01000000"}
    return SimCluster(gcs, loop, {}, driver)


def add_nodes(cluster: SimCluster, count: int, cpus: float = NODE_CPUS) -> float:
    """Register `count` nodes with the GCS; the seconds it took (handlers and the callbacks they
    schedule, view broadcast excluded: it is coalesced every 20 ms)."""
    start = len(cluster.raylets)
    raylets = [
        SimRaylet(
            cluster.gcs,
            node_id_of(i),
            {"CPU": cpus, "memory": float(NODE_MEMORY), "node:sim": 1.0},
            {"zone": f"z{i % 4}"},
        )
        for i in range(start, start + count)
    ]

    async def go() -> float:
        t0 = time.perf_counter()
        for r in raylets:
            cluster.gcs.h_register_node(as_conn(r), r.info())
            cluster.raylets[r.node_id] = r
        await asyncio.sleep(0)  # the callbacks each registration scheduled
        await asyncio.sleep(0)
        return time.perf_counter() - t0

    elapsed = cluster.run(go())
    cluster.run(asyncio.sleep(0.03))  # let the coalesced cluster view go out
    return elapsed


def _actor_payloads(i: int, owner: list, place: dict, hold: dict) -> tuple[dict, dict]:
    """register_actor and create_actor payloads as a driver sends them (decoded wire form)."""
    actor_id = i.to_bytes(16, "little")
    register = {
        "actor_id": actor_id,
        "name": None,
        "namespace": "sim",
        "get_if_exists": False,
        "detached": False,
        "max_restarts": 0,
        "owner": owner,
        "job": "01000000",
        "public": {"class_name": "Sim", "methods": ["ping"], "max_task_retries": 0},
    }
    spec = TaskSpec(i.to_bytes(24, "little"), "Sim.__init__", 0, owner, "01000000", "sim", b"k" * 20)
    spec.actor_id = actor_id
    create = {
        "actor_id": actor_id,
        "place": place,
        "res": hold,
        "strategy": None,
        "labels": None,
        "pg": None,
        "task": msgspec.to_builtins(spec),
        "creation": msgspec.to_builtins(ActorCreation(actor_id, "Sim")),
        "runtime_env": None,
    }
    return register, create


def add_actors(
    cluster: SimCluster,
    count: int,
    batch: int = 2000,
    place: dict[str, float] | None = None,
    hold: dict[str, float] | None = None,
) -> float:
    """Register and create `count` actors owned by a driver on the first node, default ones
    unless told (placed with 1 CPU, holding none); the seconds until every one is ALIVE."""
    place = {"CPU": 1} if place is None else place
    hold = {} if hold is None else hold
    gcs = cluster.gcs
    owner = [DRIVER, f"unix:///sim/{node_id_of(0)}/sockets/driver"]
    first = len(gcs.actors.actors)

    async def go() -> float:
        elapsed = 0.0
        for lo in range(first, first + count, batch):
            payloads = [
                _actor_payloads(i, owner, place, hold) for i in range(lo, min(lo + batch, first + count))
            ]
            t0 = time.perf_counter()
            waits = []
            for register, create in payloads:
                gcs.actors.h_register(as_conn(cluster.driver), register)
                waits.append(gcs.actors.h_create(as_conn(cluster.driver), create))
            for info in await asyncio.gather(*waits):
                if info["state"] != "ALIVE":
                    raise RuntimeError(f"simulated actor {info['actor_id'].hex()} is {info['state']}")
            elapsed += time.perf_counter() - t0
        return elapsed

    return cluster.run(go())


def add_groups(cluster: SimCluster, count: int, bundle_cpu: float = 0.01) -> float:
    """Create `count` placement groups of 4 bundles, alternately PACK and SPREAD; the seconds
    until all are CREATED (scheduled and committed on their nodes)."""
    pgs = cluster.gcs.pgs
    first = len(pgs.groups)

    async def go() -> float:
        t0 = time.perf_counter()
        waits = []
        for i in range(first, first + count):
            pg_id = f"{i:036x}"
            pgs.h_create(
                as_conn(cluster.driver),
                {
                    "pg_id": pg_id,
                    "strategy": "PACK" if i % 2 == 0 else "SPREAD",
                    "bundles": [{"CPU": bundle_cpu}] * 4,
                    "job": "01000000",
                    "creator": DRIVER,
                },
            )
            waits.append(pgs.h_wait(as_conn(cluster.driver), {"pg_id": pg_id}))
        done = await asyncio.gather(*(w for w in waits if not isinstance(w, bool)))
        if not all(done) or not all(w for w in waits if isinstance(w, bool)):
            raise RuntimeError("a simulated placement group was not created")
        return time.perf_counter() - t0

    return cluster.run(go())


def lease_decisions(nodes: int, rounds: int = 2000) -> tuple[int, float]:
    """One node's raylet scheduler with `nodes - 1` others in its cluster view: each round, 8
    one-CPU task leases arrive at a 4-CPU node: 4 are granted, 4 spill back to the node with
    the most free CPU, then the 4 leases return. (decisions, seconds)."""
    sched = Scheduler({"CPU": NODE_CPUS}, NODE_CPUS, node_id_of(0))
    for w in range(NODE_CPUS):
        sched.worker_starting(f"w{w}")
        sched.worker_registered(f"w{w}")
    view = {
        node_id_of(i): {
            "address": f"sim://{node_id_of(i)}",
            "resources": {"CPU": NODE_CPUS},
            "available": {"CPU": NODE_CPUS},
            "alive": True,
        }
        for i in range(1, nodes)
    }
    capacity = max(nodes - 1, 1) * NODE_CPUS  # spillbacks the view absorbs before it is refreshed
    sent = 0
    decisions = 0
    t0 = time.perf_counter()
    sched.set_cluster_view(view)
    for _ in range(rounds):
        if sent + NODE_CPUS > capacity:  # the GCS's next view: the others are free again
            sched.set_cluster_view(view)
            sent = 0
        leases = []
        for _ in range(2 * NODE_CPUS):
            _, actions = sched.request_lease("owner", {"CPU": 1})
            for a in actions:
                if isinstance(a, Grant):
                    leases.append(a.lease_id)
                    decisions += 1
                elif isinstance(a, Spillback):
                    sent += 1
                    decisions += 1
        for lease in leases:
            sched.return_lease(lease)
        sched.queue.clear()  # with a one-node view nothing could spill: drop what waits
    return decisions, time.perf_counter() - t0


def deep_size(roots: Iterable[Any], skip: Iterable[Any] = ()) -> int:
    """Bytes of the objects reachable from `roots` (each counted once), not entering `skip`
    (objects shared with the rest of the process: the GCS, connections, classes, modules)."""
    seen = {id(x) for x in skip}
    stack = list(roots)
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, SimConn, asyncio.AbstractEventLoop)):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def gcs_actor_bytes(gcs: GcsServer) -> int:
    """The GCS's actor tables: every ActorInfo with its creation spec, the name index, and what
    the manager keeps per node for placement."""
    actors = gcs.actors
    roots = [actors.actors, actors.named, actors.unplaced]
    loads = getattr(actors, "loads", None)
    if loads is not None:
        roots.append(loads)
    return deep_size(roots, skip=[gcs, actors, gcs.loop])


def run(nodes: int, actors: int, groups: int = 500, lease_rounds: int = 2000) -> dict[str, Any]:
    """One row: a fresh cluster of `nodes` nodes, `actors` actors, `groups` placement groups."""
    cluster = new_cluster()
    try:
        reg = add_nodes(cluster, nodes)
        gc.collect()
        rss0 = psutil.Process(os.getpid()).memory_info().rss
        act = add_actors(cluster, actors) if actors else 0.0
        gc.collect()
        rss1 = psutil.Process(os.getpid()).memory_info().rss
        table_bytes = gcs_actor_bytes(cluster.gcs)
        pg = add_groups(cluster, groups) if groups else 0.0
    finally:
        cluster.close()
    decisions, lease_s = lease_decisions(nodes, lease_rounds)
    return {
        "nodes": nodes,
        "actors": actors,
        "node reg (nodes/s)": nodes / reg if reg else 0.0,
        "actor placement (actors/s)": actors / act if act else 0.0,
        "raylet lease decisions/s": decisions / lease_s if lease_s else 0.0,
        "PG scheduling (groups/s)": groups / pg if pg else 0.0,
        "GCS bytes/actor": table_bytes / actors if actors else 0.0,
        "RSS bytes/actor": max(rss1 - rss0, 0) / actors if actors else 0.0,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table, COLUMNS in order."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---:|" * len(COLUMNS)]
    for row in rows:
        cells = [f"{row[c]:,.0f}" if isinstance(row[c], float) else f"{row[c]:,}" for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def actors_for(nodes: int, actors: int, per_node: int) -> int:
    """Actors simulated at a cluster size: `actors`, capped at `per_node` per node."""
    return min(actors, nodes * per_node)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m skate._sim_cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="10,100,1000", help="cluster sizes, comma separated")
    parser.add_argument("--actors", type=int, default=100_000, help="actors at the largest size")
    parser.add_argument(
        "--actors-per-node", type=int, default=100, help="at most this many actors per node (all sizes)"
    )
    parser.add_argument("--groups", type=int, default=500, help="placement groups per size")
    args = parser.parse_args(argv)
    rows = []
    for n in (int(x) for x in args.nodes.split(",")):
        rows.append(run(n, actors_for(n, args.actors, args.actors_per_node), args.groups))
        print(f"{n} nodes done", file=sys.stderr, flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
