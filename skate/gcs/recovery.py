"""A GCS that starts again at the same address takes up where the dead one left off.

`open_tables` opens the storage at start: the first start of a cluster writes its id to the
session directory (`gcs_cluster_id`) and binds the storage to it; a later start in the same
session is a restart, and reloads the tables of that cluster id (never another's). A restart
with `memory` storage is refused: its tables died with the previous process.

`recover` puts the tables back: jobs, the KV store, actors (names included), placement groups.
Live state comes from the survivors: raylets register again (their resources, bundles and
leases are theirs), drivers re-attach to their jobs, and the GCS reconnects to every actor it
knew alive: an actor whose worker is gone is restarted by its rules. Nodes, drivers and actor
workers that do not come back within a grace period are dead, as if seen dying.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import uuid
from typing import Any

from skate._secure_files import read_private, write_private
from skate.exceptions import GcsStorageError
from skate.gcs import actor_manager as am
from skate.gcs import placement_group_manager as pgm
from skate.gcs.memory_info import gcs_memory
from skate.gcs.persistence import ACTOR_FIELDS, GROUP_FIELDS, GcsTables, Snapshot, restart_record
from skate.gcs.storage import GcsStorage, bind_cluster, open_storage, parse_spec
from skate.protocol import Connection, connect

logger = logging.getLogger("skate.gcs.recovery")

CLUSTER_ID_FILE = "gcs_cluster_id"
MEMORY_RESTART_ERROR = (
    "this cluster's GCS ran before with --storage memory: its tables (actors and their names, "
    "placement groups, jobs, the KV store) died with that process, so a restarted GCS cannot recover "
    "them. Start the head with --storage sqlite (the default of `skate start --head`) or "
    "--storage redis://HOST:PORT to survive GCS restarts."
)


def open_tables(session_dir: str, spec: str) -> tuple[GcsStorage, Snapshot]:
    """Open and bind the storage; on a restart, read the tables back. GcsStorageError (or
    ValueError for a malformed spec) before anything is written when it cannot be used."""
    marker = os.path.join(session_dir, CLUSTER_ID_FILE)
    restart = os.path.exists(marker)
    parsed = parse_spec(spec)
    if restart and parsed.kind == "memory":
        raise GcsStorageError(MEMORY_RESTART_ERROR)
    cluster_id = read_private(marker).decode().strip() if restart else uuid.uuid4().hex
    storage = open_storage(parsed, session_dir, os.environ.get("SKATE_GCS_REDIS_PASSWORD") or None)
    try:
        bind_cluster(storage, cluster_id, restart)
        snapshot = GcsTables(storage).load() if restart else Snapshot()
        snapshot.meta["cluster_id"] = cluster_id
        snapshot.meta["restart"] = restart
        if not restart:
            write_private(marker, cluster_id.encode())
    except BaseException:
        storage.close()
        raise
    return storage, snapshot


def recover(gcs: Any, snap: Snapshot) -> None:
    """Put the reloaded tables back into a new GcsServer (before its loop runs)."""
    gcs.cluster_id = snap.meta.get("cluster_id", "")
    gcs.start_info = restart_record(snap.meta)
    gcs.start_info["storage"] = gcs.tables.storage.description
    gcs.tables.save_meta("gcs_starts", {k: v for k, v in gcs.start_info.items() if k != "storage"})
    if not snap.meta.get("restart"):
        return
    logger.warning(
        "GCS restart %d: reloading %d actors, %d placement groups, %d jobs, %d KV entries from %s",
        gcs.start_info["restarts"],
        len(snap.actors),
        len(snap.groups),
        len(snap.jobs),
        len(snap.kv),
        gcs.tables.storage.description,
    )
    gcs._job_counter = int(snap.meta.get("job_counter") or 0)
    gcs.awaiting_jobs = set()
    for job in snap.jobs:
        gcs.jobs[job["job_id"]] = job
        if not job.get("is_dead"):
            gcs.awaiting_jobs.add(job["job_id"])
    for namespace, key, value in snap.kv:
        gcs.kv.load(namespace, key, value)
    actors = gcs.actors
    # Lease request numbers the raylets may still hold from the previous GCS are not reused.
    actors._rids = itertools.count(1 + gcs.start_info["restarts"] * 1_000_000_000)
    for rec in snap.actors:
        info = am.ActorInfo(**{k: rec[k] for k in ACTOR_FIELDS if k in rec})
        info.lease = tuple(info.lease) if info.lease else None
        actors.add(info)
        if info.name and info.state != am.DEAD:
            actors.named[(info.namespace, info.name)] = info.actor_id
    actors.recount()  # their load on the nodes they were sent to, for placement
    groups = gcs.pgs
    for rec in snap.groups:
        group = pgm.GroupInfo(**{k: rec[k] for k in GROUP_FIELDS if k in rec})
        group.bundles = [dict(b) for b in group.bundles]
        group.placement = {int(i): node for i, node in rec.get("placement") or []}
        groups.groups[group.pg_id] = group
        if group.name and group.state != pgm.REMOVED:
            groups.named[(group.namespace, group.name)] = group.pg_id
        if group.state in (pgm.PENDING, pgm.RESCHEDULING):
            groups.pending[group.pg_id] = None
    gcs.loop.call_soon(lambda: asyncio.ensure_future(_resume(gcs)))


async def _resume(gcs: Any) -> None:
    """Reconnect to live actors, restart the ones that were starting, then after a grace
    period declare dead what did not come back."""
    actors = gcs.actors
    reattach = []
    for info in list(actors.actors.values()):
        if info.state == am.ALIVE and info.address:
            reattach.append(_reattach_actor(gcs, info))
        elif info.state in (am.PENDING, am.RESTARTING) and info.spec is not None:
            actors.set_target(info, None)
            asyncio.ensure_future(actors._start(info))  # waits among the unplaced for a node
    await asyncio.gather(*reattach, return_exceptions=True)
    await asyncio.sleep(gcs.node_timeout)
    known = set(gcs.nodes)
    lost = {i.node_id for i in actors.actors.values() if i.state == am.ALIVE and i.node_id} - known
    lost |= {n for g in gcs.pgs.groups.values() for n in g.placement.values()} - known
    for node_id in lost:
        logger.warning("node %s did not come back after the GCS restarted: dead", node_id[:12])
        actors.node_dead(node_id)
        gcs.pgs.node_dead(node_id)
    await asyncio.sleep(gcs.node_timeout)
    for job_id in list(getattr(gcs, "awaiting_jobs", ())):
        job = gcs.jobs.get(job_id)
        gcs.awaiting_jobs.discard(job_id)
        if job is None or job.get("is_dead"):
            continue
        logger.warning("the driver of job %s did not come back after the GCS restarted: job dead", job_id)
        job["is_dead"] = True
        gcs.tables.save_job(job)
        actors.owner_gone(worker_id=job["driver_id"], job=job_id)
        gcs.pgs.owner_gone(worker_id=job["driver_id"], job=job_id)


async def _reattach_actor(gcs: Any, info: am.ActorInfo) -> None:
    """Connect to an actor's worker again; a worker that is gone means the actor died."""
    actors = gcs.actors
    try:
        conn = await connect(
            info.address or "", gcs.token, {}, name=f"actor {info.actor_id.hex()[:8]}", timeout=5
        )
    except Exception as exc:
        logger.warning("actor %s did not survive the GCS restart (%s)", info.actor_id.hex(), exc)
        info.conn = None
        actors._on_worker_lost(info, "the actor's worker process died while the GCS was down")
        return
    if info.state != am.ALIVE:  # killed meanwhile
        conn.close("actor not alive")
        return
    info.conn = conn
    conn._on_close = lambda c, i=info: actors._on_worker_lost(i, "the actor's worker process died")
    logger.info("actor %s reattached at %s", info.actor_id.hex(), info.address)


