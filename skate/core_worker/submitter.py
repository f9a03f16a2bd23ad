"""Submitting tasks as their owner: resolve arguments, lease workers, push, retry.

Tasks are grouped by scheduling key (function, resource shape). For each key the owner
asks its raylet for worker leases while tasks wait, pushes tasks straight to the leased
workers, and keeps a lease while tasks of that shape keep coming. Short functions are
pipelined several deep per worker; others one at a time, so a slow task never hides a
fast one behind it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from typing import Any

from skate import _ids
from skate._config import (
    IDLE_LEASE_SECONDS,
    MAX_INLINE_BYTES,
    MAX_PENDING_LEASE_REQUESTS,
    MAX_TASKS_IN_FLIGHT_PER_WORKER,
    SHORT_TASK_SECONDS,
)
from skate._serialization import KIND_ERROR, deserialize_inline, serialize
from skate.core_worker.memory_store import IN_STORE, INLINE, Waiter
from skate.core_worker.object_table import RECORD_CALL_SITES, call_site
from skate.exceptions import (
    OutOfMemoryError,
    RaySystemError,
    RayTaskError,
    TaskCancelledError,
    WorkerCrashedError,
)

logger = logging.getLogger(__name__)

ARGS_SLOT = -1  # a dependency slot holding the whole (args, kwargs) blob, when it is large


class ArgSlot:
    """Stands in for a top-level ObjectRef argument inside the pickled arguments."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def __reduce__(self):
        return (ArgSlot, (self.index,))


class TaskEntry:
    __slots__ = (
        "spec",
        "task_id",
        "return_ids",
        "uses",
        "retries_left",
        "retry_exceptions",
        "key",
        "cancelled",
        "force",
        "lease",
        "dep_refs",
        "hold",
        "done",
        "ready",
        "seq",
        "resolved",
        "strategy",
    )

    def __init__(self, spec, task_id, return_ids, uses, retries_left, retry_exceptions, key, dep_refs, hold):
        self.spec = spec
        self.task_id = task_id
        self.return_ids = return_ids
        self.uses = uses  # object ids counted as used by this task
        self.retries_left = retries_left
        self.retry_exceptions = retry_exceptions
        self.key = key
        self.dep_refs = dep_refs  # (slot, ObjectRef) pairs to resolve before pushing
        self.hold = hold  # ObjectRefs kept alive while the task is pending
        self.cancelled = False
        self.force = False
        self.lease: Lease | None = None
        self.done = False
        self.ready = None  # called instead of queueing for a lease (actor calls), also on failure
        self.seq = 0
        self.resolved = False
        self.strategy = None


class Lease:
    __slots__ = (
        "lease_id",
        "worker_id",
        "address",
        "conn",
        "inflight",
        "idle_timer",
        "key",
        "dead",
        "oom",
        "raylet",
        "gpu_ids",
    )

    def __init__(self, lease_id, worker_id, address, conn, key):
        self.lease_id = lease_id
        self.worker_id = worker_id
        self.address = address
        self.conn = conn
        self.key = key
        self.inflight: dict[bytes, TaskEntry] = {}
        self.idle_timer = None
        self.dead = False
        self.oom: float | None = None  # the memory threshold, once the raylet killed it for memory
        self.raylet = None  # the connection to the raylet that granted it (maybe another node's)
        self.gpu_ids: list[int] = []


class KeyState:
    __slots__ = ("queue", "leases", "pending_requests", "duration", "shape", "strategy", "affinity")

    def __init__(self, shape, strategy=None):
        self.shape = shape
        # "SPREAD", or a node affinity {"node_id", "soft"}; None is the default strategy
        self.strategy = strategy if isinstance(strategy, str) else None
        self.affinity = strategy if isinstance(strategy, dict) else None
        self.queue: deque[TaskEntry] = deque()
        self.leases: dict[str, Lease] = {}  # by worker id
        self.pending_requests: set[int] = set()
        self.duration: float | None = None


