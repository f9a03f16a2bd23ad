"""Objects as one process sees them: put, get, wait, and reading from shared memory.

The fast paths run on the user's thread and touch only in-process state: a put of a small
value, a get of a value already here. A get that must wait registers a `Waiter` under the
store's lock, so no wake-up is lost, and hands any fetch from another owner to the I/O loop.

A value is either inline (the serialized bytes themselves) or in a node's shared-memory
store. Reading a stored value pins it in the raylet and returns zero-copy views; the pin is
released when the last view is garbage. A stored value whose every copy is gone is rebuilt
from lineage: by this process if it owns the object, otherwise by asking its owner.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import logging
import threading
from typing import Any

from skate import _ids
from skate._config import MAX_INLINE_BYTES
from skate._serialization import (
    KIND_ERROR,
    KIND_VALUE,
    SerializedObject,
    deserialize_inline,
    layout_for,
    read_from_buffer,
    serialize,
    store_layout,
    write_to_buffer,
)
from skate.core_worker.call_context import current_call
from skate.core_worker.errors import error_entry, is_error_entry
from skate.core_worker.memory_store import Waiter
from skate.core_worker.object_table import RECORD_CALL_SITES, call_site
from skate.exceptions import (
    GetTimeoutError,
    ObjectLostError,
    ObjectStoreFullError,
    OwnerDiedError,
    RayTaskError,
)
from skate.object_ref import ObjectRef
from skate.protocol.connection import Connection, RemoteError
from skate.protocol.messages import IN_STORE, INLINE

logger = logging.getLogger(__name__)

# A lost object is rebuilt at most this many times for one read.
MAX_REBUILDS_PER_READ = 3


def raise_error(err: BaseException):
    if isinstance(err, RayTaskError):
        raise err.as_instanceof_cause()
    raise err


class Objects:
    def __init__(self, core: Any):
        self.core = core
        self.store = core.store
        self.refs = core.refs
        self.put_index = itertools.count(1)
        self.pinned_views: dict[bytes, int] = {}  # objects this process reads zero-copy right now
        self._fetching: set[bytes] = set()
        core.handlers["get_object"] = self._h_get_object
        core.handlers["reconstruct_object"] = self._h_reconstruct_object

    # -- put ----------------------------------------------------------------------------
    def put(self, value: Any, object_id: bytes | None = None) -> ObjectRef:
        """Store `value`, owned here; `object_id` is given only by a client's proxy (the client
        minted it, as `_ids.object_id_for_put` does)."""
        core = self.core
        sobj = serialize(value)
        oid = object_id
        if oid is None:
            call = current_call()
            task_id = call.task_id if call is not None else core.driver_task_id
            oid = _ids.object_id_for_put(task_id, next(self.put_index))
        ref = ObjectRef(oid, None, core)
        if RECORD_CALL_SITES:
            core.ownership.call_sites[oid] = call_site()
        self.store_owned(oid, sobj)
        return ref

    def store_owned(self, object_id: bytes, sobj: SerializedObject) -> None:
        """Keep an owned object: inline in memory, or in the node's shared store."""
        if sobj.contained_refs:
            self.core.ownership.contained[object_id] = list(sobj.contained_refs)
        if sobj.size < MAX_INLINE_BYTES:
            self.store.put(object_id, (INLINE, sobj.to_inline()))
        else:
            self.write_to_plasma(object_id, sobj, self.core.worker_id)
            self.store.put(object_id, (IN_STORE, self.core.node_id, sobj.size))

    def write_to_plasma(self, object_id: bytes, sobj: SerializedObject, owner: str) -> int:
        """Serialize once straight into the shared-memory store; returns the allocation size."""
        core = self.core
        layout = store_layout(sobj)
        size = layout[2]
        offset = self.call_raylet("store_create", {"oid": object_id, "size": size, "owner": owner})["offset"]
        write_to_buffer(sobj, core.plasma.writable(offset, size), layout)
        core.post(core.raylet.notify, "store_seal", {"oid": object_id})
        return size

    def begin_put(self, object_id: bytes, sizes: list[int]) -> tuple[list[memoryview], int]:
        """Room in the shared store for a put whose pickled parts arrive later (a client's
        upload, written there as it comes instead of assembled and copied): writable views for
        the in-band pickle and each out-of-band buffer (of `sizes`), and the allocation size.
        `end_put` makes it the value of `object_id`; an unfinished one goes with its owner.
        Only for values of at least MAX_INLINE_BYTES that hold no refs (nothing to register)."""
        core = self.core
        header, offsets, size = layout_for(KIND_VALUE, sizes[0], sizes[1:])
        offset = self.call_raylet("store_create", {"oid": object_id, "size": size, "owner": core.worker_id})[
            "offset"
        ]
        dest = core.plasma.writable(offset, size)
        dest[: len(header)] = header
        return [dest[off : off + n] for off, n in zip(offsets, sizes)], size

    def end_put(self, object_id: bytes, sizes: list[int]) -> ObjectRef:
        """The put `begin_put` started is written in full: seal it, it is owned here."""
        core = self.core
        ref = ObjectRef(object_id, None, core)
        if RECORD_CALL_SITES:
            core.ownership.call_sites[object_id] = call_site()
        core.post(core.raylet.notify, "store_seal", {"oid": object_id})
        self.store.put(object_id, (IN_STORE, core.node_id, sum(sizes)))
        return ref

    def call_raylet(self, method: str, payload: Any) -> Any:
        core = self.core
        try:
            return core.request(core.raylet, method, payload)
        except RemoteError as exc:
            if isinstance(exc.cause, ObjectStoreFullError):
                raise exc.cause from None
            raise

    # -- get ----------------------------------------------------------------------------
    def get(self, refs: list, timeout: float | None = None) -> list:
        """The values of `refs`, waiting as needed; the first error among them is raised at once."""
        store = self.store
        entries = [store.get(r._id) for r in refs]
        if None in entries and len(refs) == 1 and self.core.actor_submitter.lane_calls:
            # A sync actor call's result: read its reply off the lane here (caller_lane).
            if self.core.actor_submitter.collect(refs[0]._id, timeout) is None:
                raise GetTimeoutError(f"Get timed out: 1 of 1 objects were not ready after {timeout} s.")
            entries = [store.get(refs[0]._id)]
        if None in entries:
            missing = {r._id: r for r, e in zip(refs, entries) if e is None}
            waiter = Waiter(len(missing), fail_fast=True)
            store.watch(missing, waiter)
            if not waiter.done():
                borrowed = [r for r in missing.values() if r._owner is not None]
                if borrowed:  # (our own objects come to us: nothing to fetch)
                    self.core.post(self.fetch_missing, borrowed)
                blocked = self.core.block()
                try:
                    ok = waiter.wait(timeout)
                finally:
                    if blocked:
                        self.core.unblock()
                if not ok or not waiter.done():  # timed out, or woken early by an error
                    store.unwatch(missing, waiter)
                if not ok:
                    raise GetTimeoutError(
                        f"Get timed out: {len(missing) - len(waiter.ready)} of {len(refs)} objects "
                        f"were not ready after {timeout} s."
                    )
            entries = [store.get(r._id) for r in refs]
            if None in entries:  # woken by an error: raise it without waiting for the rest
                for entry in entries:
                    if entry is not None and is_error_entry(entry):
                        raise_error(deserialize_inline(entry[1])[1])
        values = self.materialize(refs, entries)
        if self.refs.new_borrowed:
            self.core.ownership.register_borrows()
        return values

    def materialize(self, refs: list, entries: list) -> list:
        values: list = [None] * len(refs)
        in_store = []
        for i, entry in enumerate(entries):
            if entry is None:
                raise_error(ObjectLostError(f"Object {refs[i].hex()} was freed while being read."))
            if entry[0] == INLINE:
                kind, value = deserialize_inline(entry[1])
                if kind == KIND_ERROR:
                    raise_error(value)
                values[i] = value
            else:
                in_store.append(i)
        if in_store:
            loaded = self.read_stored([(refs[i]._id, tuple(entries[i]), refs[i]._owner) for i in in_store])
            for i, value in zip(in_store, loaded):
                values[i] = value
        return values

    def read_stored(self, items: list) -> list:
        """Read values held in shared-memory stores: `items` is [(object_id, entry, owner)].

        Copies on other nodes are pulled here first. A value whose every copy is lost is
        rebuilt through its owner (this process, when owner is None) and read again.
        """
        values: list = [None] * len(items)
        todo = list(range(len(items)))
        rebuilds = 0
        while todo:
            oids = [items[i][0] for i in todo]
            sources = {
                items[i][0]: items[i][1][1] for i in todo if items[i][1][1] not in (None, self.core.node_id)
            }
            locations = self.call_raylet("store_get", {"oids": oids, "sources": sources})
            lost = []
            for i, oid, loc in zip(todo, oids, locations):
                if loc is None:
                    lost.append(i)
                    continue
                offset, size = loc
                self.pinned_views[oid] = self.pinned_views.get(oid, 0) + 1
                view = self.core.plasma.pinned_view(offset, size, _Releaser(self.core, oid))
                kind, value = read_from_buffer(view)
                if kind == KIND_ERROR:
                    raise_error(value)
                values[i] = value
            if lost and rebuilds >= MAX_REBUILDS_PER_READ:
                oid = items[lost[0]][0]
                raise_error(
                    ObjectLostError(f"Object {oid.hex()} was lost again while being rebuilt.", oid.hex())
                )
            rebuilds += 1
            for i in lost:
                oid, old, owner = items[i]
                entry = self.core.run(self.recover(oid, owner, old[1]), timeout=None)
                if is_error_entry(entry):
                    raise_error(deserialize_inline(entry[1])[1])
                if entry[0] == INLINE:
                    values[i] = deserialize_inline(entry[1])[1]
                    continue
                items[i] = (oid, tuple(entry), owner)
            todo = [i for i in lost if items[i][1][0] == IN_STORE]
        return values

    async def recover(self, oid: bytes, owner: tuple | list | None, node_id: str | None = None) -> tuple:
        """I/O thread: the entry of a lost object once it is rebuilt (or an error entry)."""
        if owner is None or tuple(owner) == self.core.owner_address:
            return await self.core.submitter.rebuild(oid, node_id)
        try:
            conn = await self.core.peer(owner[1])
            entry = await conn.call("reconstruct_object", {"oid": oid, "node_id": node_id})
        except RemoteError as exc:
            return error_entry(exc.cause if exc.cause is not None else exc)
        except Exception as exc:
            return error_entry(
                OwnerDiedError(
                    f"Object {oid.hex()} was lost and its owner (worker {owner[0][:8]}) cannot be "
                    f"reached to rebuild it: {exc}",
                    oid.hex(),
                )
            )
        return tuple(entry)

    async def _h_reconstruct_object(self, conn: Connection, p: dict) -> list:
        return list(await self.core.submitter.rebuild(p["oid"], p.get("node_id")))

    # -- wait ---------------------------------------------------------------------------
    def wait(
        self,
        refs: list,
        num_returns: int,
        timeout: float | None,
        fetch_local: bool,
        streams: dict[bytes, Any] | None = None,
    ) -> list[bytes]:
        """Ids of the first `num_returns` ready objects (fewer on timeout); with fetch_local,
        ready objects held on other nodes are copied to this node first.

        `streams` (key -> a generator's Stream) are waited on with the refs: a stream is ready,
        and its key among the returned ids, when next() on it would not wait (its next item
        has arrived, or the task has ended), as Ray's wait treats an ObjectRefGenerator."""
        ready = self._wait_ready(refs, num_returns, timeout, streams or {})
        if fetch_local:
            oids = ready[:num_returns]
            if streams:  # a ready stream's next item is what the caller will read
                oids = [streams[k].next_item_id() if k in streams else k for k in oids]
            self._pull_to_this_node([oid for oid in oids if oid is not None])
        return ready

    def _pull_to_this_node(self, oids: list[bytes]) -> None:
        sources = {}
        for oid in oids:
            entry = self.store.get(oid)
            if entry is not None and entry[0] == IN_STORE and entry[1] not in (None, self.core.node_id):
                sources[oid] = entry[1]
        if sources:
            self.call_raylet("store_pull", {"sources": sources})

    def _wait_ready(self, refs: list, num_returns: int, timeout: float | None, streams: dict) -> list[bytes]:
        objects = self.store._objects  # a plain dict: this runs once per ref
        ready = [r._id for r in refs if r._id in objects]
        if streams:
            ready += [key for key, stream in streams.items() if stream.ready()]
        if len(ready) >= num_returns or timeout == 0:
            return ready
        oids = [r._id for r in refs]
        waiter = Waiter(num_returns)
        self.store.watch(oids, waiter)
        wakes = {}
        for key, stream in streams.items():
            wake = functools.partial(waiter.hit, key)
            if stream.on_ready(wake):
                wakes[key] = wake
            else:
                wake()
        if not waiter.done():
            borrowed = [r for r in refs if r._owner is not None and r._id not in objects]
            if borrowed:
                self.core.post(self.fetch_missing, borrowed)
            blocked = self.core.block()
            try:
                waiter.wait(timeout)
            finally:
                if blocked:
                    self.core.unblock()
            self.store.unwatch(oids, waiter)
        for key, wake in wakes.items():
            streams[key].off_ready(wake)
        return list(waiter.ready)

    def future_for(self, ref: ObjectRef) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def resolve(_w: Waiter | None = None) -> None:
            if fut.done():
                return
            try:
                fut.set_result(self.get([ref])[0])
            except BaseException as exc:
                fut.set_exception(exc)

        def on_ready(_w: Waiter) -> None:
            entry = self.store.get(ref._id)
            if entry is not None and entry[0] == INLINE:
                resolve()
            else:  # reading from the store waits on the raylet: never on the I/O thread
                threading.Thread(target=resolve, daemon=True).start()

        self.store.watch([ref._id], Waiter(1, on_ready))
        if ref._owner is not None:
            self.core.post(self.fetch_missing, [ref])
        return fut

    # -- fetching borrowed objects from their owners (I/O thread) -----------------------
    def fetch_missing(self, refs: list) -> None:
        for ref in refs:
            oid = ref._id
            owner = ref._owner
            if owner is None or oid in self.store or oid in self._fetching:
                continue
            self._fetching.add(oid)
            asyncio.ensure_future(self._fetch_from_owner(oid, owner))

    async def _fetch_from_owner(self, oid: bytes, owner: tuple) -> None:
        try:
            conn = await self.core.peer(owner[1])
            entry = await conn.call("get_object", {"oid": oid})
            entry = tuple(entry) if entry is not None else None
            if entry is None:
                entry = error_entry(ObjectLostError(f"Object {oid.hex()} was freed by its owner.", oid.hex()))
        except Exception as exc:
            entry = error_entry(
                OwnerDiedError(
                    f"The owner of object {oid.hex()} (worker {owner[0][:8]}) died or cannot be "
                    f"reached: {exc}",
                    oid.hex(),
                )
            )
        finally:
            self._fetching.discard(oid)
        if self.core.refs.has(oid):
            self.store.put(oid, entry)

    def _h_get_object(self, conn: Connection, payload: dict):
        oid = payload["oid"]
        entry = self.store.get(oid)
        if entry is not None:
            return list(entry)
        if not self.core.refs.has(oid):
            return None
        loop = self.core.loop
        fut = loop.create_future()

        def done(_w: Waiter) -> None:
            loop.call_soon_threadsafe(set_if_pending, fut, list(self.store.get(oid) or ()) or None)

        self.store.watch([oid], Waiter(1, done))
        return fut

    def wait_entry(self, oid: bytes) -> asyncio.Future:
        """I/O thread: a future for the entry of `oid` once it is set."""
        loop = self.core.loop
        fut = loop.create_future()
        entry = self.store.get(oid)
        if entry is not None:
            fut.set_result(entry)
            return fut

        def done(_w: Waiter) -> None:
            loop.call_soon_threadsafe(set_if_pending, fut, self.store.get(oid))

        self.store.watch([oid], Waiter(1, done))
        return fut


def set_if_pending(fut: asyncio.Future, value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


class _Releaser:
    """Unpins an object in the raylet once the last view onto it is gone."""

    __slots__ = ("core", "oid")

    def __init__(self, core: Any, oid: bytes):
        self.core = core
        self.oid = oid

    def __call__(self) -> None:
        core = self.core
        pinned = core.objects.pinned_views
        n = pinned.get(self.oid, 0) - 1
        if n > 0:
            pinned[self.oid] = n
        else:
            pinned.pop(self.oid, None)
        if not core.stopped:
            core.post(core.raylet.notify, "store_release", {"oids": [self.oid]})
