"""The GCS's actor directory: names per namespace, placement, creation, restarts, death.

An actor moves PENDING -> ALIVE -> (RESTARTING -> ALIVE)* -> DEAD. The GCS leases a worker
for it from a raylet, runs its constructor there and keeps a connection to it: when that
connection breaks the actor is dead, and is restarted while max_restarts allows.
Callers long-poll `get_actor_info` for the address of the incarnation they can use.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

from skate._labels import describe as describe_labels
from skate._labels import from_wire
from skate.protocol import Connection, connect
from skate.protocol.connection import RemoteError
from skate.raylet import resources as res

logger = logging.getLogger("skate.gcs.actors")

PENDING, ALIVE, RESTARTING, DEAD = "PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD"


@dataclass
class ActorInfo:
    actor_id: bytes
    name: str | None
    namespace: str
    detached: bool
    max_restarts: int
    owner: list
    job: str
    public: dict
    state: str = PENDING
    spec: dict | None = None
    address: str | None = None
    worker_id: str | None = None
    node_id: str | None = None
    pid: int | None = None
    incarnation: int = -1
    num_restarts: int = 0
    no_restart: bool = False
    death_cause: str = ""
    runtime_env_failed: bool = False  # it died because its runtime env could not be set up
    conn: Connection | None = None
    lease: tuple | None = None  # (node_id, lease_id)
    target_node: str | None = None  # where it is placed (set before it is alive: counts as load)
    waiters: list = field(default_factory=list)

    def describe(self) -> dict:
        return {
            "actor_id": self.actor_id,
            "name": self.name,
            "namespace": self.namespace,
            "state": self.state,
            "address": self.address,
            "worker_id": self.worker_id,
            "node_id": self.node_id,
            "pid": self.pid,
            "incarnation": self.incarnation,
            "num_restarts": self.num_restarts,
            "death_cause": self.death_cause,
            "runtime_env_failed": self.runtime_env_failed,
            "detached": self.detached,
            "owner": self.owner,
            "job": self.job,
            "class_name": self.public.get("class_name"),
            "methods": self.public.get("methods"),
            "max_task_retries": self.public.get("max_task_retries", 0),
        }


class ActorManager:
    def __init__(self, gcs: Any):
        self.gcs = gcs
        self.actors: dict[bytes, ActorInfo] = {}
        # The actors not dead yet (insertion ordered), a subset of `actors`, which keeps the dead
        # too: the scans made per placement, per dead worker or driver and per dead node walk
        # these, not every actor the cluster ever had (10,000 actors created and killed in
        # turn made each creation and each death O(all actors so far): quadratic).
        self.live: dict[bytes, ActorInfo] = {}
        self.named: dict[tuple[str, str], bytes] = {}
        self._rids = itertools.count(1)
        self.unplaced: list[ActorInfo] = []  # actors waiting for a node that can host them
        # Each live actor sent to a node, as counted in the placement index's load:
        # actor id -> (node, placement shape, hold), in fixed point.
        self._counted: dict[bytes, tuple[str, dict[str, int], dict[str, int]]] = {}
        # How the GCS reaches an actor's worker: the one seam the in-process cluster simulator
        # (skate._sim_cluster) replaces, so it drives this manager without sockets.
        self.connect = connect

    def retry_unplaced(self) -> None:
        """A node joined: try again to place actors no node could host."""
        waiting, self.unplaced = self.unplaced, []
        for info in waiting:
            if info.state != DEAD:
                asyncio.ensure_future(self._start(info))

    def handlers(self) -> dict:
        return {
            "register_actor": self.h_register,
            "create_actor": self.h_create,
            "get_actor_info": self.h_get_info,
            "get_named_actor": self.h_get_named,
            "list_named_actors": self.h_list_named,
            "list_actors": lambda c, p: [a.describe() for a in self.actors.values()],
            "kill_actor": self.h_kill,
            "actor_exiting": self.h_exiting,
            "client_died": self.h_client_died,
        }

    # -- registration and creation ----------------------------------------------------
    def h_register(self, conn: Connection, p: dict) -> dict:
        name, namespace = p.get("name"), p["namespace"]
        if name:
            existing = self.actors.get(self.named.get((namespace, name), b""))
            if existing is not None and existing.state != DEAD:
                if p.get("get_if_exists"):
                    return {"created": False, "info": existing.describe()}
                raise ValueError(
                    f"The name {name} (namespace={namespace}) is already taken. Please use a different "
                    f"name or get the existing actor using get_actor('{name}', namespace='{namespace}')."
                )
        info = ActorInfo(
            p["actor_id"],
            name,
            namespace,
            bool(p.get("detached")),
            int(p.get("max_restarts", 0)),
            p["owner"],
            p.get("job") or "",
            p.get("public") or {},
        )
        self.gcs.tables.save_actor(info)  # durable before the reply (gcs.persistence)
        self.add(info)
        if name:
            self.named[(namespace, name)] = info.actor_id
        return {"created": True}

    def add(self, info: ActorInfo) -> None:
        """Enter an actor in the tables (registered now, or read back by recovery)."""
        self.actors[info.actor_id] = info
        if info.state != DEAD:
            self.live[info.actor_id] = info

    def h_create(self, conn: Connection, spec: dict):
        """Start the actor; the reply comes once it is alive or dead (its first incarnation)."""
        info = self.actors.get(spec["actor_id"])
        if info is None or info.state == DEAD:
            return None
        info.spec = spec
        self._count(info)
        self.gcs.tables.save_actor(info)
        if spec.get("pg") and self.gcs.pgs.is_removed(spec["pg"]):
            info.no_restart = True
            self._set_dead(info, f"its placement group {spec['pg']} was removed")
            return info.describe()
        asyncio.ensure_future(self._start(info))
        fut = asyncio.get_running_loop().create_future()
        info.waiters.append((fut, -1))
        return fut

    async def _start(self, info: ActorInfo) -> None:
        """Lease a worker for the actor and run its constructor there."""
        spec = info.spec
        if spec is None:  # set when the creation call arrives, before this runs
            raise RuntimeError(f"actor {info.actor_id.hex()} has no creation call to run")
        self.set_target(info, None)
        owner_address = info.owner[1] if info.owner and len(info.owner) > 1 else ""
        node_id, node_conn = self.gcs.pick_node(
            spec["place"],
            spec.get("strategy"),
            preferred=self.gcs.node_of_address(owner_address or ""),
            labels=spec.get("labels"),
        )
        if node_conn is None:
            # Like a task, it waits for a node that can host it (one may join).
            logger.warning(
                "actor %s is pending: no alive node has %s (%s)",
                info.actor_id.hex(),
                spec["place"],
                describe_labels(from_wire(spec.get("labels"))),
            )
            self.unplaced.append(info)
            return
        self.set_target(info, node_id)
        try:
            request = {"rid": next(self._rids), "shape": spec["place"], "hold": spec["res"], "actor": True}
            if spec.get("labels"):
                request["labels"] = spec["labels"]
            if spec.get("runtime_env"):
                request["runtime_env"] = spec["runtime_env"]
            grant = await node_conn.call("request_lease", request)
            if grant is not None and "spillback" in grant:
                # The node had no room after all and named one that has: go there, once.
                node_id = grant["spillback"]["node_id"]
                node_conn = self.gcs.node_conns.get(node_id)
                if node_conn is None or node_conn.closed:
                    raise ConnectionError(f"node {node_id[:12]} is gone")
                self.set_target(info, node_id)
                grant = await node_conn.call("request_lease", dict(request, spilled=True))
            if grant is None:
                self._set_dead(info, "its lease request was cancelled")
                return
            if info.state == DEAD:  # killed while waiting for a worker
                node_conn.notify("return_lease", {"lease_id": grant["lease_id"], "kill": True})
                return
            info.lease = (node_id, grant["lease_id"])
            conn = await self.connect(
                grant["address"], self.gcs.token, {}, name=f"actor {info.actor_id.hex()[:8]}"
            )
            reply = await conn.call(
                "create_actor",
                dict(
                    spec, restarts=info.num_restarts, actor_id=info.actor_id, gpus=grant.get("gpu_ids") or []
                ),
            )
        except Exception as exc:
            if isinstance(exc, RemoteError) and exc.kind == "RuntimeEnvSetupError":
                # Its env cannot be built: no restart would help (as Ray, it dies at once).
                info.no_restart = True
                info.runtime_env_failed = True
                self._set_dead(info, f"its runtime env failed to set up: {exc.message}")
                return
            if info.state != DEAD and not self.gcs.node_alive(node_id):
                # The node went away under the attempt: not the actor's failure, so no restart
                # is spent; place it again on the nodes that remain.
                logger.info(
                    "node %s went away while starting actor %s: placing it again",
                    node_id[:12],
                    info.actor_id.hex(),
                )
                info.lease = None
                asyncio.ensure_future(self._start(info))
                return
            logger.warning("starting actor %s failed: %s", info.actor_id.hex(), exc)
            self._on_worker_lost(info, f"its worker failed while starting: {exc}")
            return
        if reply.get("error"):
            conn.close("constructor failed")
            node_conn.notify("return_lease", {"lease_id": grant["lease_id"], "kill": True})
            info.lease = None
            info.no_restart = True
            self._set_dead(info, f"The actor's constructor raised an exception:\n{reply['error']}")
            return
        if info.state == DEAD:
            conn.close("killed")
            node_conn.notify("return_lease", {"lease_id": grant["lease_id"], "kill": True})
            info.lease = None
            return
        info.conn = conn
        info.address = grant["address"]
        info.worker_id = grant["worker_id"]
        info.node_id = node_id
        info.pid = reply.get("pid")
        info.incarnation += 1
        info.state = ALIVE
        self.gcs.tables.save_actor(info)
        conn._on_close = lambda c, i=info: self._on_worker_lost(i, "the actor's worker process died")
        self._wake(info)

    def _on_worker_lost(self, info: ActorInfo, cause: str) -> None:
        if info.state == DEAD:
            return
        info.conn = None
        info.address = None
        self._return_lease(info)
        can_restart = not info.no_restart and (
            info.max_restarts == -1 or info.num_restarts < info.max_restarts
        )
        if can_restart and info.spec is not None:
            info.num_restarts += 1
            info.state = RESTARTING
            self.gcs.tables.save_actor(info)
            logger.info("restarting actor %s (%d so far)", info.actor_id.hex(), info.num_restarts)
            asyncio.ensure_future(self._start(info))
            return
        self._set_dead(info, info.death_cause or cause)

    def _return_lease(self, info: ActorInfo) -> None:
        if info.lease is None:
            return
        node_conn = self.gcs.node_conns.get(info.lease[0])
        if node_conn is not None and not node_conn.closed:
            node_conn.notify("return_lease", {"lease_id": info.lease[1], "kill": True})
        info.lease = None

    def _set_dead(self, info: ActorInfo, cause: str) -> None:
        info.state = DEAD
        self._count(info)
        info.death_cause = info.death_cause or cause
        info.address = None
        # A dead actor never runs its creation call again: its spec (arguments, env, shapes:
        # most of what a dead actor's record weighs) goes, and so does its place among the live.
        info.spec = None
        self.live.pop(info.actor_id, None)
        if info.conn is not None:
            conn, info.conn = info.conn, None
            conn._on_close = None
            conn.close("actor dead")
        self._return_lease(info)
        self._release_name(info)
        self.gcs.tables.save_actor(info)
        self._wake(info)

    def _release_name(self, info: ActorInfo) -> None:
        """Free the actor's name for a new actor (once: a newer holder of the name keeps it)."""
        if info.name and self.named.get((info.namespace, info.name)) == info.actor_id:
            del self.named[(info.namespace, info.name)]

    def _wake(self, info: ActorInfo) -> None:
        waiters, info.waiters = info.waiters, []
        for fut, not_incarnation in waiters:
            if fut.done():
                continue
            if info.state == DEAD or (info.state == ALIVE and info.incarnation != not_incarnation):
                fut.set_result(info.describe())
            else:
                info.waiters.append((fut, not_incarnation))

    def set_target(self, info: ActorInfo, node_id: str | None) -> None:
        """The node the actor is sent to (None: none yet); it counts as load there from now on."""
        info.target_node = node_id
        self._count(info)

    def _count(self, info: ActorInfo) -> None:
        """Count the actor in the placement index as it is now: at its placement shape and hold
        on its target node while it is not dead, nowhere otherwise."""
        index = self.gcs.placement
        old = self._counted.pop(info.actor_id, None)
        if old is not None:
            index.remove_actor(*old)
        if info.state != DEAD and info.target_node is not None and info.spec is not None:
            entry = (info.target_node, res.to_fixed(info.spec["place"]), res.to_fixed(info.spec["res"]))
            self._counted[info.actor_id] = entry
            index.add_actor(*entry)

    def recount(self) -> None:
        """Count every actor again (the table was loaded as a whole, after a GCS restart)."""
        for info in self.actors.values():
            self._count(info)

    # -- queries ----------------------------------------------------------------------
    def h_get_info(self, conn: Connection, p: dict):
        info = self.actors.get(p["actor_id"])
        if info is None:
            return None
        not_incarnation = p.get("not", -2)
        if (
            not p.get("wait")
            or info.state == DEAD
            or (info.state == ALIVE and info.incarnation != not_incarnation)
        ):
            return info.describe()
        fut = asyncio.get_running_loop().create_future()
        info.waiters.append((fut, not_incarnation))
        return fut

    def h_get_named(self, conn: Connection, p: dict):
        aid = self.named.get((p["namespace"], p["name"]))
        info = self.actors.get(aid) if aid else None
        if info is None or info.state == DEAD:
            return None
        return info.describe()

    def h_list_named(self, conn: Connection, p: dict) -> list:
        out: list[Any] = []
        for (ns, name), aid in self.named.items():
            if self.actors[aid].state == DEAD:
                continue
            if p.get("all_namespaces"):
                out.append({"name": name, "namespace": ns})
            elif ns == p.get("namespace"):
                out.append(name)
        return out

    # -- death ------------------------------------------------------------------------
    def h_kill(self, conn: Connection, p: dict) -> bool:
        info = self.actors.get(p["actor_id"])
        if info is None or info.state == DEAD:
            return False
        reason = p.get("reason")
        if p.get("no_restart", True):
            info.no_restart = True
            if reason == "out_of_scope":
                info.death_cause = "all references to the actor were removed"
            elif reason:
                info.death_cause = reason
            else:
                info.death_cause = "the actor was killed by kill()"
            # The name is free when kill() returns (Ray's semantics), not when the worker is
            # gone: the caller may create a new actor of that name right away.
            self._release_name(info)
            self.gcs.tables.save_actor(info)
        if info.state in (PENDING, RESTARTING) and info.conn is None:
            if info.no_restart:
                self._set_dead(info, info.death_cause)
            return True
        self._kill_worker(info)
        return True

    def _kill_worker(self, info: ActorInfo) -> None:
        node_conn = self.gcs.node_conns.get(info.node_id or "")
        if node_conn is not None and not node_conn.closed and info.worker_id:
            node_conn.notify("kill_worker", {"worker_id": info.worker_id})
        elif info.conn is not None:
            info.conn.close("killed")

    def group_removed(self, pg_id: str) -> None:
        """A placement group was removed: its actors die (no restart), as in Ray."""
        for info in list(self.live.values()):
            if info.state == DEAD or info.spec is None or info.spec.get("pg") != pg_id:
                continue
            info.no_restart = True
            info.death_cause = f"its placement group {pg_id} was removed"
            self._release_name(info)
            if info.conn is None:
                self._set_dead(info, info.death_cause)
            else:
                self._kill_worker(info)

    def h_exiting(self, conn: Connection, p: dict) -> None:
        info = self.actors.get(p["actor_id"])
        if info is not None:
            info.no_restart = True
            info.death_cause = "the actor exited by calling exit_actor()"
            self.gcs.tables.save_actor(info)

    def node_dead(self, node_id: str) -> None:
        """Actors on a dead node restart elsewhere (or die) even if no connection noticed yet."""
        for info in list(self.live.values()):
            if info.node_id == node_id and info.state == ALIVE:
                conn, info.conn = info.conn, None
                if conn is not None:
                    conn._on_close = None
                    conn.close("node dead")
                info.lease = None
                self._on_worker_lost(info, f"the actor's node {node_id[:12]} died")

    def h_client_died(self, conn: Connection, p: dict) -> None:
        """A worker or driver is gone: the non-detached actors it owned go too."""
        self.owner_gone(worker_id=p["worker_id"])

    def owner_gone(self, worker_id: str | None = None, job: str | None = None) -> None:
        for info in list(self.live.values()):
            if info.detached or info.state == DEAD:
                continue
            if (worker_id is not None and info.owner and info.owner[0] == worker_id) or (
                job is not None and info.job == job
            ):
                info.no_restart = True
                info.death_cause = info.death_cause or "its owner died"
                if info.conn is None:
                    self._set_dead(info, info.death_cause)
                else:
                    self._kill_worker(info)
