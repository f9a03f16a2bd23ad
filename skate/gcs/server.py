"""The GCS process: node table, job table, internal key-value store, log fan-out."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import time
import uuid
from typing import Any

import psutil

from skate import _config, _event_loop, _gc_tuning
from skate._labels import from_wire
from skate._labels import matches as label_matches
from skate._log_files import log_to_rotating_file
from skate._procutil import watch_parent_pipe
from skate._secure_files import read_token
from skate.exceptions import GcsStorageError
from skate.gcs.actor_manager import ActorManager
from skate.gcs.kv_store import KvStore, Namespace
from skate.gcs.kv_waiters import KvWaiters
from skate.gcs.persistence import GcsTables
from skate.gcs.placement import SPREAD_THRESHOLD, NodeLoad, PlacementIndex, choose_node
from skate.gcs.placement_group_manager import PlacementGroupManager, report_is_stale
from skate.gcs.recovery import gcs_info, open_tables, reattach_job, recover
from skate.gcs.storage import GcsStorage, MemoryStorage
from skate.gcs.task_event_store import TaskEventStore
from skate.gcs.task_event_store import answer as task_events_answer
from skate.protocol import Connection, listen
from skate.protocol.latency import LatencyRecorder
from skate.raylet import resources as res

logger = logging.getLogger("skate.gcs")


class NodeDeclaredDead(Exception):
    """A raylet the GCS declared dead tried to join again: it must stop instead."""


class GcsServer:
    def __init__(
        self,
        session_dir: str,
        token: bytes,
        owns_session: bool,
        node_timeout_s: float | None = None,
        storage: GcsStorage | None = None,
    ):
        self.session_dir = session_dir
        self.token = token
        self.owns_session = owns_session
        self.nodes: dict[str, dict] = {}
        self.node_conns: dict[str, Connection] = {}
        # The alive nodes in actor-placement order, with their actors' load (gcs.placement):
        # told of every change to a node's resources, so placing an actor scores few nodes.
        self.placement = PlacementIndex()
        self._address_nodes: dict[str, str | None] = {}  # node_of_address's answers, until nodes change
        self._view_scheduled = False
        # A node silent this long is dead: `_system_config`'s health-check keys, else the env.
        self.node_timeout = node_timeout_s or float(os.environ.get("SKATE_NODE_TIMEOUT_S", "10"))
        self.jobs: dict[str, dict] = {}
        self._job_counter = 0
        # Durable tables (see gcs.persistence); with memory storage nothing is written.
        self.tables = GcsTables(storage or MemoryStorage())
        self.start_info: dict = {}  # start history (restarts), see gcs.recovery
        self.kv = KvStore(journal=self.tables.kv_changed if self.tables.durable else None)
        self.logs_dropped = 0  # worker output lines not sent to a driver that lagged behind
        self.kv_waiters = KvWaiters(_config.MAX_KV_WAITERS, _config.MAX_KV_WAITERS_PER_CONNECTION)
        self._stopping = False
        self.loop = asyncio.get_event_loop()
        self.latency = LatencyRecorder("gcs")  # every request's handler time (protocol.latency)
        self.handlers = {
            "register_node": self.h_register_node,
            "update_resources": self.h_update_resources,
            "register_job": self.h_register_job,
            "get_nodes": lambda c, p: list(self.nodes.values()),
            "get_jobs": lambda c, p: [
                {k: v for k, v in j.items() if k != "conn"} for j in self.jobs.values()
            ],
            "kv_put": self.h_kv_put,
            "kv_get": self.h_kv_get,
            "kv_del": lambda c, p: self.kv.delete(
                _kv_namespace(p), _kv_bytes(p, "key"), by_prefix=bool(p.get("by_prefix"))
            ),
            "kv_exists": lambda c, p: self.kv.exists(_kv_namespace(p), _kv_bytes(p, "key")),
            "kv_keys": lambda c, p: self.kv.keys(_kv_namespace(p), _kv_bytes(p, "prefix", b"")),
            "publish_logs": self.h_publish_logs,
            "drain_node": self.h_drain_node,
            "shutdown": lambda c, p: self.loop.call_soon(self.shutdown),
            "gcs_info": lambda c, p: gcs_info(self),
            # handler time of the requests served here, for the dashboard's /metrics
            "rpc_latency": lambda c, p: self.latency.snapshot(),
        }
        self.actors = ActorManager(self)
        self.handlers.update(self.actors.handlers())
        self.pgs = PlacementGroupManager(self)
        self.handlers.update(self.pgs.handlers())
        self.handlers["client_died"] = self.h_client_died
        # Task events (gcs.task_event_store): a bounded window of task attempts for the state API.
        self.task_events = TaskEventStore(
            int(os.environ.get("SKATE_TASK_EVENTS_MAX_NUM_TASK_IN_GCS", "100000"))
        )
        self.handlers["add_task_events"] = lambda c, p: self.task_events.add_batch(p)
        self.handlers["get_task_events"] = lambda c, p: task_events_answer(self.task_events, p)

    async def start(self, address: str) -> str:
        self.listener = await listen(
            address, self.token, self.handlers, on_close=self.on_closed, name="gcs", recorder=self.latency
        )
        return self.listener.address

    def shutdown(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.listener.close()
        self.loop.stop()

    def on_closed(self, conn: Connection) -> None:
        self.kv_waiters.connection_closed(conn)
        info = conn.peer_info
        if "job_id" in info:
            job = self.jobs.get(info["job_id"])
            if job is not None:
                job["is_dead"] = True
                job["end_time"] = time.time()
                job.pop("conn", None)
                self.tables.save_job(job)
                self.actors.owner_gone(worker_id=job["driver_id"], job=info["job_id"])
                self.pgs.owner_gone(worker_id=job["driver_id"], job=info["job_id"])
        if "node_id" in info:
            self.mark_node_dead(info["node_id"], "its raylet disconnected")

    def mark_node_dead(self, node_id: str, reason: str) -> None:
        node = self.nodes.get(node_id)
        if node is None or not node["alive"]:
            return
        logger.warning("node %s is dead: %s", node_id[:12], reason)
        node["alive"] = False
        node["death_reason"] = reason
        self.placement.remove_node(node_id)
        self._address_nodes.clear()
        conn = self.node_conns.pop(node_id, None)
        if conn is not None and not conn.closed:
            # Fate sharing: a raylet that is only slow (or hung, and resumes) learns it is dead
            # and stops with its workers, rather than live on beside its restarted actors.
            conn.notify("node_declared_dead", {"reason": reason})
            conn.close(f"node declared dead: {reason}")
        self.actors.node_dead(node_id)
        self.pgs.node_dead(node_id)
        self._view_changed()

    def h_client_died(self, conn: Connection, p: dict) -> None:
        """A worker or driver is gone: its non-detached actors and placement groups go too."""
        self.actors.h_client_died(conn, p)
        self.pgs.owner_gone(worker_id=p["worker_id"])

    def h_drain_node(self, conn: Connection, p: dict) -> bool:
        """A raylet is stopping: the node is dead from now on (after this reply goes out), so
        its actors restart elsewhere and nothing more is placed there."""
        self.loop.call_soon(self.mark_node_dead, p["node_id"], "its raylet is shutting down")
        return True

    def node_alive(self, node_id: str | None) -> bool:
        node = self.nodes.get(node_id or "")
        conn = self.node_conns.get(node_id or "")
        return bool(node and node["alive"] and conn is not None and not conn.closed)

    def h_register_node(self, conn: Connection, p: dict) -> bool:
        existing = self.nodes.get(p["node_id"])
        if existing is not None and existing["alive"]:
            raise ValueError(f"node {p['node_id']} is already registered and alive")
        if existing is not None:
            raise NodeDeclaredDead(f"node {p['node_id']} was declared dead: {existing.get('death_reason')}")
        conn.peer_info = {"node_id": p["node_id"]}
        self.nodes[p["node_id"]] = dict(p, alive=True, start_time=time.time(), last_seen=time.monotonic())
        self.node_conns[p["node_id"]] = conn
        self.node_resources_changed(p["node_id"])
        self._address_nodes.clear()
        self._view_changed()
        self.loop.call_soon(self.actors.retry_unplaced)
        self.loop.call_soon(self.pgs.retry_pending)
        return True

    def _view_changed(self) -> None:
        if not self._view_scheduled:
            self._view_scheduled = True
            self.loop.call_later(0.02, self._broadcast_view)

    def _broadcast_view(self) -> None:
        """Tell every raylet what every node has, for spillback decisions."""
        self._view_scheduled = False
        view = {
            nid: {
                "address": n["address"],
                "resources": n["resources"],
                "available": n.get("available", {}),
                "alive": n["alive"],
                "labels": n.get("labels") or {},
            }
            for nid, n in self.nodes.items()
        }
        for conn in list(self.node_conns.values()):
            if not conn.closed:
                conn.notify("cluster_view", view)

    async def check_heartbeats(self) -> None:
        """A node silent for longer than the timeout is dead (its raylet may hang, not crash)."""
        while not self._stopping:
            await asyncio.sleep(min(1.0, self.node_timeout / 4))
            now = time.monotonic()
            for nid, node in list(self.nodes.items()):
                if node["alive"] and now - node.get("last_seen", now) > self.node_timeout:
                    self.mark_node_dead(nid, f"no heartbeat for {self.node_timeout:g} s")

    def node_resources_changed(self, node_id: str) -> None:
        """A node's entry in the node table changed (joined, new totals or availability, bundles
        reserved or returned): actor placement's index follows."""
        node = self.nodes.get(node_id)
        if node is not None and node["alive"]:
            total, available = node["resources"], node.get("available") or {}
            self.placement.set_node(node_id, res.to_fixed(total), res.to_fixed(available))

    def _usable(self, node_id: str) -> bool:
        conn = self.node_conns.get(node_id)
        return conn is not None and not conn.closed

    def pick_node(
        self,
        shape: dict[str, float],
        strategy=None,
        preferred: str | None = None,
        labels: Any = None,
    ) -> tuple[str | None, Connection | None]:
        """An alive node for an actor of placement `shape` (see gcs.placement): a node affinity
        names the node (soft: if it can, else anywhere); otherwise Ray's hybrid policy, starting
        from `preferred` (the owner's node), counting the actors placed so far (the index's
        load). A label constraint (`labels`, skate._labels wire form) keeps only nodes matching
        its hard expressions and prefers those matching its soft ones."""
        need = res.to_fixed(shape)
        con = from_wire(labels)
        hard, soft = con if con else ((), ())
        if isinstance(strategy, dict):
            node = self.nodes.get(strategy["node_id"])
            conn = self.node_conns.get(strategy["node_id"])
            if (
                node
                and node["alive"]
                and conn
                and res.fits(need, res.to_fixed(node["resources"]))
                and label_matches(node.get("labels") or {}, hard)
            ):
                return strategy["node_id"], conn
            if not strategy.get("soft"):
                return None, None
        spread = strategy == "SPREAD"  # no preference and no packing: the least loaded node
        threshold = 0.0 if spread else SPREAD_THRESHOLD
        if not hard and not soft:  # the common case: the index's order, no full scan
            chosen = self.placement.choose(need, None if spread else preferred, threshold, self._usable)
            return (chosen, self.node_conns[chosen]) if chosen else (None, None)
        views: list[NodeLoad] = []
        soft_nodes: set[str] | None = set() if soft else None
        for node_id, view in self.placement.nodes.items():
            if not self._usable(node_id):
                continue
            node_labels = self.nodes[node_id].get("labels") or {}
            if hard and not label_matches(node_labels, hard):
                continue
            if soft_nodes is not None and label_matches(node_labels, soft):
                soft_nodes.add(node_id)
            views.append(view)
        chosen = choose_node(need, views, None if spread else preferred, threshold=threshold, soft=soft_nodes)
        return (chosen, self.node_conns[chosen]) if chosen else (None, None)

    def node_of_address(self, address: str) -> str | None:
        """The alive node whose session directory holds the Unix socket in `address` (asked for
        every actor placed: remembered until a node joins or dies)."""
        if address in self._address_nodes:
            return self._address_nodes[address]
        self._address_nodes[address] = found = self._find_node_of_address(address)
        return found

    def _find_node_of_address(self, address: str) -> str | None:
        for node_id, node in self.nodes.items():
            sockets = f"{node.get('session_dir')}/sockets/"
            if node["alive"] and node.get("session_dir") and sockets in address:
                return node_id
        return None

    def h_update_resources(self, conn: Connection, p: dict) -> None:
        """A raylet's resources changed, or its heartbeat."""
        node = self.nodes.get(p["node_id"])
        if node is not None and node["alive"]:
            changed = False
            if not report_is_stale(node, p, time.monotonic()):  # (its resources predate a return)
                changed = node.get("available") != p["available"]
                node["available"] = p["available"]
                if "resources" in p and p["resources"] != node.get("resources"):
                    node["resources"] = p["resources"]
                    changed = True
            node["store_used"] = p.get("store_used", 0)
            node["pending"] = p.get("pending", [])
            node["last_seen"] = time.monotonic()
            if changed:
                self.node_resources_changed(p["node_id"])
                self._view_changed()
                self.pgs.resources_changed()

    def h_register_job(self, conn: Connection, p: dict) -> dict:
        if p.get("job_id"):  # a driver back after a GCS restart (gcs.recovery)
            return reattach_job(self, conn, p)
        self._job_counter += 1
        job_id = self._job_counter.to_bytes(4, "little").hex()
        namespace = p.get("namespace") or str(uuid.uuid4())
        conn.peer_info = {"job_id": job_id}
        self.jobs[job_id] = {
            "job_id": job_id,
            "driver_id": p["driver_id"],
            "driver_pid": p["pid"],
            "namespace": namespace,
            "submission_id": p.get("submission_id"),
            "entrypoint": p.get("entrypoint") or "",
            "start_time": time.time(),
            "is_dead": False,
            "conn": conn,
        }
        self.tables.save_meta("job_counter", self._job_counter)
        self.tables.save_job(self.jobs[job_id])
        return {"job_id": job_id, "namespace": namespace}

    def h_kv_put(self, conn: Connection, p: dict) -> bool:
        """Store a value; True if the key was new. With overwrite False an existing value stays."""
        namespace, key, value = _kv_namespace(p), _kv_bytes(p, "key"), _kv_bytes(p, "value")
        added = self.kv.put(namespace, key, value, overwrite=bool(p.get("overwrite", True)))
        stored = self.kv.get(namespace, key)
        self.kv_waiters.wake((namespace, key), stored)
        return added

    def h_kv_get(self, conn: Connection, p: dict):
        """The value at a key, or None; with `wait` (seconds), wait that long for it to appear."""
        namespace, key = _kv_namespace(p), _kv_bytes(p, "key")
        value = self.kv.get(namespace, key)
        wait = p.get("wait")
        if value is not None or not wait:
            return value
        return self.kv_waiters.wait((namespace, key), conn, float(wait))

    def h_publish_logs(self, conn: Connection, p: dict) -> None:
        job = self.jobs.get(p.get("job") or "")
        if job is None or job.get("conn") is None:
            return
        conn = job["conn"]
        if conn.write_paused:  # the driver is not keeping up: drop rather than buffer without end
            self.logs_dropped += len(p.get("lines") or ())
            return
        conn.notify("logs", p)


