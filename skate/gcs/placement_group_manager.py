"""The GCS's placement groups: creation, two-phase commit on the raylets, removal, rescheduling.

A group moves PENDING -> CREATED -> REMOVED; while a node holding some of its bundles is
dead it is RESCHEDULING (the lost bundles are placed again, the others stay). Where bundles go
is `gcs.pg_scheduler`'s decision; this shell carries it out:

1. prepare: each chosen raylet reserves its bundles' resources, all or none (one message per
   node, every bundle for that node in it);
2. commit: the reservations become bundle resources (`CPU_group_<pg>`, `CPU_group_<i>_<pg>`),
   which tasks and actors of the group ask for, so the raylets' ordinary scheduling places them.

If any prepare fails, every reservation made is returned and the group waits for resources to
change. When a single node takes every bundle, prepare and commit travel in one message.
A group that does not fit stays PENDING and is tried again whenever a node joins or resources
are freed. Removal returns the bundles (the raylets kill what runs in them) and kills the
group's actors; a group dies with its job or creator unless it is detached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from skate.gcs.pg_scheduler import NodeView, feasible_ever, group_resources, schedule
from skate.protocol import Connection
from skate.raylet import resources as res

logger = logging.getLogger("skate.gcs.placement_groups")

PENDING, CREATED, REMOVED, RESCHEDULING = "PENDING", "CREATED", "REMOVED", "RESCHEDULING"
RETRY_S = 0.1  # a failed prepare is tried again this soon (or when resources change)
# How long a node's resource reports that predate a return of bundles (see `report_is_stale`)
# are set aside at most: a raylet that never echoes the return is believed again after this.
STALE_REPORT_S = 5.0


@dataclass
class GroupInfo:
    pg_id: str  # hex
    name: str
    namespace: str
    strategy: str
    bundles: list[dict[str, float]]
    job: str
    creator: str  # worker id of the process that created it
    detached: bool
    max_cpu_fraction: float | None = None
    state: str = PENDING
    placement: dict[int, str] = field(default_factory=dict)  # committed bundles: index -> node
    in_flight: bool = False  # a prepare/commit round is under way
    waiters: list = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    scheduling_attempts: int = 0
    creator_conn: Connection | None = None  # told of state changes (see core_worker.placement_groups)

    @property
    def fixed(self) -> list[dict[str, int]]:
        return [res.to_fixed(b) for b in self.bundles]

    def resource_names(self) -> set[str]:
        """The resources placing this group looks at: its bundles' and CPU (for ordering)."""
        return {"CPU"}.union(*self.bundles)

    def describe(self) -> dict:
        """One row of `placement_group_table`, in Ray's format."""
        return {
            "placement_group_id": self.pg_id,
            "name": self.name,
            "namespace": self.namespace,
            "bundles": {i: dict(b) for i, b in enumerate(self.bundles)},
            "bundles_to_node_id": {i: n for i, n in sorted(self.placement.items())},
            "strategy": self.strategy,
            "state": self.state,
            "is_detached": self.detached,
            "stats": {
                "scheduling_attempt": self.scheduling_attempts,
                "scheduling_state": "FINISHED" if self.state == CREATED else self.state,
            },
        }