class TaskSubmitter:
    def __init__(self, core):
        self.core = core
        self.tasks: dict[bytes, TaskEntry] = {}
        self.lineage: dict[bytes, TaskEntry] = {}  # finished tasks whose results may need rebuilding
        self.keys: dict[tuple, KeyState] = {}
        self._rids = itertools.count(1)

    # -- user thread ------------------------------------------------------------------
    def submit(
        self,
        function_key: bytes,
        name: str,
        args: tuple,
        kwargs: dict,
        *,
        num_returns: int,
        resources: dict[str, float],
        max_retries: int,
        retry_exceptions: Any,
        max_calls: int,
        runtime_env: dict | None,
        strategy: Any = None,
    ) -> list:
        from skate.object_ref import ObjectRef

        core = self.core
        task_id = core.task_ids.next()
        return_ids = [_ids.object_id_for_return(task_id, i + 1) for i in range(num_returns)]
        spec: dict[str, Any] = {
            "tid": task_id,
            "fn": function_key,
            "name": name,
            "nret": num_returns,
            "owner": core.owner_address,
            "job": core.job_id,
            "ns": core.namespace,
            "res": resources,
            "max_calls": max_calls,
            "renv": runtime_env,
            "args": None,
            "deps": [],
        }
        dep_refs, hold, uses = prepare_args(core, spec, name, args, kwargs)
        key = (function_key, tuple(sorted(resources.items())), _strategy_key(strategy))
        entry = TaskEntry(spec, task_id, return_ids, uses, max_retries, retry_exceptions, key, dep_refs, hold)
        entry.strategy = strategy
        refs = [ObjectRef(oid, None, core) for oid in return_ids]
        if RECORD_CALL_SITES:
            site = call_site()
            for oid in return_ids:
                core.call_sites[oid] = site
        core.post(self._on_submit, entry)
        return refs

    # -- I/O thread: dependencies -----------------------------------------------------
    def _on_submit(self, entry: TaskEntry) -> None:
        self.tasks[entry.task_id] = entry
        self.resolve_dependencies(entry)

    def resolve_dependencies(self, entry: TaskEntry) -> None:
        """Fill entry.spec['deps'] once every dependency is ready, then hand the entry on
        (to entry.ready if set, else to the lease queue); a failed dependency fails it."""
        if not entry.dep_refs:
            self._resolved(entry)
            return
        store = self.core.store
        oids = [ref._id for _, ref in entry.dep_refs]
        missing = [oid for oid in dict.fromkeys(oids) if oid not in store]
        if not missing:
            self._resolve(entry)
            return
        waiter = Waiter(len(missing), lambda w: self.core.loop.call_soon_threadsafe(self._resolve, entry))
        store.watch(missing, waiter)
        self.core._fetch_missing([ref for _, ref in entry.dep_refs])

    def _resolve(self, entry: TaskEntry) -> None:
        if entry.done:
            return
        deps = []
        for slot, ref in entry.dep_refs:
            value = self.core.store.get(ref._id)
            if value is None:  # freed under us: cannot happen while the task holds it
                self._finish_with_error(entry, RaySystemError(f"argument {ref.hex()} vanished"))
                return
            if value[0] == INLINE and value[1][0] == KIND_ERROR:
                self._finish_with_entry(entry, value)  # the dependency failed: so does this task
                return
            deps.append([slot, ref._id, list(value)])
        entry.spec["deps"] = deps
        self._resolved(entry)

    def _resolved(self, entry: TaskEntry) -> None:
        entry.resolved = True
        if entry.ready is not None:
            entry.ready(entry)
        else:
            self._enqueue(entry)

    # -- I/O thread: leases and pushing -----------------------------------------------
    def _enqueue(self, entry: TaskEntry) -> None:
        if entry.done:
            return
        ks = self.keys.get(entry.key)
        if ks is None:
            ks = self.keys[entry.key] = KeyState(dict(entry.key[1]), entry.strategy)
        ks.queue.append(entry)
        self._dispatch(ks)

    def _depth(self, ks: KeyState) -> int:
        if ks.duration is not None and ks.duration < SHORT_TASK_SECONDS:
            return MAX_TASKS_IN_FLIGHT_PER_WORKER
        return 1

    def _dispatch(self, ks: KeyState) -> None:
        depth = self._depth(ks)
        queue = ks.queue
        if queue:
            for lease in list(ks.leases.values()):
                while queue and len(lease.inflight) < depth and not lease.dead:
                    entry = queue.popleft()
                    if entry.done:
                        continue
                    self._push(lease, entry)
        if queue:
            room = min(len(queue), MAX_PENDING_LEASE_REQUESTS) - len(ks.pending_requests)
            for _ in range(room):
                rid = next(self._rids)
                ks.pending_requests.add(rid)  # counted now, so the next dispatch does not ask again
                task = asyncio.ensure_future(self._request_lease(ks, rid))
                task.add_done_callback(lambda t, k=ks, r=rid: self._lease_task_done(k, r, t))
        elif ks.pending_requests:
            for rid in list(ks.pending_requests):
                self.core.raylet.notify("cancel_lease_request", {"rid": rid})
        for lease in list(ks.leases.values()):
            if not lease.inflight and lease.idle_timer is None and not lease.dead:
                lease.idle_timer = self.core.loop.call_later(IDLE_LEASE_SECONDS, self._return_lease, lease)

    async def _request_lease(self, ks: KeyState, rid: int) -> None:
        """Lease a worker: ask the local raylet, follow a spillback to another node's raylet."""
        core = self.core
        raylet = core.raylet
        payload = {"rid": rid, "shape": ks.shape, "strategy": ks.strategy}
        try:
            affinity = await self._affinity_raylet(ks)
            if affinity is not None:
                raylet = affinity
                payload["spilled"] = True
            grant = await raylet.call("request_lease", payload)
            if grant is not None and "spillback" in grant:
                try:
                    remote = await core.remote_raylet(grant["spillback"]["address"])
                    grant = await remote.call("request_lease", dict(payload, spilled=True))
                    raylet = remote
                except Exception as exc:  # that node went away: ask again once the view has caught up
                    logger.info("spillback to %s failed (%s); asking again", grant["spillback"], exc)
                    await asyncio.sleep(0.1)
                    grant = None
        except Exception as exc:
            ks.pending_requests.discard(rid)
            if ks.pending_requests or ks.leases:
                self._dispatch(ks)  # other requests may still succeed
            else:
                self._fail_queue(ks, RaySystemError(f"could not lease a worker: {exc}"))
            return
        ks.pending_requests.discard(rid)
        if grant is None or "spillback" in grant:  # still redirected: ask again on the next dispatch
            self._dispatch(ks)
            return
        try:
            conn = await core.peer(grant["address"])
        except Exception:
            raylet.notify("return_lease", {"lease_id": grant["lease_id"], "kill": True})
            self._dispatch(ks)
            return
        lease = Lease(grant["lease_id"], grant["worker_id"], grant["address"], conn, ks)
        lease.raylet = raylet
        lease.gpu_ids = grant.get("gpu_ids") or []
        ks.leases[lease.worker_id] = lease  # lease ids are per raylet; workers are unique
        self._dispatch(ks)

    def _lease_task_done(self, ks: KeyState, rid: int, task: asyncio.Future) -> None:
        """A lease request crashed (a bug, not a refusal): never leave its tasks hanging."""
        if task.cancelled() or task.exception() is None:
            return
        logger.error("lease request failed", exc_info=task.exception())
        ks.pending_requests.discard(rid)
        if not ks.pending_requests and not ks.leases:
            self._fail_queue(ks, RaySystemError(f"could not lease a worker: {task.exception()!r}"))

    async def _affinity_raylet(self, ks: KeyState):
        """The raylet of the node a NodeAffinitySchedulingStrategy names (None: schedule normally)."""
        affinity = ks.affinity
        if affinity is None or affinity["node_id"] == self.core.node_id:
            return None
        node = await self.core.node_info(affinity["node_id"])
        if node is None or not node["alive"]:
            if affinity["soft"]:
                return None
            raise RaySystemError(
                f"NodeAffinitySchedulingStrategy names node {affinity['node_id']}, which is not alive "
                "(soft=False, so the task cannot run elsewhere)"
            )
        return await self.core.remote_raylet(node["address"])

    def _push(self, lease: Lease, entry: TaskEntry) -> None:
        if lease.conn.closed:  # the worker went away while idle: not this task's failure
            lease.dead = True
            lease.key.leases.pop(lease.worker_id, None)
            lease.key.queue.appendleft(entry)
            return
        if lease.idle_timer is not None:
            lease.idle_timer.cancel()
            lease.idle_timer = None
        entry.lease = lease
        lease.inflight[entry.task_id] = entry
        if lease.gpu_ids:
            entry.spec["gpus"] = lease.gpu_ids
        fut = lease.conn.call("push_task", entry.spec)
        fut.add_done_callback(lambda f, le=lease, en=entry: self._on_reply(le, en, f))

    def _return_lease(self, lease: Lease, kill: bool = False) -> None:
        if lease.dead:
            return
        lease.dead = True
        if lease.idle_timer is not None:
            lease.idle_timer.cancel()
            lease.idle_timer = None
        lease.key.leases.pop(lease.worker_id, None)
        if not self.core.stopped:
            (lease.raylet or self.core.raylet).notify(
                "return_lease", {"lease_id": lease.lease_id, "kill": kill}
            )

    def return_idle_leases(self) -> None:
        for ks in self.keys.values():
            for lease in list(ks.leases.values()):
                if not lease.inflight:
                    self._return_lease(lease)

    # -- I/O thread: results ----------------------------------------------------------
    def _on_reply(self, lease: Lease, entry: TaskEntry, fut: asyncio.Future) -> None:
        lease.inflight.pop(entry.task_id, None)
        ks = lease.key
        exc = fut.exception()
        if exc is not None:
            self._lease_failed(lease, entry, exc)
            return
        reply = fut.result()
        dur = reply.get("dur")
        if dur is not None:
            ks.duration = dur if ks.duration is None else 0.8 * ks.duration + 0.2 * dur
        if reply.get("exiting"):
            self._return_lease(lease, kill=True)
        returns = reply["returns"]
        if reply.get("app_error") and not entry.cancelled and self._should_retry_exception(entry, returns[0]):
            entry.retries_left -= 1
            entry.lease = None
            ks.queue.append(entry)
        else:
            self._complete(entry, returns, reply.get("holder"))
        self._dispatch(ks)

    def _should_retry_exception(self, entry: TaskEntry, ret: list) -> bool:
        if not entry.retry_exceptions or entry.retries_left == 0:
            return False
        if entry.retry_exceptions is True:
            return True
        try:
            _, err = deserialize_inline(ret[1])
            cause = err.cause if isinstance(err, RayTaskError) else err
            return isinstance(cause, tuple(entry.retry_exceptions))
        except Exception:
            return False

    def _lease_failed(self, lease: Lease, entry: TaskEntry, exc: BaseException) -> None:
        """The worker died or its connection broke while `entry` ran there."""
        ks = lease.key
        if not lease.dead:
            lease.dead = True
            ks.leases.pop(lease.worker_id, None)
            if lease.idle_timer is not None:
                lease.idle_timer.cancel()
            # The worker may still be alive (an error reply): never keep its resources.
            (lease.raylet or self.core.raylet).notify(
                "return_lease", {"lease_id": lease.lease_id, "kill": True}
            )
        entry.lease = None
        if entry.cancelled:
            self._finish_with_error(entry, TaskCancelledError(f"Task {entry.spec['name']} was cancelled."))
        elif lease.oom is not None and entry.retries_left == 0:
            self._finish_with_error(
                entry,
                OutOfMemoryError(
                    f"Task {entry.spec['name']} was killed because its node's memory use went above "
                    f"{lease.oom:.0%} (the newest task is killed first), and no retries were left. "
                    "Use less memory per task, run fewer at once (num_cpus or memory=...), or "
                    "raise max_retries."
                ),
            )
        elif entry.retries_left != 0:
            if entry.retries_left > 0:
                entry.retries_left -= 1
            logger.info("retrying task %s after worker failure: %s", entry.spec["name"], exc)
            ks.queue.append(entry)
        else:
            self._finish_with_error(
                entry,
                WorkerCrashedError(
                    f"The worker running task {entry.spec['name']} died unexpectedly "
                    f"(worker {lease.worker_id[:8]}): {exc}. It was not retried: no retries were left."
                ),
            )
        self._dispatch(ks)

    def _complete(self, entry: TaskEntry, returns: list, holder: str | None = None) -> None:
        core = self.core
        for oid, ret in zip(entry.return_ids, returns):
            ret = tuple(ret)
            if holder is not None:
                core.remote_contained[oid] = holder  # told to let go when we free the object
            if core.refs.has(oid):
                core.store.put(oid, ret)
            else:  # nobody wants it any more: free it, and what it holds, right away
                core.store.put(oid, ret)
                core._on_ref_zero(oid, None)
        self._release(entry)
        if entry.retries_left != 0 and any(r[0] == IN_STORE for r in returns):
            # Lineage: if every copy of a result is lost, the task can run again.
            if any(core.refs.has(oid) for oid in entry.return_ids):
                self.lineage[entry.task_id] = entry

    def reconstruct(self, object_id: bytes) -> bool:
        """Run again the finished task that made a lost object; False if it cannot be."""
        entry = self.lineage.pop(_ids.task_id_of(object_id), None)
        if entry is None or entry.retries_left == 0:
            return False
        if entry.retries_left > 0:
            entry.retries_left -= 1
        logger.warning(
            "object %s was lost: running %s again to rebuild it", object_id.hex(), entry.spec["name"]
        )
        for oid in entry.return_ids:
            self.core.store.delete(oid)
        entry.done = False
        entry.lease = None
        entry.cancelled = False
        self.tasks[entry.task_id] = entry
        self._enqueue(entry)
        return True

    def drop_lineage(self, object_id: bytes) -> None:
        """A result was freed: forget its task once none of its results is referenced."""
        entry = self.lineage.get(_ids.task_id_of(object_id))
        if entry is not None and not any(self.core.refs.has(oid) for oid in entry.return_ids):
            del self.lineage[entry.task_id]

    def _finish_with_entry(self, entry: TaskEntry, value: tuple) -> None:
        for oid in entry.return_ids:
            if self.core.refs.has(oid):
                self.core.store.put(oid, value)
        self._release(entry)
        if entry.ready is not None and not entry.resolved:
            entry.ready(entry)  # lets an actor's ordered queue move past a call that failed early

    def _finish_with_error(self, entry: TaskEntry, exc: BaseException) -> None:
        from skate.core_worker.core import error_entry

        self._finish_with_entry(entry, error_entry(exc))

    def _release(self, entry: TaskEntry) -> None:
        entry.done = True
        self.tasks.pop(entry.task_id, None)
        if entry.uses:
            self.core.refs.remove_task_uses(entry.uses)
        entry.hold = entry.dep_refs = None

    def _fail_queue(self, ks: KeyState, exc: BaseException) -> None:
        while ks.queue:
            self._finish_with_error(ks.queue.popleft(), exc)

    def on_oom_killed(self, worker_id: str, threshold: float | None) -> None:
        """The raylet is about to kill this worker for memory: its failure is an OOM."""
        for ks in self.keys.values():
            for lease in ks.leases.values():
                if lease.worker_id == worker_id:
                    lease.oom = threshold if threshold is not None else 0.95

    def on_connection_lost(self, conn) -> None:
        """A worker's connection closed: its idle leases are gone (busy ones fail their tasks)."""
        for ks in self.keys.values():
            for lease in list(ks.leases.values()):
                if lease.conn is conn and not lease.inflight:
                    lease.dead = True
                    ks.leases.pop(lease.worker_id, None)
                    if lease.idle_timer is not None:
                        lease.idle_timer.cancel()
            if ks.queue:
                self._dispatch(ks)

    # -- cancellation -----------------------------------------------------------------
    def cancel(self, object_id: bytes, force: bool, recursive: bool) -> None:
        entry = self.tasks.get(_ids.task_id_of(object_id))
        if entry is not None and not entry.done:
            self._cancel_entry(entry, force, recursive)

    def _cancel_entry(self, entry: TaskEntry, force: bool, recursive: bool) -> None:
        entry.cancelled = True
        entry.force = force
        lease = entry.lease
        if lease is None:
            ks = self.keys.get(entry.key)
            if ks is not None and entry in ks.queue:
                ks.queue.remove(entry)
            self._finish_with_error(entry, TaskCancelledError(f"Task {entry.spec['name']} was cancelled."))
        elif force:
            (lease.raylet or self.core.raylet).notify("kill_worker", {"worker_id": lease.worker_id})
        else:
            lease.conn.notify("cancel_task", {"tid": entry.task_id, "recursive": recursive})

    def cancel_all(self) -> None:
        """Cancel every task this process submitted (its own task was cancelled)."""
        for entry in list(self.tasks.values()):
            if not entry.done:
                self._cancel_entry(entry, False, True)