def _kv_namespace(p: dict) -> Namespace:
    """A request's KV namespace: absent or None is the system's table; users send bytes."""
    namespace = p.get("namespace")
    if namespace is not None and not isinstance(namespace, bytes):
        raise TypeError(f"a KV namespace must be bytes, got {type(namespace).__name__}")
    return namespace


def _kv_bytes(p: dict, field: str, default: bytes | None = None) -> bytes:
    value = p.get(field, default)
    if not isinstance(value, bytes):
        raise TypeError(f"the KV {field} must be bytes, got {type(value).__name__}")
    return value


def _cleanup_session(session_dir: str, raylet_pids: list[int]) -> None:
    """After the driver died: wait for the node's raylets to go, then remove the session."""
    deadline = time.time() + 10
    for pid in raylet_pids:
        try:
            psutil.Process(pid).wait(max(0.1, deadline - time.time()))
        except (psutil.NoSuchProcess, psutil.TimeoutExpired):
            pass
    shutil.rmtree(session_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="skate-gcs")
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--watch-fd", type=int, default=-1)
    parser.add_argument("--logging-level", type=int, default=logging.INFO)
    parser.add_argument("--node-timeout-s", type=float, default=None)
    parser.add_argument("--storage", default="memory", help="memory, sqlite[:PATH] or redis://HOST:PORT[/DB]")
    args = parser.parse_args(argv)
    log_to_rotating_file(os.path.join(args.session_dir, "logs", "gcs.log"), args.logging_level)
    token = read_token(args.session_dir)
    try:  # a storage that cannot be used stops the GCS here, before anything is written
        storage, snapshot = open_tables(args.session_dir, args.storage)
    except (GcsStorageError, ValueError) as exc:
        print(f"skate GCS: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    loop = _event_loop.new_event_loop()
    asyncio.set_event_loop(loop)
    gcs = GcsServer(
        args.session_dir,
        token,
        owns_session=args.watch_fd >= 0,
        node_timeout_s=args.node_timeout_s,
        storage=storage,
    )
    recover(gcs, snapshot)
    parent_gone: list[bool] = []

    def on_parent_gone() -> None:
        parent_gone.append(True)
        gcs.shutdown()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gcs.shutdown)
    if args.watch_fd >= 0:
        watch_parent_pipe(loop, args.watch_fd, on_parent_gone)
    address = loop.run_until_complete(gcs.start(args.address))
    heartbeats = loop.create_task(gcs.check_heartbeats())
    if gcs._stopping:  # stopped while starting: loop.stop() was consumed by run_until_complete
        loop.run_until_complete(asyncio.sleep(0))
    print(f"READY {address}", flush=True)
    _gc_tuning.tune(own_process=True)
    if not gcs._stopping:
        loop.run_forever()
    heartbeats.cancel()
    if parent_gone:
        _cleanup_session(args.session_dir, [n["pid"] for n in gcs.nodes.values() if n.get("pid")])


if __name__ == "__main__":
    main()