class PlacementGroupManager:
    def __init__(self, gcs: Any):
        self.gcs = gcs
        self.groups: dict[str, GroupInfo] = {}
        self.named: dict[tuple[str, str], str] = {}
        self.pending: dict[str, None] = {}  # groups waiting for room, in arrival order
        self._retry_scheduled = False

    def handlers(self) -> dict:
        return {
            "create_placement_group": self.h_create,
            "wait_placement_group": self.h_wait,
            "remove_placement_group": self.h_remove,
            "get_placement_group": self.h_get,
            "placement_group_table": self.h_table,
        }

    # -- requests ---------------------------------------------------------------------
    def h_create(self, conn: Connection, p: dict) -> dict:
        """Register a group and start placing it; the reply does not wait for placement."""
        name, namespace = p.get("name") or "", p.get("namespace") or ""
        if name and (namespace, name) in self.named:
            raise ValueError(
                f"a placement group named {name!r} already exists in namespace {namespace!r}; "
                "names are unique per namespace"
            )
        info = GroupInfo(
            p["pg_id"],
            name,
            namespace,
            p["strategy"],
            [dict(b) for b in p["bundles"]],
            p.get("job") or "",
            p.get("creator") or "",
            bool(p.get("detached")),
            p.get("max_cpu_fraction"),
        )
        if info.strategy == "STRICT_PACK":
            views = self._views(info.resource_names(), available=False)
            if views and not feasible_ever(info.fixed, info.strategy, views):
                total: dict[str, float] = {}
                for b in info.bundles:
                    for k, v in b.items():
                        total[k] = total.get(k, 0) + v
                raise ValueError(
                    f"STRICT_PACK placement group needs {total} on one node, more than any node "
                    "of the cluster has"
                )
        info.creator_conn = conn
        self.gcs.tables.save_group(info)  # durable before the reply (gcs.persistence)
        self.groups[info.pg_id] = info
        if name:
            self.named[(namespace, name)] = info.pg_id
        self._try_place(info)
        return {"pg_id": info.pg_id}

    def h_wait(self, conn: Connection, p: dict):
        """True once the group is created; False if removed (or unknown), or after `timeout`."""
        info = self.groups.get(p["pg_id"])
        if info is None or info.state == REMOVED:
            return False
        if info.state == CREATED:
            return True
        fut = asyncio.get_running_loop().create_future()
        info.waiters.append(fut)
        timeout = p.get("timeout")
        if timeout is None:
            return fut
        return self._bounded(fut, float(timeout))

    @staticmethod
    async def _bounded(fut: asyncio.Future, timeout: float) -> bool:
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            return False

    def h_remove(self, conn: Connection, p: dict) -> bool:
        info = self.groups.get(p["pg_id"])
        if info is None or info.state == REMOVED:
            return False
        self.remove(info)
        return True

    def h_get(self, conn: Connection, p: dict) -> dict | None:
        pg_id = p.get("pg_id") or self.named.get((p.get("namespace") or "", p.get("name") or ""))
        info = self.groups.get(pg_id or "")
        return info.describe() if info is not None and info.state != REMOVED else None

    def h_table(self, conn: Connection, p: dict):
        if p.get("pg_id"):
            info = self.groups.get(p["pg_id"])
            return info.describe() if info is not None else {}
        return {pg_id: info.describe() for pg_id, info in self.groups.items()}

    # -- placing ------------------------------------------------------------------------
    def _views(self, names: set[str], available: bool = True) -> list[NodeView]:
        """The alive nodes, with only the resources in `names` (a node holding many groups
        has many bundle resources; none of them matter to placing another group)."""
        views = []
        for node_id, node in self.gcs.nodes.items():
            if not self.gcs.node_alive(node_id):
                continue
            total, free = node["resources"], node.get("available") or {}
            views.append(
                NodeView(
                    node_id,
                    res.to_fixed({k: total[k] for k in names if k in total}),
                    res.to_fixed({k: free[k] for k in names if k in free}),
                )
            )
        return views

    def _try_place(self, info: GroupInfo) -> None:
        if info.in_flight or info.state not in (PENDING, RESCHEDULING):
            return
        placed = {i: n for i, n in info.placement.items() if self.gcs.node_alive(n)}
        info.scheduling_attempts += 1
        views = self._views(info.resource_names())
        assignment = schedule(info.fixed, info.strategy, views, placed, info.max_cpu_fraction)
        if assignment is None:
            self.pending[info.pg_id] = None
            return
        self.pending.pop(info.pg_id, None)
        info.in_flight = True
        by_node: dict[str, list[int]] = {}
        for i, node_id in assignment.items():
            by_node.setdefault(node_id, []).append(i)
            # Count it in the GCS's view at once, so the next group placed does not count on it.
            avail = self.gcs.nodes[node_id].setdefault("available", {})
            for k, v in info.bundles[i].items():
                avail[k] = avail.get(k, 0) - v
        for node_id in by_node:
            self.gcs.node_resources_changed(node_id)
        asyncio.ensure_future(self._reserve(info, by_node))

    async def _reserve(self, info: GroupInfo, by_node: dict[str, list[int]]) -> None:
        """Two-phase commit of the bundles on their nodes."""
        one_round = len(by_node) == 1
        prepared: list[str] = []
        ok = True
        calls = []
        for node_id, indices in by_node.items():
            conn = self.gcs.node_conns.get(node_id)
            if conn is None or conn.closed:
                ok = False
                continue
            payload = {
                "pg_id": info.pg_id,
                "bundles": [[i, info.bundles[i]] for i in indices],
                "commit": one_round,
            }
            calls.append((node_id, conn.call("prepare_bundles", payload)))
        for node_id, call in calls:
            try:
                if await call:
                    prepared.append(node_id)
                else:
                    ok = False
            except Exception as exc:
                logger.info("preparing bundles of %s on %s failed: %s", info.pg_id, node_id[:12], exc)
                ok = False
        if ok and not one_round:
            commits = [
                (
                    node_id,
                    self.gcs.node_conns[node_id].call(
                        "commit_bundles", {"pg_id": info.pg_id, "indices": by_node[node_id]}
                    ),
                )
                for node_id in prepared
            ]
            for node_id, call in commits:
                try:
                    await call
                except Exception as exc:  # the node died after preparing: place those again
                    logger.info("committing bundles of %s on %s failed: %s", info.pg_id, node_id[:12], exc)
                    ok = False
        info.in_flight = False
        if not ok or info.state == REMOVED:
            for node_id in prepared:  # roll back every reservation made in this round
                self._return(info.pg_id, node_id, by_node[node_id], removed=info.state == REMOVED)
            if info.state != REMOVED:
                self.pending[info.pg_id] = None
                self._schedule_retry(RETRY_S)
            return
        for node_id, indices in by_node.items():
            for i in indices:
                info.placement[i] = node_id
            node = self.gcs.nodes.get(node_id)
            if node is not None:  # the bundle resources exist from now on (before the next report)
                added: dict[str, int] = {}
                for i in indices:
                    res.add(added, group_resources(info.pg_id, i, info.fixed[i]))
                for key in ("resources", "available"):
                    amounts = node.setdefault(key, {})
                    for k, v in res.to_float(added).items():
                        amounts.setdefault(k, v)  # the raylet's report may have come first
                self.gcs.node_resources_changed(node_id)
        if len(info.placement) < len(info.bundles):  # a node died meanwhile: place the rest
            self._try_place(info)
            return
        self._set_state(info, CREATED)
        for fut in info.waiters:
            if not fut.done():
                fut.set_result(True)
        info.waiters = []
        self.gcs._view_changed()
        self.gcs.actors.retry_unplaced()  # actors of this group were waiting for its bundles

    def _return(self, pg_id: str, node_id: str, indices: list[int] | None, removed: bool) -> None:
        conn = self.gcs.node_conns.get(node_id)
        if conn is not None and not conn.closed:
            self._send_return(node_id, conn, {"pg_id": pg_id, "indices": indices, "removed": removed})

    def _send_return(self, node_id: str, conn: Connection, payload: dict) -> None:
        """Tell a raylet to give bundles back, numbered: its reports say which return they
        saw last, and the GCS sets aside the ones sent before it handled this one (they
        would undo the GCS's view of the freed resources: `report_is_stale`)."""
        node = self.gcs.nodes.get(node_id)
        if node is not None:
            node["returns_sent"] = payload["seq"] = node.get("returns_sent", 0) + 1
            node["returned_at"] = time.monotonic()
        conn.notify("return_bundles", payload)

    def _schedule_retry(self, delay: float = 0.0) -> None:
        if not self._retry_scheduled and self.pending:
            self._retry_scheduled = True
            self.gcs.loop.call_later(delay, self.retry_pending)

    def retry_pending(self) -> None:
        """Resources changed (a node joined, a group was removed, a report came in): try the
        waiting groups again, oldest first."""
        self._retry_scheduled = False
        for pg_id in list(self.pending):
            info = self.groups.get(pg_id)
            if info is None or info.state not in (PENDING, RESCHEDULING):
                self.pending.pop(pg_id, None)
                continue
            self._try_place(info)

    def resources_changed(self) -> None:
        self._schedule_retry()

    # -- removal and failures -----------------------------------------------------------
    def _set_state(self, info: GroupInfo, state: str) -> None:
        info.state = state
        self.gcs.tables.save_group(info)
        conn = info.creator_conn
        if conn is not None and not conn.closed:
            conn.notify("pg_state", {"pg_id": info.pg_id, "state": state})
        if state == REMOVED:
            info.creator_conn = None

    def remove(self, info: GroupInfo) -> None:
        self._set_state(info, REMOVED)
        self.pending.pop(info.pg_id, None)
        if info.name and self.named.get((info.namespace, info.name)) == info.pg_id:
            del self.named[(info.namespace, info.name)]
        for fut in info.waiters:
            if not fut.done():
                fut.set_result(False)
        info.waiters = []
        self.gcs.actors.group_removed(info.pg_id)
        holding: dict[str, list[int]] = {}
        for i, node_id in info.placement.items():
            holding.setdefault(node_id, []).append(i)
        # Every alive raylet hears of it: those holding bundles give them back, and any lease
        # request naming the group (queued anywhere) fails instead of waiting forever.
        for node_id, conn in list(self.gcs.node_conns.items()):
            if conn.closed:
                continue
            indices = holding.get(node_id)
            self._send_return(node_id, conn, {"pg_id": info.pg_id, "indices": indices, "removed": True})
            node = self.gcs.nodes.get(node_id)
            if node is None or not indices:
                continue
            for i in indices:  # the GCS's view: the bundle's resources are free again
                for k, v in info.bundles[i].items():
                    node["available"][k] = node["available"].get(k, 0) + v
            for key in ("resources", "available"):
                amounts = node.get(key) or {}
                for k in [k for k in amounts if k.endswith("_" + info.pg_id) and "_group_" in k]:
                    del amounts[k]
            self.gcs.node_resources_changed(node_id)
        info.placement = {}
        self.gcs.tables.save_group(info)
        self._schedule_retry()
        if len(self.groups) > 10_000:  # forget the oldest removed groups
            forgotten = [g for g, i in self.groups.items() if i.state == REMOVED][:1000]
            for pg_id in forgotten:
                del self.groups[pg_id]
            self.gcs.tables.drop_groups(forgotten)

    def node_dead(self, node_id: str) -> None:
        """Bundles on a dead node are placed again (the group is RESCHEDULING meanwhile)."""
        for info in self.groups.values():
            lost = [i for i, n in info.placement.items() if n == node_id]
            if not lost or info.state == REMOVED:
                continue
            for i in lost:
                del info.placement[i]
            if info.state == CREATED:
                self._set_state(info, RESCHEDULING)
            else:
                self.gcs.tables.save_group(info)
            logger.warning(
                "node %s held bundles %s of placement group %s: rescheduling them",
                node_id[:12],
                lost,
                info.pg_id,
            )
            self._try_place(info)

    def owner_gone(self, worker_id: str | None = None, job: str | None = None) -> None:
        """A job or creator is gone: so are its groups, unless detached."""
        for info in list(self.groups.values()):
            if info.detached or info.state == REMOVED:
                continue
            if (worker_id is not None and info.creator == worker_id) or (job is not None and info.job == job):
                self.remove(info)

    def is_removed(self, pg_id: str) -> bool:
        info = self.groups.get(pg_id)
        return info is not None and info.state == REMOVED


def report_is_stale(node: dict, report: dict, now: float) -> bool:
    """Whether a raylet's resource report predates the last return of bundles the GCS sent
    it: the raylet wrote it before it handled that return (reports and returns cross on the
    connection), so its resources would undo the freed ones in the GCS's view until the next
    report. Set aside for at most STALE_REPORT_S after the return; a report without the
    field (an older raylet) is never stale."""
    sent = node.get("returns_sent", 0)
    seen = report.get("returns_seen", sent)
    return type(seen) is int and seen < sent and now - node.get("returned_at", 0.0) < STALE_REPORT_S
