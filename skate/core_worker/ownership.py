"""Ownership across processes: borrowers, contained refs, and releasing what nobody holds.

The `ReferenceCounter` counts; this module does the talking. Objects and actor handles go
through the same protocol: a process that deserializes someone else's ref or handle
registers with the owner as a borrower (`add_borrowers`) before the task that carried it can
finish, and unregisters (`remove_borrowers`, batched per owner) when its last local copy
goes; a borrower whose connection closes is dropped. When an owned id reaches zero:
an object leaves the memory store and the shared-memory store, and what it captured is let
go; an actor that is not detached is killed.

Releases can start in `__del__` (an ObjectRef or ActorHandle collected at any point of any
thread), so the counting path never blocks and never takes a non-reentrant lock: it only
queues the release, and the I/O loop carries it out.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
from typing import Any

from skate.protocol.connection import Connection
from skate.protocol.messages import IN_STORE

logger = logging.getLogger(__name__)


class Ownership:
    def __init__(self, core: Any):
        self.core = core
        self.contained: dict[bytes, list] = {}  # owned object -> refs captured inside it
        self.remote_contained: dict[bytes, str] = {}  # owned object -> worker keeping refs inside it
        self.call_sites: dict[bytes, str] = {}  # where refs were created (when recording is on)
        self.owned_actors: dict[bytes, bool] = {}  # actors created here -> detached?
        self.actor_creations: dict[bytes, Any] = {}  # owned actor -> its constructor call (TaskEntry)
        self._registered: dict[bytes, tuple] = {}  # borrowed id -> owner we told
        self._unborrow_pending: dict[tuple, list[bytes]] = {}
        self._unborrow_scheduled = False
        self._unborrow_lock = threading.RLock()  # reentrant: a GC-run __del__ may land here
        self._borrowers_by_conn: dict[Connection, collections.Counter] = {}
        self.reported_owns = False
        self._has_borrowers = False
        handlers = core.handlers
        handlers["add_borrowers"] = self._h_add_borrowers
        handlers["remove_borrowers"] = self._h_remove_borrowers
        handlers["release_contained"] = self._h_release_contained

    # -- reaching zero (any thread, maybe inside __del__) --------------------------------
    def on_ref_zero(self, object_id: bytes, owner: tuple | None) -> None:
        """The ReferenceCounter's callback: queue the release for the I/O loop."""
        core = self.core
        if core.stopped:
            return
        entry = core.store.delete(object_id)  # reentrant lock: safe from __del__
        if owner is not None:
            if self._registered.get(object_id) is not None:
                self._queue_unborrow(owner, object_id)
            return
        stored = entry is not None and entry[0] == IN_STORE
        if (
            stored
            or object_id in self.owned_actors
            or object_id in self.remote_contained
            or core.submitter.manager.lineage
        ):
            core.post(self._release_owned, object_id, stored)
            return
        # Nothing to tell anyone (the common small result): forget it here, without a hop to
        # the loop. Dict pops are atomic, so this is safe from __del__ on any thread.
        self.contained.pop(object_id, None)
        self.call_sites.pop(object_id, None)

    def _release_owned(self, object_id: bytes, stored: bool) -> None:
        """I/O thread: free an owned object (or actor) that nothing refers to any more."""
        core = self.core
        if core.refs.has(object_id):
            return  # referenced again meanwhile
        if object_id in self.owned_actors:
            self._release_actor(object_id)
            return
        self.contained.pop(object_id, None)
        self.call_sites.pop(object_id, None)
        core.submitter.drop_lineage(object_id)
        holder = self.remote_contained.pop(object_id, None)
        if holder is not None:
            self._send_to_owner((None, holder), "release_contained", [object_id])
        if stored:
            core.raylet.notify("store_free", {"oids": [object_id]})

    def _queue_unborrow(self, owner: tuple, object_id: bytes) -> None:
        """Batch "remove_borrowers" per owner: dropping a list of 10k refs sends one message."""
        with self._unborrow_lock:
            self._unborrow_pending.setdefault(owner, []).append(object_id)
            if self._unborrow_scheduled:
                return
            self._unborrow_scheduled = True
        self.core.post(self._flush_unborrows)

    def _flush_unborrows(self) -> None:
        with self._unborrow_lock:
            pending, self._unborrow_pending = self._unborrow_pending, {}
            self._unborrow_scheduled = False
        has = self.core.refs.has
        unregister = self._registered.pop
        for owner, oids in pending.items():
            # Still dropped (not taken again since) and registered with its owner (popped: an
            # id queued twice is sent once); the first test runs in C, over the dict's own
            # membership test.
            gone = [oid for oid in itertools.filterfalse(has, oids) if unregister(oid, None) is not None]
            if gone:
                self._send_to_owner(owner, "remove_borrowers", gone)

    def _send_to_owner(self, owner: tuple, method: str, oids: list[bytes]) -> None:
        async def send() -> None:
            try:
                conn = await self.core.peer(owner[1])
                conn.notify(method, {"oids": oids})
            except Exception:
                pass  # the owner is gone, and with it what we would tell it

        asyncio.ensure_future(send())

    # -- actors -------------------------------------------------------------------------
    def own_actor(self, actor_id: bytes, detached: bool) -> None:
        self.owned_actors[actor_id] = detached

    def _release_actor(self, actor_id: bytes) -> None:
        """An owned actor with no handles and no borrowers left goes away (unless detached)."""
        detached = self.owned_actors.pop(actor_id)
        self.release_creation_args(actor_id)
        if not detached and not self.core.stopped:
            self.core.gcs.notify(
                "kill_actor", {"actor_id": actor_id, "no_restart": True, "reason": "out_of_scope"}
            )

    def release_creation_args(self, actor_id: bytes) -> None:
        entry = self.actor_creations.pop(actor_id, None)
        if entry is not None and entry.uses:
            self.core.refs.remove_task_uses(entry.uses)

    # -- borrowing ------------------------------------------------------------------------
    def register_borrows(self) -> None:
        """Tell the owners of refs and handles this process just received that it holds them.

        From a user thread this waits for the owners' answers, so a task that received a
        ref is registered before it can finish and release its caller's hold on the ref.
        """
        queue = self.core.refs.new_borrowed
        if not queue:
            return
        by_owner: dict[tuple, list[bytes]] = {}
        while queue:
            try:
                oid, owner = queue.popleft()
            except IndexError:
                break
            by_owner.setdefault(owner, []).append(oid)
        core = self.core
        if threading.current_thread() is core.io_thread:
            asyncio.ensure_future(self._register(by_owner))
            return
        try:
            core.run(self._register(by_owner), timeout=30)
        except Exception:
            logger.warning("could not register borrowed refs with their owners", exc_info=True)

    async def _register(self, by_owner: dict[tuple, list[bytes]]) -> None:
        has = self.core.refs.has
        registered = self._registered
        for owner, oids in by_owner.items():
            oids = [oid for oid in oids if oid not in registered]  # the owner counts us already
            if not oids:
                continue
            try:
                conn = await self.core.peer(owner[1])
                accepted = await conn.call("add_borrowers", {"oids": oids})
            except Exception:
                continue  # the owner is gone: get() reports OwnerDiedError
            late = []
            for oid, ok in zip(oids, accepted):
                if not ok:
                    continue
                if has(oid):
                    registered[oid] = owner
                else:
                    late.append(oid)  # dropped while we were registering
            if late:
                conn.notify("remove_borrowers", {"oids": late})

    def _h_add_borrowers(self, conn: Connection, p: dict) -> list[bool]:
        accepted = self.core.refs.add_borrowers(p["oids"])
        counts = self._borrowers_by_conn.setdefault(conn, collections.Counter())
        for oid, ok in zip(p["oids"], accepted):
            if ok:
                counts[oid] += 1
        self._borrowers_changed()
        return accepted

    def _h_remove_borrowers(self, conn: Connection, p: dict) -> None:
        counts = self._borrowers_by_conn.get(conn)
        if counts is None:
            return
        gone = []
        for oid in p["oids"]:
            if counts.get(oid, 0) > 0:
                counts[oid] -= 1
                gone.append(oid)
        self.core.refs.remove_borrowers(gone)
        self._borrowers_changed()

    def on_connection_closed(self, conn: Connection) -> None:
        """A borrower's connection closed: it holds nothing any more."""
        counts = self._borrowers_by_conn.pop(conn, None)
        if counts:
            self.core.refs.remove_borrowers([oid for oid, n in counts.items() for _ in range(n)])
            self._borrowers_changed()

    def _borrowers_changed(self) -> None:
        self._has_borrowers = any(n > 0 for c in self._borrowers_by_conn.values() for n in c.values())
        self.report_ownership()

    def _h_release_contained(self, conn: Connection, p: dict) -> None:
        for oid in p["oids"]:
            self.contained.pop(oid, None)
        self.report_ownership()

    def report_ownership(self) -> None:
        """Tell the raylet whether this worker owns objects others use (then it is not trimmed)."""
        core = self.core
        owns = bool(self.contained) or self._has_borrowers
        if core.mode == "worker" and owns != self.reported_owns and core.raylet is not None:
            self.reported_owns = owns
            core.post(core.raylet.notify, "worker_owns_objects", {"worker_id": core.worker_id, "owns": owns})
