"""The GCS's durable tables: what is written to its storage, when, and how it is read back.

Actors (names, detached, state, creation call), jobs, placement groups, the internal KV store
(exported functions included) and a few counters are written through `GcsTables` when they
change, synchronously, so a change is durable before the GCS answers the client that made it.
Nodes are not: raylets register again after a restart and re-report what they have. Nothing
on the per-task path (submission, object transfer) goes through the GCS, so nothing there
touches storage. Records are msgpack (never pickle: a storage others can write must not run
code in the GCS).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from skate.gcs.storage import GcsStorage
from skate.gcs.storage.base import CLUSTER_ID_KEY

logger = logging.getLogger("skate.gcs.persistence")

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode

ACTOR_FIELDS = (
    "actor_id name namespace detached max_restarts owner job public state spec address worker_id "
    "node_id pid incarnation num_restarts no_restart death_cause lease target_node"
).split()
GROUP_FIELDS = (
    "pg_id name namespace strategy bundles job creator detached max_cpu_fraction state created_at "
    "scheduling_attempts"
).split()


@dataclass
class Snapshot:
    """Everything a restarted GCS reloads."""

    actors: list[dict] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)
    jobs: list[dict] = field(default_factory=list)
    kv: list[tuple[bytes | None, bytes, bytes]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def _kv_key(namespace: bytes | None, key: bytes) -> bytes:
    return _encode([namespace, key])


class GcsTables:
    """Writes the GCS's durable state to a storage backend, and reads it back after a restart."""

    def __init__(self, storage: GcsStorage):
        self.storage = storage
        self.writes = 0

    @property
    def durable(self) -> bool:
        return self.storage.durable

    # -- writes --------------------------------------------------------------------------
    def save_actor(self, info: Any) -> None:
        if not self.storage.durable:
            return
        record = {name: getattr(info, name) for name in ACTOR_FIELDS}
        self._put("actors", info.actor_id, record)

    def save_group(self, info: Any) -> None:
        if not self.storage.durable:
            return
        record = {name: getattr(info, name) for name in GROUP_FIELDS}
        record["placement"] = sorted(info.placement.items())
        self._put("placement_groups", info.pg_id.encode(), record)

    def drop_groups(self, pg_ids: list[str]) -> None:
        self._write(deletes=[("placement_groups", pg_id.encode()) for pg_id in pg_ids])

    def save_job(self, job: dict) -> None:
        record = {k: v for k, v in job.items() if k != "conn"}
        self._put("jobs", job["job_id"].encode(), record)

    def save_meta(self, name: str, value: Any) -> None:
        self._put("meta", name.encode(), value)

    def kv_changed(self, op: str, namespace: bytes | None, key: bytes, value: bytes | None = None) -> None:
        """The KV store's journal: op is "put" or "del"."""
        if op == "put" and value is not None:
            self._write(puts=[("kv", _kv_key(namespace, key), value)])
        else:
            self._write(deletes=[("kv", _kv_key(namespace, key))])

    def _put(self, table: str, key: bytes, record: Any) -> None:
        self._write(puts=[(table, key, _encode(record))])

    def _write(self, puts: list | None = None, deletes: list | None = None) -> None:
        if not self.storage.durable:  # memory: the GCS's own dicts are the tables
            return
        self.storage.write_batch(puts or (), deletes or ())
        self.writes += 1

    # -- reads ---------------------------------------------------------------------------
    def load(self) -> Snapshot:
        snap = Snapshot()
        snap.actors = [_decode(v) for _, v in self.storage.scan("actors")]
        snap.groups = [_decode(v) for _, v in self.storage.scan("placement_groups")]
        snap.jobs = [_decode(v) for _, v in self.storage.scan("jobs")]
        for k, v in self.storage.scan("kv"):
            namespace, key = _decode(k)
            snap.kv.append((namespace, key, v))
        for k, v in self.storage.scan("meta"):
            snap.meta[k.decode()] = v.decode() if k == CLUSTER_ID_KEY else _decode(v)
        return snap

    def stats(self) -> dict:
        """Table sizes for `skate memory --stats` and `skate status`."""
        sizes = self.storage.table_sizes()
        return {
            "storage": self.storage.description,
            "tables": {t: {"entries": n, "bytes": b} for t, (n, b) in sizes.items()},
            "writes": self.writes,
        }


def restart_record(meta: dict[str, Any]) -> dict[str, Any]:
    """The GCS's start history after one more start: count of restarts, first and last start."""
    now = time.time()
    previous = meta.get("gcs_starts") or {}
    if not previous:
        return {"first_start": now, "last_start": now, "restarts": 0}
    return {
        "first_start": previous.get("first_start", now),
        "last_start": now,
        "restarts": int(previous.get("restarts", 0)) + 1,
    }