def reattach_job(gcs: Any, conn: Connection, p: dict) -> dict:
    """A driver whose GCS restarted registers again under its job id."""
    job = gcs.jobs.get(p["job_id"])
    if job is None:
        raise ValueError(f"job {p['job_id']} is unknown to this GCS")
    if job.get("is_dead"):
        raise ValueError(f"job {p['job_id']} was declared dead: its driver came back too late")
    job["conn"] = conn
    conn.peer_info = {"job_id": job["job_id"]}
    getattr(gcs, "awaiting_jobs", set()).discard(job["job_id"])
    logger.info("driver of job %s reattached", job["job_id"])
    return {"job_id": job["job_id"], "namespace": job["namespace"]}


def gcs_info(gcs: Any) -> dict:
    """Start history, storage and table sizes (for `skate status` and `skate memory --stats`)."""
    kv_entries, kv_bytes = gcs.kv.sizes()
    return {
        "cluster_id": getattr(gcs, "cluster_id", ""),
        "storage": gcs.tables.storage.description,
        "durable": gcs.tables.durable,
        "start": dict(gcs.start_info),
        "storage_writes": gcs.tables.writes,
        "tables": {
            "nodes": len(gcs.nodes),
            "jobs": len(gcs.jobs),
            "actors": len(gcs.actors.actors),
            "named_actors": len(gcs.actors.named),
            "placement_groups": len(gcs.pgs.groups),
            "kv_entries": kv_entries,
            "kv_bytes": kv_bytes,
        },
        "memory": gcs_memory(gcs),  # its process and its tables in count and bytes
    }