def _strategy_key(strategy: Any) -> Any:
    if isinstance(strategy, dict):
        return (strategy["node_id"], strategy["soft"])
    return strategy


def prepare_args(core, spec: dict, name: str, args: tuple, kwargs: dict) -> tuple[list, list, list]:
    """Serialize a call's arguments into `spec`; returns (dependencies, things to hold, used ids).

    Top-level ObjectRef arguments become dependencies resolved before the call; refs nested
    deeper travel as refs. Large argument blobs go to the object store as an extra dependency.
    The returned refs are counted as used by the call until it finishes.
    """
    from skate.object_ref import ObjectRef

    dep_refs: list = []
    hold: list = []
    if args or kwargs:
        args, kwargs = _replace_top_level_refs(args, kwargs, dep_refs)
        try:
            sobj = serialize((args, kwargs))
        except TypeError:
            _raise_unserializable(name, args, kwargs)
        hold.extend(sobj.contained_refs)
        if sobj.size < MAX_INLINE_BYTES:
            spec["args"] = sobj.to_inline()
        else:
            args_oid = _ids.object_id_for_put(core.current_task_id, next(core._put_index))
            args_ref = ObjectRef(args_oid, None, core)
            core.store_owned(args_oid, sobj)
            dep_refs.append((ARGS_SLOT, args_ref))
    hold.extend(ref for _, ref in dep_refs)
    uses = [r._id for r in hold if isinstance(r, ObjectRef)]
    if uses:
        core.refs.add_task_uses(uses, [r._owner for r in hold if isinstance(r, ObjectRef)])
    return dep_refs, hold, uses


