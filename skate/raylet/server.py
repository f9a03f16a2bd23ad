"""The raylet process: one per node. Thin glue around LocalScheduler and ObjectStore.

Serves leases to owners, runs the worker pool through the zygote, owns the node's
shared-memory arena, and reports the node's resources to the GCS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import time
from typing import Any

from skate import _config, _event_loop, _gc_tuning, _ids, _labels
from skate._log_files import log_to_rotating_file
from skate._procutil import watch_parent_pipe
from skate._secure_files import read_token
from skate.core_worker.log_budget import LogBudget, dropped_notice
from skate.core_worker.plasma import ArenaMapping, arena_path, create_arena_file
from skate.exceptions import ObjectStoreFullError, RuntimeEnvSetupError
from skate.protocol import Connection, connect, listen
from skate.protocol.connection import RemoteError
from skate.protocol.latency import LatencyRecorder
from skate.raylet import introspect, memory_report
from skate.raylet.env_workers import EnvWorkers
from skate.raylet.metrics_server import MetricsServer
from skate.raylet.object_manager import ObjectManager
from skate.raylet.object_store import ObjectStore
from skate.raylet.oom_killer import monitor_memory
from skate.raylet.scheduler import (
    Grant,
    Infeasible,
    KillWorker,
    LocalScheduler,
    Reclaim,
    Rejected,
    Spillback,
    StartWorkers,
)
from skate.raylet.spill import SpillManager, make_spill_dir
from skate.raylet.zygote_link import ZygoteLink

logger = logging.getLogger("skate.raylet")

HEARTBEAT_S = float(os.environ.get("SKATE_HEARTBEAT_S", "1.0"))
# Workers of a runtime env idle this long are stopped (default-env workers are kept).
ENV_WORKER_IDLE_S = float(os.environ.get("SKATE_RUNTIME_ENV_WORKER_IDLE_S", "10"))
INFEASIBLE_GRACE_S = 0.5
GCS_RECONNECT_S = _config.GCS_RECONNECT_TIMEOUT_S
DRAIN_TIMEOUT_S = 1.0  # how long a stopping raylet waits for the GCS to take note
RETIRE_TIMEOUT_S = 2.0  # how long an idle worker has to send its last task events


class Raylet:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.node_id = args.node_id or _ids.random_id(14).hex()
        self.session_dir = args.session_dir
        self.token = read_token(self.session_dir)
        self.resources: dict[str, float] = json.loads(args.resources)
        self.capacity = int(args.object_store_memory)
        self.arena_path = arena_path(self.session_dir, self.node_id)
        self.store = ObjectStore(self.capacity)
        soft_limit = max(1, int(self.resources.get("CPU", 1)))
        self.labels = _labels.node_labels(self.node_id, json.loads(args.labels or "{}"))
        self.scheduler = LocalScheduler(self.resources, soft_limit, self.node_id, self.labels)
        self.returns_seen = 0  # the GCS's number of the last return of bundles handled here
        self.node_ip = args.node_ip
        self.address = f"unix://{self.session_dir}/sockets/raylet-{self.node_id[:8]}.sock"
        self.clients: dict[str, Connection] = {}
        self.worker_addresses: dict[str, str] = {}
        self.worker_pids: dict[str, int] = {}
        self.pid_workers: dict[int, str] = {}
        self.lease_futures: dict[int, asyncio.Future] = {}
        self.request_ids: dict[tuple[str, int], int] = {}  # (owner, owner's number) -> request id
        self.request_keys: dict[int, tuple[str, int]] = {}
        self.gcs: Connection | None = None
        self._resources_dirty = False
        self._stopping = False  # shutdown() was called: no new work, no reconnecting
        self._stopped = False  # the processes are stopped and the loop told to stop
        self.loop = asyncio.get_event_loop()
        self.zygote = ZygoteLink(self.loop, self._on_forked, self._on_worker_exit, self._on_zygote_gone)
        self.objects = ObjectManager(self)
        self._peers: dict[str, Connection] = {}
        self.envs = EnvWorkers(self)  # runtime envs: setup, and which workers run in which
        self.latency = LatencyRecorder("raylet")  # handler time of the requests served here
        self.metrics = MetricsServer(self)  # the node's Prometheus endpoint
        self.handlers = {
            "register_client": self.h_register_client,
            "request_lease": self.h_request_lease,
            "cancel_lease_request": self.h_cancel_lease_request,
            "return_lease": self.h_return_lease,
            "worker_blocked": self.h_worker_blocked,
            "worker_owns_objects": lambda c, p: self.scheduler.worker_owns_objects(p["worker_id"], p["owns"]),
            "worker_unblocked": lambda c, p: self.apply(self.scheduler.worker_unblocked(p["worker_id"])),
            "kill_worker": lambda c, p: self.kill_worker(p["worker_id"]),
            "store_create": self.h_store_create,
            "store_seal": lambda c, p: self.store.seal(p["oid"]),
            "store_get": self.h_store_get,
            "store_pull": self.h_store_pull,
            "store_release": self.h_store_release,
            "store_free": self.h_store_free,
            "worker_log": self.h_worker_log,
            "list_objects": self.h_list_objects,
            "list_workers": lambda c, p: [  # for the state API's list_workers
                {k: x.peer_info.get(k) for k in ("worker_id", "pid", "mode", "job_id", "address")}
                for x in self.clients.values()
                if not x.closed
            ],
            "store_stats": lambda c, p: self.store_stats(),
            "cluster_view": self.h_cluster_view,
            "known_nodes": lambda c, p: self.known_nodes(),
            "node_info": lambda c, p: self.node_info(),
            "shutdown": lambda c, p: self.loop.call_soon(self.shutdown),
            "node_declared_dead": self.h_node_declared_dead,
            "prepare_bundles": self.h_prepare_bundles,
            "commit_bundles": self.h_commit_bundles,
            "return_bundles": self.h_return_bundles,
            "runtime_env_stats": lambda c, p: self.envs.stats(),
        }
        self.handlers.update(self.objects.handlers() | memory_report.handlers(self))
        self.handlers.update(introspect.handlers(self.session_dir))  # logs and load, for tools

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        create_arena_file(self.arena_path, self.capacity)
        if self.args.spill_dir:  # possibly shared with other raylets: a subdirectory of our own
            spill_dir = make_spill_dir(self.args.spill_dir, f"skate-node-{self.node_id[:16]}")
        else:
            spill_dir = make_spill_dir(self.session_dir, f"spill-{self.node_id[:8]}")
        limit = int(self.args.spill_limit) if self.args.spill_limit else None
        self.spill = SpillManager(self.store, ArenaMapping(self.arena_path, self.capacity), spill_dir, limit)
        serving: dict[str, Any] = {
            "on_close": self.on_client_closed,
            "name": "raylet",
            "recorder": self.latency,
        }
        unix = await listen(self.address, self.token, self.handlers, **serving)
        bind_ip = self.args.listen_ip or self.node_ip  # e.g. 0.0.0.0, while peers dial node_ip
        tcp = await listen(f"tcp://{bind_ip}:{self.args.port}", self.token, self.handlers, **serving)
        self.listeners = [unix, tcp]
        if self.args.metrics_export_port >= 0:  # negative: no endpoint
            await self.metrics.start(bind_ip, self.args.metrics_export_port)
        port = tcp.address.rpartition(":")[2]
        self.address = f"{unix.address}|tcp://{self.node_ip}:{port}"
        await self.objects.start(self.session_dir, bind_ip, self.node_ip)
        self._start_zygote()
        self.start_workers(self.scheduler.soft_limit)
        self.gcs = await self._connect_gcs()
        self._monitor_task = asyncio.ensure_future(monitor_memory(self))
        self._heartbeat_task = asyncio.ensure_future(self._heartbeat())
        print(f"READY {self.address} {self.node_id}", flush=True)

    async def _connect_gcs(self) -> Connection:
        deadline = self.loop.time() + (
            30 if self.args.head else float(os.environ.get("SKATE_JOIN_TIMEOUT_S", "10"))
        )
        while True:
            try:
                conn = await connect(
                    self.args.gcs_address,
                    self.token,
                    self.handlers,
                    name="gcs",
                    on_close=self._on_gcs_lost,
                    recorder=self.latency,
                )
                conn.peer_info = {"worker_id": "gcs", "mode": "gcs"}
                break
            except (OSError, asyncio.TimeoutError):
                if self.loop.time() > deadline:
                    raise
                await asyncio.sleep(0.02)
        await conn.call("register_node", self.node_info())
        return conn

    async def _heartbeat(self) -> None:
        """Report resources every heartbeat period (1 s by default, shorter when `_system_config`
        shortens the node timeout): the GCS's proof that this node lives."""
        period = self.args.heartbeat_s or HEARTBEAT_S
        while not self._stopping:
            await asyncio.sleep(period)
            self._report_resources()
            if self.envs.worker_envs:
                self.apply(self.scheduler.reap_idle_env_workers(ENV_WORKER_IDLE_S))

    def _on_gcs_lost(self, conn: Connection) -> None:
        """Keep serving leases and objects, and try to reach the GCS again for a while."""
        if self._stopping:
            return
        logger.error(
            "lost the GCS: %s; reconnecting (giving up after %g s)", conn.close_reason, GCS_RECONNECT_S
        )
        self.gcs = None
        asyncio.ensure_future(self._reconnect_gcs())

    async def _reconnect_gcs(self) -> None:
        deadline = self.loop.time() + GCS_RECONNECT_S
        while not self._stopping and self.loop.time() < deadline:
            await asyncio.sleep(0.5)
            try:
                conn = await connect(
                    self.args.gcs_address,
                    self.token,
                    self.handlers,
                    name="gcs",
                    on_close=self._on_gcs_lost,
                    timeout=2,
                    recorder=self.latency,
                )
                conn.peer_info = {"worker_id": "gcs", "mode": "gcs"}
                await conn.call("register_node", self.node_info())
            except RemoteError as exc:
                if exc.kind == "NodeDeclaredDead":
                    self.h_node_declared_dead(None, {"reason": str(exc)})
                    return
                continue
            except Exception:
                continue
            self.gcs = conn
            logger.info("reconnected to the GCS")
            return
        if not self._stopping:
            logger.error("the GCS did not come back: shutting down")
            self.shutdown()

    def h_node_declared_dead(self, conn: Connection | None, p: dict) -> None:
        """The GCS declared this node dead (it was silent too long): stop, workers and all, as
        Ray's raylets do; its actors already restart elsewhere."""
        logger.error("the GCS declared this node dead (%s): shutting down", p.get("reason"))
        self.gcs = None  # no drain: the GCS knows
        self.shutdown()

    def node_info(self) -> dict:
        return {
            "node_id": self.node_id,
            "address": self.address,
            "pid": os.getpid(),
            "resources": self.total_resources(),
            "available": self.scheduler.available_float(),
            "arena_path": self.arena_path,
            "arena_capacity": self.capacity,
            "store_used": self.store.used_bytes,
            "session_dir": self.session_dir,
            "spilled_bytes": self.store.spilled_bytes,
            "restored_bytes": self.store.restored_bytes,
            "node_ip": self.node_ip,
            "is_head": bool(self.args.head),
            "labels": dict(self.labels),
            "metrics_export_port": self.metrics.port,
        }

    def shutdown(self) -> None:
        """Stop the node. The GCS hears it first (when reachable): it takes the node out of
        placement and restarts the actors here elsewhere before their workers are killed, so no
        restart is spent on a node that is going away."""
        if self._stopping:
            return
        self._stopping = True
        logger.info("raylet shutting down")
        gcs = self.gcs
        if gcs is not None and not gcs.closed and self.loop.is_running():
            asyncio.ensure_future(self._drain_then_stop(gcs))
        else:
            self._stop_now()

    async def _drain_then_stop(self, gcs: Connection) -> None:
        try:
            await asyncio.wait_for(gcs.call("drain_node", {"node_id": self.node_id}), DRAIN_TIMEOUT_S)
        except Exception as exc:  # the GCS is gone or slow: stop anyway
            logger.info("could not tell the GCS this node is stopping: %r", exc)
        self._stop_now()

    def _stop_now(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.zygote.stop()
        try:
            os.unlink(self.arena_path)
        except OSError:
            pass
        if getattr(self, "spill", None) is not None:
            self.spill.close()
        self.objects.close()
        self.metrics.close()
        for listener in getattr(self, "listeners", []):
            try:
                listener.close()
            except Exception:
                pass
        self.loop.stop()

    # -- workers ----------------------------------------------------------------------
    def _start_zygote(self) -> None:
        info = {
            "node_ip": self.node_ip,
            "session_dir": self.session_dir,
            "gcs_address": self.args.gcs_address,
            "raylet_address": self.address,
            "node_id": self.node_id,
            "logging_level": self.args.logging_level,
        }
        self.zygote.start(self.session_dir, self.node_id, info)

    def _on_zygote_gone(self, why: str) -> None:
        if not self._stopping:
            logger.error("%s; shutting down", why)
            self.shutdown()

    def _on_forked(self, wid: str, pid: int) -> None:
        self.worker_pids[wid] = pid
        self.pid_workers[pid] = wid

    def _on_worker_exit(self, pid: int, code: str) -> None:
        wid = self.pid_workers.pop(pid, None)
        logger.info("worker %s (pid %s) exited with code %s", (wid or "?")[:8], pid, code)
        if wid is not None:
            self.worker_pids.pop(wid, None)
            self.envs.worker_gone(wid)
            if wid not in self.clients:  # died before or without its connection closing
                self.apply(self.scheduler.worker_died(wid))

    def start_workers(self, count: int, env: str = "") -> None:
        for _ in range(count):
            wid = _ids.random_id(14).hex()
            self.scheduler.worker_starting(wid, env)
            if env:
                self.envs.start_worker(wid, env)
            else:
                self.zygote.send(f"fork {wid}")

    def kill_worker(self, worker_id: str, retire: bool = False) -> None:
        """Kill a worker's process; with `retire` (an idle worker the pool no longer needs),
        it first sends what its task event buffer holds (see `_retire`)."""
        pid = self.worker_pids.get(worker_id)
        if pid is None and worker_id not in self.clients and self.envs.drop_unforked(worker_id):
            return  # never forked: nothing to kill
        logger.debug("kill worker %s pid %s", worker_id[:8], pid)
        if pid is None:
            return
        conn = self.clients.get(worker_id)
        if retire and conn is not None and not conn.closed:
            asyncio.ensure_future(self._retire(worker_id, pid, conn))
        else:
            self.zygote.send(f"kill {pid}")

    async def _retire(self, worker_id: str, pid: int, conn: Connection) -> None:
        """Ask the idle worker to send its last task events (the rows of the calls it ran
        since its last send would die with it), then kill it: once it answered, or after
        RETIRE_TIMEOUT_S (a worker that cannot answer goes all the same)."""
        try:
            await asyncio.wait_for(conn.call("retire"), RETIRE_TIMEOUT_S)
        except Exception as exc:  # (an older worker, one that died meanwhile, or a slow one)
            logger.debug("worker %s did not retire: %r", worker_id[:8], exc)
        if self.worker_pids.get(worker_id) == pid and not self._stopped:
            self.zygote.send(f"kill {pid}")

    # -- actions ----------------------------------------------------------------------
    def _forget_request(self, request_id: int) -> None:
        """Drop the owner's name for a lease request that is granted or spilled back."""
        key = self.request_keys.pop(request_id, None)
        if key is not None:
            self.request_ids.pop(key, None)

    def apply(self, actions: list) -> None:
        for action in actions:
            if isinstance(action, Grant):
                fut = self.lease_futures.pop(action.request.request_id, None)
                self._forget_request(action.request.request_id)
                if fut is None or fut.done():
                    self.apply(self.scheduler.return_lease(action.lease_id))
                    continue
                logger.debug(
                    "lease %d: worker %s to %s",
                    action.lease_id,
                    action.worker_id[:8],
                    action.request.owner[:8],
                )
                fut.set_result(
                    {
                        "lease_id": action.lease_id,
                        "worker_id": action.worker_id,
                        "address": self.worker_addresses[action.worker_id],
                        "gpu_ids": action.gpu_ids,
                    }
                )
            elif isinstance(action, Spillback):
                fut = self.lease_futures.pop(action.request.request_id, None)
                self._forget_request(action.request.request_id)
                if fut is not None and not fut.done():
                    fut.set_result({"spillback": {"node_id": action.node_id, "address": action.address}})
            elif isinstance(action, StartWorkers):
                logger.info(
                    "starting %d workers (%d queued, %d workers)",
                    action.count,
                    len(self.scheduler.queue),
                    len(self.scheduler.workers),
                )
                self.start_workers(action.count, action.env)
            elif isinstance(action, KillWorker):
                logger.info("%s worker %s", "retiring" if action.retire else "killing", action.worker_id[:8])
                self.kill_worker(action.worker_id, action.retire)
            elif isinstance(action, Infeasible):
                # Told after a grace period: a node that has the resources may have just joined
                # and the cluster view not reached us yet.
                self.loop.call_later(INFEASIBLE_GRACE_S, self._report_infeasible, action.request)
            elif isinstance(action, Rejected):
                fut = self.lease_futures.pop(action.request.request_id, None)
                self._forget_request(action.request.request_id)
                if fut is not None and not fut.done():
                    error_type = RuntimeEnvSetupError if action.runtime_env_failed else RuntimeError
                    fut.set_exception(error_type(action.reason))
            elif isinstance(action, Reclaim):
                for owner in action.owners:
                    conn = self.clients.get(owner)
                    if conn is not None:
                        conn.notify("raylet_reclaim", {})
        self._mark_resources_dirty()

    def _report_infeasible(self, request) -> None:
        if request not in self.scheduler.infeasible:
            return  # placed meanwhile
        conn = self.clients.get(request.owner)
        if conn is not None:
            shape = {k: v / 10_000 for k, v in request.shape.items()}
            payload: dict = {"shape": shape, "total": self.resources}
            if request.labels:
                payload["labels"] = _labels.describe(request.labels)
            conn.notify("infeasible", payload)

    def _mark_resources_dirty(self) -> None:
        if not self._resources_dirty:
            self._resources_dirty = True
            self.loop.call_soon(self._report_resources)

    def _report_resources(self) -> None:
        self._resources_dirty = False
        if self.gcs is not None and not self.gcs.closed:
            self.gcs.notify(
                "update_resources",
                {
                    "node_id": self.node_id,
                    "available": self.scheduler.available_float(),
                    "resources": self.total_resources(),
                    "store_used": self.store.used_bytes,
                    "spilled_bytes": self.store.spilled_bytes,
                    "restored_bytes": self.store.restored_bytes,
                    "pending": self.scheduler.pending_shapes(),
                    "returns_seen": self.returns_seen,
                },
            )

    def total_resources(self) -> dict[str, float]:
        """The node's resources, with the bundle resources of the placement groups it holds."""
        return {**self.resources, **self.scheduler.total_float()}

    # -- placement-group bundles --------------------------------------------------------
    def h_prepare_bundles(self, conn: Connection, p: dict) -> bool:
        """Reserve bundles of a group (all or none); with `commit`, commit them at once (the
        GCS does that when this node is the only one involved: one round trip)."""
        group = p["pg_id"]
        ok = self.scheduler.prepare_bundles(group, [(i, shape) for i, shape in p["bundles"]])
        if ok and p.get("commit"):
            self.apply(self.scheduler.commit_bundles(group, [i for i, _ in p["bundles"]]))
        self._mark_resources_dirty()
        return ok

    def h_commit_bundles(self, conn: Connection, p: dict) -> bool:
        self.apply(self.scheduler.commit_bundles(p["pg_id"], p["indices"]))
        return True

    def h_return_bundles(self, conn: Connection, p: dict) -> bool:
        """Give back a group's bundles here (rollback or removal): what ran in them is killed."""
        self.apply(self.scheduler.return_bundles(p["pg_id"], p.get("indices"), bool(p.get("removed"))))
        if type(p.get("seq")) is int:  # reports carry it from now on (the GCS's `report_is_stale`)
            self.returns_seen = p["seq"]
            self._mark_resources_dirty()  # and the next goes now
        return True

    # -- handlers ---------------------------------------------------------------------
    def h_register_client(self, conn: Connection, p: dict) -> dict:
        wid = p["worker_id"]
        logger.info("%s %s registered (pid %s)", p.get("mode"), wid[:8], p.get("pid"))
        conn.peer_info = p
        self.clients[wid] = conn
        if p.get("mode") == "worker":
            self.worker_addresses[wid] = p["address"]
            self.apply(self.scheduler.worker_registered(wid, self.envs.worker_envs.get(wid, "")))
        return {"arena_path": self.arena_path, "arena_capacity": self.capacity, "node_id": self.node_id}

    def on_client_closed(self, conn: Connection) -> None:
        wid = conn.peer_info.get("worker_id")
        if wid is None or self._stopping:
            return
        logger.info("%s %s disconnected: %s", conn.peer_info.get("mode"), wid[:8], conn.close_reason)
        self.clients.pop(wid, None)
        self.worker_addresses.pop(wid, None)
        for key in [k for k in self.request_ids if k[0] == wid]:
            req_id = self.request_ids.pop(key)
            self.request_keys.pop(req_id, None)
            fut = self.lease_futures.pop(req_id, None)
            if fut is not None and not fut.done():
                fut.cancel()
        self.spill.release_files(self.store.client_gone(wid))
        if self.gcs is not None and not self.gcs.closed:
            self.gcs.notify("client_died", {"worker_id": wid})
        actions = self.scheduler.worker_died(wid) if conn.peer_info.get("mode") == "worker" else []
        self.apply(actions + self.scheduler.owner_gone(wid))
        if wid in self.worker_pids:
            self.kill_worker(wid)

    def h_request_lease(self, conn: Connection, p: dict):
        owner = conn.peer_info.get("worker_id")
        if owner is None:
            raise PermissionError("register_client first")
        req, actions = self.scheduler.request_lease(
            owner,
            p["shape"],
            p.get("hold"),
            spill_ok=not p.get("spilled"),
            spread=p.get("strategy") == "SPREAD",
            actor=bool(p.get("actor")),
            labels=_labels.from_wire(p.get("labels")),
            env=self.envs.env_of(p.get("runtime_env")),
        )
        fut = self.loop.create_future()
        self.lease_futures[req.request_id] = fut
        self.request_ids[(owner, p["rid"])] = req.request_id
        self.request_keys[req.request_id] = (owner, p["rid"])
        self.apply(actions)
        return fut

    def h_cancel_lease_request(self, conn: Connection, p: dict) -> None:
        owner = conn.peer_info.get("worker_id")
        if owner is None:  # not registered: it cannot have asked for a lease
            return
        req_id = self.request_ids.pop((owner, p["rid"]), None)
        if req_id is None:
            return
        self.request_keys.pop(req_id, None)
        self.scheduler.cancel_request(req_id)
        fut = self.lease_futures.pop(req_id, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def h_worker_blocked(self, conn: Connection, p: dict) -> None:
        actions = self.scheduler.worker_blocked(p["worker_id"])
        logger.debug("worker %s blocked: %s", p["worker_id"][:8], actions)
        self.apply(actions)

    def h_cluster_view(self, conn: Connection, view: dict) -> None:
        for node_id, node in view.items():
            if not node["alive"]:
                self.objects.node_gone(node_id)
        self.apply(self.scheduler.set_cluster_view(view))

    def known_nodes(self) -> list[str]:
        """The nodes this raylet believes alive (itself and its cluster view), read-only: lets
        callers wait until a node's arrival or death has reached this raylet."""
        return sorted({self.node_id, *self.scheduler.cluster})

    def h_return_lease(self, conn: Connection, p: dict) -> None:
        kill = p.get("kill")  # True, or "retire" (max_calls reached: see KillWorker)
        self.apply(self.scheduler.return_lease(p["lease_id"], kill=bool(kill), retire=kill == "retire"))

    def h_store_create(self, conn: Connection, p: dict) -> Any:
        """Allocate an object for its creator: at once when it fits, else (spilling others
        first) from a task. No resource report for this: the store's use is news, not a
        scheduling input, and rides on the next heartbeat (a report per create and free cost
        the raylet and the GCS more CPU than the object when objects stream through)."""
        try:
            return {"offset": self.store.create(p["oid"], p["size"], p["owner"])}
        except ObjectStoreFullError:
            return self._store_create_spilling(p)

    async def _store_create_spilling(self, p: dict) -> dict:
        return {"offset": await self.spill.create(p["oid"], p["size"], p["owner"])}

    def h_store_get(self, conn: Connection, p: dict) -> Any:
        """Pin objects for a reader: at once when all are in memory here, else from a task that
        restores spilled ones and pulls those held on other nodes."""
        client = conn.peer_info.get("worker_id", "")
        store = self.store
        if all(store.status(oid) == "memory" for oid in p["oids"]):
            return [store.get(oid, client) for oid in p["oids"]]
        return self._store_get_slow(client, p)

    async def _store_get_slow(self, client: str, p: dict) -> list:
        sources = p.get("sources") or {}
        out = []
        for oid in p["oids"]:
            status = self.store.status(oid)
            if status == "spilled":
                await self.spill.ensure_in_memory(oid)
            elif status == "missing" and sources.get(oid) not in (None, self.node_id):
                await self.objects.pull(oid, sources[oid])
            out.append(self.store.get(oid, client))
        return out

    async def h_store_pull(self, conn: Connection, p: dict) -> list[bool]:
        """Copy objects held on other nodes here, without pinning them (wait(fetch_local=True))."""
        sources = p["sources"]
        return list(await asyncio.gather(*(self.objects.pull(oid, node) for oid, node in sources.items())))

    def node_address(self, node_id: str) -> str | None:
        entry = self.scheduler.cluster.get(node_id)
        return entry[2] if entry else None

    async def peer(self, address: str) -> Connection:
        """A cached connection to another node's raylet."""
        conn = self._peers.get(address)
        if conn is None or conn.closed:
            name = f"raylet-peer {address[-21:]}"
            conn = await connect(address, self.token, self.handlers, name=name, recorder=self.latency)
            conn.peer_info = {"worker_id": "peer", "mode": "peer"}
            self._peers[address] = conn
        return conn

    def h_store_release(self, conn: Connection, p: dict) -> None:
        client = conn.peer_info.get("worker_id", "")
        for oid in p["oids"]:
            self.spill.release_files(self.store.release(oid, client))

    def h_store_free(self, conn: Connection, p: dict) -> None:
        """The owner freed these objects: here, and (through the object manager) everywhere."""
        self.objects.free(p["oids"])  # the store's use is reported by the heartbeat

    def store_stats(self) -> dict:
        store = self.store
        return {
            "node_id": self.node_id,
            "used_bytes": store.used_bytes,
            "capacity_bytes": store.capacity,
            "num_objects": len(store.objects),
            "num_spilled": store.spilled_objects(),
            "spilled_bytes": store.spilled_bytes,
            "restored_bytes": store.restored_bytes,
            "spill_disk_bytes": self.spill.disk_bytes,
            "spill_dir": self.spill.directory,
        }

    async def h_list_objects(self, conn: Connection, p: dict) -> dict:
        """Every object referred to by a process of this node, and where its bytes are."""
        clients = [c for c in self.clients.values() if not c.closed]
        replies = await asyncio.gather(
            *(asyncio.wait_for(c.call("object_table"), 5) for c in clients), return_exceptions=True
        )
        rows = [row for r in replies if isinstance(r, list) for row in r]
        for row in rows:
            if row["where"] == "store":
                status = self.store.status(bytes.fromhex(row["object_id"]))
                row["where"] = {"memory": "in shared memory", "spilled": "spilled to disk"}.get(
                    status, status
                )
        return {"objects": rows, "store": self.store_stats()}

    def h_worker_log(self, conn: Connection, p: dict) -> None:
        """Forward a worker's output to the GCS, within a per-connection line budget (twice
        the worker's own, which a well-behaved worker never reaches): a worker that bypasses
        its LogStream cannot flood the GCS and drivers."""
        lines = p.get("lines")
        if self.gcs is None or not isinstance(lines, list):
            return
        budget = conn.peer_info.get("log_budget")
        now = time.monotonic()
        if budget is None:
            budget = LogBudget(2 * _config.LOG_LINES_PER_SECOND, 2 * _config.LOG_LINES_BURST, now)
            conn.peer_info["log_budget"] = budget
        allowed = budget.admit(len(lines), now)
        if allowed < len(lines):
            p = dict(p, lines=lines[:allowed])
        elif budget.dropped:  # room again: say what was lost before
            where = f"the worker's log files in {os.path.join(self.session_dir, 'logs')}"
            p = dict(p, lines=[*lines, dropped_notice(budget.take_dropped(), budget.rate, where)])
        if p["lines"]:
            self.gcs.notify("publish_logs", p)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="skate-raylet")
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--resources", required=True)
    parser.add_argument("--labels", default="{}", help="the node's custom labels, as JSON")
    parser.add_argument("--object-store-memory", required=True)
    parser.add_argument("--node-id", default="")
    parser.add_argument("--spill-dir", default="")
    parser.add_argument("--node-ip", default="127.0.0.1")
    parser.add_argument("--head", action="store_true")
    parser.add_argument("--listen-ip", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--metrics-export-port", type=int, default=0, help="the Prometheus endpoint's port (0: any, -1: none)"
    )
    parser.add_argument("--spill-limit", default="")
    parser.add_argument("--watch-fd", type=int, default=-1)
    parser.add_argument("--logging-level", type=int, default=logging.INFO)
    parser.add_argument("--heartbeat-s", type=float, default=None)
    args = parser.parse_args(argv)
    log_to_rotating_file(os.path.join(args.session_dir, "logs", "raylet.log"), args.logging_level)
    loop = _event_loop.new_event_loop()
    asyncio.set_event_loop(loop)
    raylet = Raylet(args)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, raylet.shutdown)
    parent_gone: list[bool] = []

    def on_parent_gone() -> None:
        parent_gone.append(True)
        raylet.shutdown()

    if args.watch_fd >= 0:
        watch_parent_pipe(loop, args.watch_fd, on_parent_gone)
    try:
        loop.run_until_complete(raylet.start())
        _gc_tuning.tune(own_process=True)
        if not raylet._stopped:  # a shutdown while starting may have consumed loop.stop()
            loop.run_forever()
    except BaseException:
        logger.exception("raylet failed")
        raylet._stopping = True
        raylet._stop_now()
        raise
    finally:
        try:
            os.unlink(raylet.arena_path)
        except OSError:
            pass
        if parent_gone and not args.head:
            # The process that owned this worker node died: nobody else will remove its files
            # (a head's GCS does that for the head).
            logging.shutdown()
            shutil.rmtree(args.session_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
