"""CoreWorker: one per driver or worker process.

An asyncio loop on its own thread owns every socket. User threads call put/get/wait and
submit tasks; the fast paths (a local get, a put of a small value, queuing a task) touch
only in-process state, and hand work to the loop in batches through `post`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import logging
import os
import sys
import threading
from typing import Any

from skate import _ids
from skate._config import MAX_INLINE_BYTES
from skate._serialization import (
    KIND_ERROR,
    SerializedObject,
    deserialize_inline,
    read_from_buffer,
    serialize,
    store_layout,
    write_to_buffer,
)
from skate.core_worker import context
from skate.core_worker.memory_store import IN_STORE, INLINE, MemoryStore, Waiter
from skate.core_worker.object_table import RECORD_CALL_SITES, call_site, object_table
from skate.core_worker.plasma import ArenaMapping
from skate.core_worker.reference_counter import ReferenceCounter
from skate.exceptions import (
    GetTimeoutError,
    ObjectLostError,
    OwnerDiedError,
    RaySystemError,
    RayTaskError,
)
from skate.protocol import Connection, connect, listen

logger = logging.getLogger(__name__)


def error_entry(exc: BaseException) -> tuple:
    """A memory-store entry that makes `get` raise `exc`."""
    return (INLINE, serialize(exc, KIND_ERROR).to_inline())


def task_error_entry(function_name: str, exc: BaseException, pid: int, ip: str) -> tuple:
    """The entry for a task that raised `exc`: a RayTaskError that is sure to unpickle.

    An exception that cannot be pickled, or cannot be rebuilt from its pickle (a custom
    __init__ with other arguments), is replaced by a RayError with its message, so the
    caller still sees the remote traceback rather than a pickling failure.
    """
    err = RayTaskError.from_exception(function_name, exc, pid, ip)
    try:
        data = serialize(err, KIND_ERROR).to_inline()
        deserialize_inline(data)
        return (INLINE, data)
    except Exception as problem:
        err = err.with_unserializable_cause(problem)
        return (INLINE, serialize(err, KIND_ERROR).to_inline())


class CoreWorker:
    def __init__(self, info: dict, mode: str):
        self.info = info
        self.mode = mode
        self.worker_id: str = info["worker_id"]
        self.node_id: str = info["node_id"]
        self.session_dir: str = info["session_dir"]
        self.token: bytes = info["token"]
        self.job_id: str | None = info.get("job_id")
        self.namespace: str | None = info.get("namespace")
        self.address = f"unix://{self.session_dir}/sockets/{self.worker_id[:12]}.sock"
        self.owner_address = (self.worker_id, self.address)
        self.task_ids = _ids.TaskIdFactory()
        self.current_task_id: bytes = self.task_ids.next()
        self.current_task_name: str | None = None
        self.assigned_resources: dict[str, float] = {}
        self.gpu_ids: list[int] = []
        self._put_index = itertools.count(1)
        self.refs = ReferenceCounter(self._on_ref_zero)
        self.store = MemoryStore()
        self.contained: dict[bytes, list] = {}  # owned object -> refs captured inside it
        self.stopped = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._posted: collections.deque = collections.deque()
        self._post_scheduled = False
        self.gcs: Connection | None = None
        self.raylet: Connection | None = None
        self._listeners: list = []
        self._peer_conns: dict[str, asyncio.Future] = {}
        self._fetching: set[bytes] = set()
        self._borrowed_registered: dict[bytes, tuple] = {}  # borrowed object -> owner we told
        self._unborrow_pending: dict[tuple, list[bytes]] = {}
        self._unborrow_scheduled = False
        self._reported_owns = False
        self._has_borrowers = False  # kept by the I/O thread: some process borrows an object of ours
        self._unborrow_lock = threading.RLock()  # reentrant: a GC-run __del__ may land here
        self._borrowers_by_conn: dict[Connection, collections.Counter] = {}
        self.remote_contained: dict[bytes, str] = {}  # owned object -> worker keeping refs inside it
        self.call_sites: dict[bytes, str] = {}  # where refs were created (when recording is on)
        self.pinned_views: dict[bytes, int] = {}  # objects this process reads zero-copy right now
        self.plasma: ArenaMapping | None = None
        self.handlers: dict[str, Any] = {
            "get_object": self._h_get_object,
            "raylet_reclaim": lambda conn, p: self.submitter.return_idle_leases(),
            "infeasible": self._h_infeasible,
            "logs": self._h_logs,
            "add_borrowers": self._h_add_borrowers,
            "remove_borrowers": self._h_remove_borrowers,
            "release_contained": self._h_release_contained,
            "object_table": lambda conn, p: object_table(self),
            "oom_killed": lambda conn, p: self.submitter.on_oom_killed(p["worker_id"], p.get("threshold")),
        }
        self._infeasible_reported: set = set()
        self.in_task_blocking = False  # set by the executor while a task runs
        from skate.core_worker.actors import ActorClient
        from skate.core_worker.functions import FunctionManager
        from skate.core_worker.submitter import TaskSubmitter

        self.functions = FunctionManager(self)
        self.submitter = TaskSubmitter(self)
        self.actors = ActorClient(self)
        self.actor_id: str | None = None
        self.actor_name: str | None = None
        self.actor_reconstructed = False

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Start the I/O thread and connect to the GCS and the raylet."""
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run_loop, args=(ready,), name="skate-io", daemon=True)
        self._thread.start()
        self.loop = ready.result()
        try:
            self.run(self._connect(), timeout=30)
        except BaseException:
            logger.exception("the core worker failed to start")
            self.stop()
            raise
        context.current = self

    def _run_loop(self, ready: concurrent.futures.Future) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        ready.set_result(loop)
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            except Exception:
                pass
            loop.close()

    async def _connect(self) -> None:
        unix = await listen(
            self.address,
            self.token,
            self.handlers,
            on_close=self._on_server_conn_closed,
            name=f"core-{self.worker_id[:8]}",
        )
        tcp = await listen(
            f"tcp://{self.info.get('node_ip', '127.0.0.1')}:0",
            self.token,
            self.handlers,
            on_close=self._on_server_conn_closed,
            name=f"core-{self.worker_id[:8]}",
        )
        self._listeners = [unix, tcp]
        # Peers on this machine use the Unix socket, others the TCP port.
        self.address = f"{unix.address}|{tcp.address}"
        self.owner_address = (self.worker_id, self.address)
        self.gcs = await connect(
            self.info["gcs_address"], self.token, self.handlers, name="gcs", on_close=self._on_gcs_lost
        )
        self.raylet = await connect(
            self.info["raylet_address"],
            self.token,
            self.handlers,
            name="raylet",
            on_close=self._on_raylet_lost,
        )
        reg = {"worker_id": self.worker_id, "pid": os.getpid(), "address": self.address, "mode": self.mode}
        if self.mode == "driver":
            job = await self.gcs.call(
                "register_job",
                {"driver_id": self.worker_id, "pid": os.getpid(), "namespace": self.namespace},
            )
            self.job_id = job["job_id"]
            self.namespace = job["namespace"]
            reg["job_id"] = self.job_id
        node = await self.raylet.call("register_client", reg)
        self.plasma = ArenaMapping(node["arena_path"], node["arena_capacity"])

    def _on_raylet_lost(self, conn: Connection) -> None:
        if not self.stopped:
            logger.error("lost the connection to the raylet: %s", conn.close_reason)
            if self.mode == "worker":
                os._exit(1)

    def _on_gcs_lost(self, conn: Connection) -> None:
        # Tasks keep running: a worker ends with its raylet, not with the GCS.
        if not self.stopped:
            logger.warning("lost the connection to the GCS: %s", conn.close_reason)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if context.current is self:
            context.current = None
        loop = self.loop
        if loop is not None and loop.is_running():

            async def close_all():
                for conn in (self.gcs, self.raylet):
                    if conn is not None:
                        conn.close("shutdown")
                for fut in self._peer_conns.values():
                    if fut.done() and not fut.exception():
                        fut.result().close("shutdown")
                for listener in self._listeners:
                    listener.close()
                others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in others:  # lease requests and fetches still waiting: nobody wants them
                    task.cancel()
                await asyncio.gather(*others, return_exceptions=True)

            try:
                asyncio.run_coroutine_threadsafe(close_all(), loop).result(5)
            except Exception:
                pass
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        if self.plasma is not None:
            self.plasma.close()

    # -- running things on the loop ---------------------------------------------------
    def run(self, awaitable, timeout: float | None = None):
        """Run a coroutine on the I/O loop from a user thread and wait for its result."""
        if self.stopped:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise RaySystemError("skate has been shut down")
        return asyncio.run_coroutine_threadsafe(awaitable, self.loop).result(timeout)

    def request(self, conn: Connection, method: str, payload: Any = None, timeout: float | None = None):
        """Send a request from a user thread and wait for the reply."""
        return self.run(_call(conn, method, payload), timeout)

    def post(self, fn, *args) -> None:
        """Run fn(*args) on the I/O loop soon; calls posted together run in one batch."""
        self._posted.append((fn, args))
        if not self._post_scheduled:
            self._post_scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain_posted)
            except RuntimeError:
                pass  # loop closed during shutdown

    def _drain_posted(self) -> None:
        self._post_scheduled = False
        posted = self._posted
        while posted:
            fn, args = posted.popleft()
            try:
                fn(*args)
            except Exception:
                logger.exception("posted call %s failed", getattr(fn, "__name__", fn))

    async def peer(self, address: str) -> Connection:
        """A cached connection to another core worker."""
        fut = self._peer_conns.get(address)
        if fut is not None:
            conn = await fut
            if not conn.closed:
                return conn
        fut = self.loop.create_future()
        self._peer_conns[address] = fut
        try:
            conn = await connect(
                address,
                self.token,
                self.handlers,
                name=f"peer {address[-20:]}",
                on_close=self._on_peer_closed,
            )
        except BaseException as exc:
            self._peer_conns.pop(address, None)
            fut.set_exception(exc)
            fut.exception()
            raise
        fut.set_result(conn)
        return conn

    def _on_peer_closed(self, conn: Connection) -> None:
        if not self.stopped:
            self.submitter.on_connection_lost(conn)

    async def remote_raylet(self, address: str) -> Connection:
        """A connection to another node's raylet, registered as an owner there."""
        conn = await self.peer(address)
        if not conn.peer_info.get("registered"):
            await conn.call(
                "register_client",
                {"worker_id": self.worker_id, "pid": os.getpid(), "address": self.address, "mode": "owner"},
            )
            conn.peer_info["registered"] = True
        return conn

    async def node_info(self, node_id: str) -> dict | None:
        for node in await self.gcs.call("get_nodes"):
            if node["node_id"] == node_id:
                return node
        return None

    # -- objects: put -----------------------------------------------------------------
    def put(self, value: Any) -> Any:
        from skate.object_ref import ObjectRef

        sobj = serialize(value)
        oid = _ids.object_id_for_put(self.current_task_id, next(self._put_index))
        ref = ObjectRef(oid, None, self)
        if RECORD_CALL_SITES:
            self.call_sites[oid] = call_site()
        self.store_owned(oid, sobj)
        return ref

    def store_owned(self, object_id: bytes, sobj: SerializedObject) -> None:
        """Keep an owned object: inline in memory, or in the node's shared store."""
        if sobj.contained_refs:
            self.contained[object_id] = list(sobj.contained_refs)
        if sobj.size < MAX_INLINE_BYTES:
            self.store.put(object_id, (INLINE, sobj.to_inline()))
        else:
            self.write_to_plasma(object_id, sobj, self.worker_id)
            self.store.put(object_id, (IN_STORE, self.node_id, sobj.size))

    def write_to_plasma(self, object_id: bytes, sobj: SerializedObject, owner: str) -> int:
        """Serialize once straight into the shared-memory store; returns the allocation size."""
        layout = store_layout(sobj)
        size = layout[2]
        offset = self.call_raylet("store_create", {"oid": object_id, "size": size, "owner": owner})["offset"]
        write_to_buffer(sobj, self.plasma.writable(offset, size), layout)
        self.post(self.raylet.notify, "store_seal", {"oid": object_id})
        return size

    def call_raylet(self, method: str, payload: Any) -> Any:
        from skate.exceptions import ObjectStoreFullError
        from skate.protocol.connection import RemoteError

        try:
            return self.request(self.raylet, method, payload)
        except RemoteError as exc:
            if exc.kind == "ObjectStoreFullError":
                raise ObjectStoreFullError(str(exc).split(": ", 1)[-1]) from None
            raise

    # -- objects: reference counting --------------------------------------------------
    def _on_ref_zero(self, object_id: bytes, owner: tuple | None) -> None:
        if self.stopped:
            return
        entry = self.store.delete(object_id)
        if owner is not None:
            if self._borrowed_registered.pop(object_id, None) is not None:
                self._queue_unborrow(owner, object_id)
            return
        self.contained.pop(object_id, None)
        self.call_sites.pop(object_id, None)
        if self.submitter.lineage:
            self.post(self.submitter.drop_lineage, object_id)
        holder = self.remote_contained.pop(object_id, None)
        if holder is not None:
            self.post(self._send_to_owner, (None, holder), "release_contained", [object_id])
        if entry is not None and entry[0] == IN_STORE:
            self.post(self.raylet.notify, "store_free", {"oids": [object_id]})

    # -- borrowing --------------------------------------------------------------------
    def register_borrows(self) -> None:
        """Tell the owners of refs this process just received that it holds them.

        From a user thread this waits for the owners' answers, so a task that received a
        ref is registered before it can finish and release its caller's hold on the ref.
        """
        queue = self.refs.new_borrowed
        if not queue:
            return
        by_owner: dict[tuple, list[bytes]] = {}
        while queue:
            try:
                oid, owner = queue.popleft()
            except IndexError:
                break
            by_owner.setdefault(owner, []).append(oid)
        if threading.current_thread() is self._thread:
            asyncio.ensure_future(self._register_borrows(by_owner))
            return
        try:
            self.run(self._register_borrows(by_owner), timeout=30)
        except Exception:
            logger.warning("could not register borrowed refs with their owners", exc_info=True)

    async def _register_borrows(self, by_owner: dict[tuple, list[bytes]]) -> None:
        for owner, oids in by_owner.items():
            try:
                conn = await self.peer(owner[1])
                accepted = await conn.call("add_borrowers", {"oids": oids})
            except Exception:
                continue  # the owner is gone: get() reports OwnerDiedError
            late = []
            for oid, ok in zip(oids, accepted):
                if not ok:
                    continue
                if self.refs.has(oid):
                    self._borrowed_registered[oid] = owner
                else:
                    late.append(oid)  # dropped while we were registering
            if late:
                conn.notify("remove_borrowers", {"oids": late})

    def _queue_unborrow(self, owner: tuple, object_id: bytes) -> None:
        """Batch "remove_borrowers" per owner: dropping a list of 10k refs sends one message."""
        with self._unborrow_lock:
            self._unborrow_pending.setdefault(owner, []).append(object_id)
            if self._unborrow_scheduled:
                return
            self._unborrow_scheduled = True
        self.post(self._flush_unborrows)

    def _flush_unborrows(self) -> None:
        with self._unborrow_lock:
            pending, self._unborrow_pending = self._unborrow_pending, {}
            self._unborrow_scheduled = False
        for owner, oids in pending.items():
            self._send_to_owner(owner, "remove_borrowers", oids)

    def _send_to_owner(self, owner: tuple, method: str, oids: list[bytes]) -> None:
        async def send() -> None:
            try:
                conn = await self.peer(owner[1])
                conn.notify(method, {"oids": oids})
            except Exception:
                pass  # the owner is gone, and with it what we would tell it

        asyncio.ensure_future(send())

    def _h_add_borrowers(self, conn: Connection, p: dict) -> list[bool]:
        accepted = self.refs.add_borrowers(p["oids"])
        counts = self._borrowers_by_conn.setdefault(conn, collections.Counter())
        for oid, ok in zip(p["oids"], accepted):
            if ok:
                counts[oid] += 1
        self._borrowers_changed()
        return accepted

    def _borrowers_changed(self) -> None:
        self._has_borrowers = any(n > 0 for c in self._borrowers_by_conn.values() for n in c.values())
        self.report_ownership()

    def _h_remove_borrowers(self, conn: Connection, p: dict) -> None:
        counts = self._borrowers_by_conn.get(conn)
        if counts is None:
            return
        gone = []
        for oid in p["oids"]:
            if counts.get(oid, 0) > 0:
                counts[oid] -= 1
                gone.append(oid)
        self.refs.remove_borrowers(gone)
        self._borrowers_changed()

    def _h_release_contained(self, conn: Connection, p: dict) -> None:
        for oid in p["oids"]:
            self.contained.pop(oid, None)
        self.report_ownership()

    def report_ownership(self) -> None:
        """Tell the raylet whether this worker owns objects others use (then it is not trimmed)."""
        owns = bool(self.contained) or self._has_borrowers
        if self.mode == "worker" and owns != self._reported_owns and self.raylet is not None:
            self._reported_owns = owns
            self.post(self.raylet.notify, "worker_owns_objects", {"worker_id": self.worker_id, "owns": owns})

    def _on_server_conn_closed(self, conn: Connection) -> None:
        """A borrower's connection closed: it holds nothing any more."""
        counts = self._borrowers_by_conn.pop(conn, None)
        if counts:
            self.refs.remove_borrowers([oid for oid, n in counts.items() for _ in range(n)])
            self._borrowers_changed()
        if hasattr(self, "actors"):
            self.actors.on_connection_closed(conn)

    # -- objects: get / wait ----------------------------------------------------------
    def get(self, refs: list, timeout: float | None = None) -> list:
        store = self.store
        entries = [store.get(r._id) for r in refs]
        if None in entries:
            missing = {r._id: r for r, e in zip(refs, entries) if e is None}
            waiter = Waiter(len(missing))
            store.watch(missing, waiter)
            if not waiter.done():
                self.post(self._fetch_missing, list(missing.values()))
                blocked = self._block()
                try:
                    ok = waiter.event.wait(timeout)
                finally:
                    if blocked:
                        self._unblock()
                if not ok:
                    store.unwatch(missing, waiter)
                    raise GetTimeoutError(
                        f"Get timed out: {len(missing) - len(waiter.ready)} of {len(refs)} objects "
                        f"were not ready after {timeout} s."
                    )
            entries = [store.get(r._id) for r in refs]
        values = self._materialize(refs, entries)
        if self.refs.new_borrowed:
            self.register_borrows()
        return values

    def _materialize(self, refs: list, entries: list) -> list:
        values: list = [None] * len(refs)
        in_store = []
        for i, entry in enumerate(entries):
            if entry is None:
                values[i] = ObjectLostError(f"Object {refs[i].hex()} was freed while being read.")
                self._raise_error(values[i])
            if entry[0] == INLINE:
                kind, value = deserialize_inline(entry[1])
                if kind == KIND_ERROR:
                    self._raise_error(value)
                values[i] = value
            else:
                in_store.append(i)
        if in_store:
            self._read_from_plasma(refs, entries, in_store, values)
        return values

    def _read_from_plasma(self, refs, entries, indexes, values) -> None:
        oids = [refs[i]._id for i in indexes]
        sources = {refs[i]._id: entries[i][1] for i in indexes if entries[i][1] not in (None, self.node_id)}
        locations = self.call_raylet("store_get", {"oids": oids, "sources": sources})
        for i, oid, loc in zip(indexes, oids, locations):
            if loc is None:
                if refs[i]._owner is None and self.run(self._reconstruct(oid), timeout=30):
                    # Every copy was lost (its node died): the task that made it runs again.
                    values[i] = self.get([refs[i]])[0]
                    continue
                self._raise_error(
                    ObjectLostError(
                        f"Object {oid.hex()} was lost: every copy is gone (its node may have died) and it "
                        "cannot be rebuilt (it was put, or the task that made it has no retries left).",
                        oid.hex(),
                    )
                )
            offset, size = loc
            self.pinned_views[oid] = self.pinned_views.get(oid, 0) + 1
            view = self.plasma.pinned_view(offset, size, _Releaser(self, oid))
            kind, value = read_from_buffer(view)
            if kind == KIND_ERROR:
                self._raise_error(value)
            values[i] = value

    async def _reconstruct(self, oid: bytes) -> bool:
        return self.submitter.reconstruct(oid)

    @staticmethod
    def _raise_error(err: BaseException):
        if isinstance(err, RayTaskError):
            raise err.as_instanceof_cause()
        raise err

    def wait(self, refs: list, num_returns: int, timeout: float | None, fetch_local: bool) -> list[bytes]:
        """Ids of the first `num_returns` ready objects (fewer on timeout); with fetch_local,
        ready objects held on other nodes are copied to this node first."""
        ready = self._wait_ready(refs, num_returns, timeout)
        if fetch_local:
            self._pull_to_this_node(ready[:num_returns])
        return ready

    def _pull_to_this_node(self, oids: list[bytes]) -> None:
        sources = {}
        for oid in oids:
            entry = self.store.get(oid)
            if entry is not None and entry[0] == IN_STORE and entry[1] not in (None, self.node_id):
                sources[oid] = entry[1]
        if sources:
            self.call_raylet("store_pull", {"sources": sources})

    def _wait_ready(self, refs: list, num_returns: int, timeout: float | None) -> list[bytes]:
        objects = self.store._objects
        ready = [r._id for r in refs if r._id in objects]
        if len(ready) >= num_returns or timeout == 0:
            return ready
        oids = [r._id for r in refs]
        waiter = Waiter(num_returns)
        self.store.watch(oids, waiter)
        if not waiter.done():
            borrowed = [r for r in refs if r._owner is not None and r._id not in objects]
            if borrowed:
                self.post(self._fetch_missing, borrowed)
            blocked = self._block()
            try:
                waiter.event.wait(timeout)
            finally:
                if blocked:
                    self._unblock()
            self.store.unwatch(oids, waiter)
        return list(waiter.ready)

    def future_for(self, ref) -> concurrent.futures.Future:
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
            self.post(self._fetch_missing, [ref])
        return fut

    def _block(self) -> bool:
        if self.in_task_blocking and self.raylet is not None:
            self.post(self.raylet.notify, "worker_blocked", {"worker_id": self.worker_id})
            return True
        return False

    def _unblock(self) -> None:
        self.post(self.raylet.notify, "worker_unblocked", {"worker_id": self.worker_id})

    # -- fetching borrowed objects from their owners (I/O thread) ---------------------
    def _fetch_missing(self, refs: list) -> None:
        for ref in refs:
            oid = ref._id
            owner = ref._owner
            if owner is None or oid in self.store or oid in self._fetching:
                continue
            self._fetching.add(oid)
            asyncio.ensure_future(self._fetch_from_owner(oid, owner))

    async def _fetch_from_owner(self, oid: bytes, owner: tuple) -> None:
        try:
            conn = await self.peer(owner[1])
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
        if self.refs.has(oid):
            self.store.put(oid, entry)

    # -- handlers (I/O thread) --------------------------------------------------------
    def _h_get_object(self, conn: Connection, payload: dict):
        oid = payload["oid"]
        entry = self.store.get(oid)
        if entry is not None:
            return list(entry)
        if not self.refs.has(oid):
            return None
        fut = self.loop.create_future()

        def done(_w: Waiter) -> None:
            self.loop.call_soon_threadsafe(_set_if_pending, fut, list(self.store.get(oid) or ()) or None)

        self.store.watch([oid], Waiter(1, done))
        return fut

    def _h_infeasible(self, conn: Connection, payload: dict) -> None:
        key = tuple(sorted(payload["shape"].items()))
        if key in self._infeasible_reported:
            return
        self._infeasible_reported.add(key)
        print(
            f"(skate) Warning: the resource request {payload['shape']} cannot be scheduled: "
            f"no node has these resources (cluster total: {payload.get('total')}). "
            "The task stays pending until a node that can run it joins.",
            file=sys.stderr,
            flush=True,
        )

    def _h_logs(self, conn: Connection, payload: dict) -> None:
        if not self.info.get("log_to_driver", True):
            return
        stream = sys.stderr if payload.get("stream") == "err" else sys.stdout
        prefix = f"({payload.get('name') or 'worker'} pid={payload.get('pid')}) "
        try:
            stream.write("".join(prefix + line + "\n" for line in payload["lines"]))
            stream.flush()
        except Exception:
            pass


async def _call(conn: Connection, method: str, payload: Any):
    return await conn.call(method, payload)


def _set_if_pending(fut: asyncio.Future, value) -> None:
    if not fut.done():
        fut.set_result(value)


class _Releaser:
    """Unpins an object in the raylet once the last view onto it is gone."""

    __slots__ = ("core", "oid")

    def __init__(self, core: CoreWorker, oid: bytes):
        self.core = core
        self.oid = oid

    def __call__(self) -> None:
        core = self.core
        n = core.pinned_views.get(self.oid, 0) - 1
        if n > 0:
            core.pinned_views[self.oid] = n
        else:
            core.pinned_views.pop(self.oid, None)
        if not core.stopped:
            core.post(core.raylet.notify, "store_release", {"oids": [self.oid]})