def _replace_top_level_refs(args: tuple, kwargs: dict, deps: list) -> tuple[tuple, dict]:
    from skate.object_ref import ObjectRef

    if any(type(a) is ObjectRef for a in args):
        new_args = []
        for a in args:
            if type(a) is ObjectRef:
                deps.append((len(deps), a))
                a = ArgSlot(len(deps) - 1)
            new_args.append(a)
        args = tuple(new_args)
    if kwargs and any(type(v) is ObjectRef for v in kwargs.values()):
        new_kwargs = {}
        for k, v in kwargs.items():
            if type(v) is ObjectRef:
                deps.append((len(deps), v))
                v = ArgSlot(len(deps) - 1)
            new_kwargs[k] = v
        kwargs = new_kwargs
    return args, kwargs


def _raise_unserializable(name: str, args: tuple, kwargs: dict):
    """Find which argument cannot be pickled and say so."""
    items = [(f"argument {i}", a) for i, a in enumerate(args)]
    items += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for label, value in items:
        try:
            serialize(value)
        except TypeError as exc:
            cause = exc.__cause__ or exc
            raise TypeError(
                f"Could not serialize {label} of {name}(): {type(value).__name__} object "
                f"cannot be pickled ({cause})"
            ) from None
    raise TypeError(f"Could not serialize the arguments of {name}()")
