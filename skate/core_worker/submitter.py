"""Submitting normal tasks as their owner: the I/O shell around TaskManager and LeasePool.

`submit` runs on the user's thread: it builds the spec, packs the arguments and hands the
task to the I/O loop. Everything after runs on the loop: dependencies are resolved, the
`LeasePool` decides which leased worker runs the task and when to ask the raylet for more,
and the `TaskManager` decides what a reply or a lost worker means (complete, retry, fail).
This module only carries those decisions out: sockets, timers and the memory store.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from skate import _ids
from skate import _task_states as ts
from skate.core_worker.args import NO_REFS, prepare_args
from skate.core_worker.errors import error_entry
from skate.core_worker.lease_pool import (
    CANCEL_REQUEST,
    IDLE_CHECK,
    PUSH,
    REQUEST,
    RETIRE,
    RETURN,
    KeyState,
    Lease,
    LeasePool,
)
from skate.core_worker.memory_store import Waiter
from skate.core_worker.object_table import RECORD_CALL_SITES, call_site
from skate.core_worker.task_manager import Complete, Fail, Retry, TaskEntry, TaskManager
from skate.exceptions import ObjectLostError, RaySystemError, RuntimeEnvSetupError
from skate.object_ref import ObjectRef
from skate.protocol.messages import TaskReply, TaskSpec

logger = logging.getLogger(__name__)


class TaskSubmitter:
    def __init__(self, core: Any):
        self.core = core
        self.manager = TaskManager()
        self.pool = LeasePool()
        self._keys: dict[tuple, tuple] = {}  # interned scheduling keys (see _scheduling_key)
        self._last_key: tuple = (None,) * 6
        core.handlers["raylet_reclaim"] = lambda conn, p: self._run(self.pool.idle_leases())
        core.handlers["oom_killed"] = lambda conn, p: self.pool.mark_oom(
            p["worker_id"], p.get("threshold") or 0.95
        )
        core.handlers["cancel_object"] = lambda conn, p: self.cancel(p["oid"], p["force"], p["recursive"])

    # -- user thread --------------------------------------------------------------------
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
        placement_group: list | None = None,
        labels: tuple | None = None,
        task_id: bytes | None = None,
        generator: list | None = None,
        task_events: bool = True,
        events_key: int | None = None,
    ) -> list[ObjectRef]:
        """Submit a task; `task_id` is given only by a client's proxy (the client minted it);
        `task_events` False: no task events for it (Ray's `enable_task_events` option);
        `events_key`: the function's with these options (see TaskSpec), if it has one."""
        core = self.core
        env, env_key = core.runtime_envs.resolve(runtime_env)
        task_id = task_id or core.task_ids.next()
        return_ids = [_ids.object_id_for_return(task_id, i + 1) for i in range(num_returns)]
        spec = TaskSpec(
            task_id,
            name,
            num_returns,
            core.owner_address_list,
            core.job_id,
            core.namespace,
            function_key,
            resources=resources,
            max_calls=max_calls,
            runtime_env=env,
            placement_group=placement_group,
            events_key=events_key if task_events else None,
        )
        if generator is not None:  # [mode, backpressure threshold, items the owner has]
            spec.generator = generator
        dep_refs, hold, uses = prepare_args(core, spec, args, kwargs)
        if generator is not None:
            core.streams.register(task_id, generator)
        key = self._scheduling_key(function_key, resources, strategy, labels, env_key)
        entry = TaskEntry(spec, return_ids, uses, max_retries, retry_exceptions, key, dep_refs, hold)
        entry.strategy = strategy
        if task_events:
            entry.events = core.task_events
        refs = [ObjectRef(oid, None, core) for oid in return_ids]
        if RECORD_CALL_SITES:
            site = call_site()
            for oid in return_ids:
                core.ownership.call_sites[oid] = site
        # No refs among the arguments (nothing posted for them that the push could overtake),
        # no stream: with a leased worker of its key idle, push the task from this thread.
        if hold is NO_REFS and generator is None and self._push_direct(entry):
            return refs
        core.post(self._on_submit, entry)
        return refs

    def _push_direct(self, entry: TaskEntry) -> bool:
        """User thread: send the task to an idle leased worker itself, saving the I/O loop's
        wake-up (most of a sync task's latency, as for an idle actor: ActorSubmitter.submit).
        The loop books it when its reply comes or with its next batch of posts, whichever is
        first (`_book`). False when no lease of its key is idle."""
        ks = self.pool.keys.get(entry.key)
        if ks is None or self.core.stopped:
            return False
        lease = self.pool.claim(ks, entry)
        if lease is None:
            return False
        spec = entry.spec
        if lease.gpu_ids:
            spec.gpus = lease.gpu_ids
        events = entry.events
        if events is not None:  # submitted, ready and sent at once (see task_events)
            spec.sent_at = events.clock()  # (and so submitted and ready)
        sent = lease.conn.call_threadsafe(
            "push_task", spec, functools.partial(self._on_direct_reply, lease, entry)
        )
        if sent is None:  # the worker's connection closed: the loop's way, with a new lease
            self.pool.unclaim(lease, entry)
            spec.sent_at = None
            return False
        self.core.post_quietly(self._book, entry)  # no wake-up: see _book
        return True

    def _scheduling_key(
        self, function_key: bytes, resources: dict, strategy: Any, labels: Any, env_key: Any
    ) -> tuple:
        """The task's scheduling key, one shared tuple per distinct key.

        Every queued task holds its key, so a fresh tuple per call (about 250 bytes with its
        sorted resources) adds up to a quarter of a gigabyte over a million queued tasks.
        Calls of one remote function pass the same (cached) objects, so the last inputs are
        compared by identity first: a hit skips building the key at all.
        """
        last = self._last_key
        if (
            last[0] is function_key
            and last[1] is resources
            and last[2] is strategy
            and last[3] is labels
            and last[4] is env_key
        ):
            return last[5]
        key = (function_key, tuple(sorted(resources.items())), _strategy_key(strategy), labels, env_key)
        key = self._keys.setdefault(key, key)
        # One tuple, replaced whole: a racing user thread reads the old or the new one.
        self._last_key = (function_key, resources, strategy, labels, env_key, key)
        return key

    # -- I/O thread: dependencies -------------------------------------------------------
    def _on_submit(self, entry: TaskEntry) -> None:
        self.manager.add(entry)
        self.resolve_dependencies(entry)

    def _book(self, entry: TaskEntry) -> None:
        """Track a task its user thread pushed (`_push_direct`) as `_push` would, once: from
        its reply's callback or from the quiet post, whichever runs first."""
        if entry.resolved or entry.done:
            return
        self.manager.add(entry)
        entry.resolved = True

    def _on_direct_reply(self, lease: Lease, entry: TaskEntry, fut: asyncio.Future) -> None:
        self._book(entry)
        self._on_reply(lease, entry, fut)
        self.core.drain_quiet()  # the quiet posts of earlier direct pushes, now moot

    def resolve_dependencies(self, entry: TaskEntry) -> None:
        """Fill the call's deps once every dependency is ready, then hand it on (to its
        on_ready if set, else to the lease queue); a failed dependency fails it."""
        events = entry.events
        if not entry.dep_refs:
            self._resolved(entry, recorded=True)
            # Pushed at once, its push stamped all three times; if it waits (for a lease, or
            # for its actor), it waits since now (one clock reading fewer per call). As
            # `events.submitted(entry, True)`, inlined: most calls of a burst of tasks wait.
            if events is not None and entry.spec.sent_at is None and not entry.done:
                entry.ev_args = entry.ev_ready = events.clock()
            return
        if events is not None:
            events.submitted(entry, False)
        store = self.core.store
        missing = self.manager.missing_dependencies(entry, store.__contains__)
        if not missing:
            self._resolve(entry)
            return
        loop = self.core.loop
        store.watch(missing, Waiter(len(missing), lambda w: loop.call_soon_threadsafe(self._resolve, entry)))
        self.core.objects.fetch_missing([ref for _, ref in entry.dep_refs])

    def _resolve(self, entry: TaskEntry) -> None:
        if entry.done:
            return
        failed = self.manager.resolve(entry, self.core.store.get)
        if failed is None:
            self._resolved(entry)
        elif isinstance(failed, Fail):
            self.finish_with_error(entry, failed.error)
        else:
            events = entry.events
            if events is not None:
                events.failed_entry(
                    entry, ts.DEPENDENCY_RESOLUTION_FAILED, "a dependency of this task failed"
                )
            self.finish_with_entry(entry, failed)  # a dependency failed: so does this task

    def _resolved(self, entry: TaskEntry, recorded: bool = False) -> None:
        """The call's dependencies are ready (recorded: its task event already says so)."""
        entry.resolved = True
        events = entry.events
        if events is not None and not recorded:
            events.ready(entry)
        if entry.on_ready is not None:
            entry.on_ready(entry)
        else:
            self._enqueue(entry)

    # -- I/O thread: leases and pushing -------------------------------------------------
    def _enqueue(self, entry: TaskEntry) -> None:
        if entry.done:
            return
        ks = self.pool.keys.get(entry.key)
        if ks is None:
            ks = self.pool.key_state(entry.key, dict(entry.key[1]), entry.strategy)
            ks.labels = entry.key[3]
            ks.runtime_env = entry.spec.runtime_env
        self._run(self.pool.enqueue(ks, entry))

    def _run(self, actions: list[tuple]) -> None:
        """Carry out the lease pool's decisions."""
        for action in actions:
            kind = action[0]
            if kind == PUSH:
                self._push(action[1], action[2])
            elif kind == REQUEST:
                ks, rid = action[1], action[2]
                task = asyncio.ensure_future(self._request_lease(ks, rid))
                task.add_done_callback(functools.partial(self._lease_task_done, ks, rid))
            elif kind == IDLE_CHECK:
                # One timer per lease at a time: one armed earlier fires sooner, and the check
                # then arms another for what is left (a busy lease's check does nothing). Not
                # a new timer per task, as a sync caller's lease goes idle after each.
                lease = action[1]
                if lease.idle_timer is None:
                    lease.idle_timer = self.core.loop.call_later(action[2], self._idle_check, lease)
            elif kind == RETURN:
                lease, kill = action[1], action[2]
                if not self.core.stopped:
                    lease.raylet.notify("return_lease", {"lease_id": lease.lease_id, "kill": kill})
            elif kind == CANCEL_REQUEST:
                self.core.raylet.notify("cancel_lease_request", {"rid": action[1]})

    def _idle_check(self, lease: Lease) -> None:
        lease.idle_timer = None
        self._run(self.pool.idle_expired(lease))

    def _push(self, lease: Lease, entry: TaskEntry) -> None:
        if lease.conn.closed:  # the worker went away while idle: not this task's failure
            self.pool.push_refused(lease, entry)
            self._run(self.pool.dispatch(lease.key))
            return
        if lease.gpu_ids:
            entry.spec.gpus = lease.gpu_ids
        events = entry.events
        if events is not None:  # `events.stamp(entry)`, its common case inlined: a call that waited
            spec = entry.spec
            waited = entry.ev_args
            if spec.sent_at is None and waited and waited == entry.ev_ready:
                spec.ready_at = waited  # (and so submitted)
                spec.sent_at = events.clock()
            else:
                events.stamp(entry)
        if entry.spec.generator is not None:  # a retry skips the items already here
            entry.spec.generator[2] = self.core.streams.received(entry.task_id)
        fut = lease.conn.call("push_task", entry.spec)
        fut.add_done_callback(lambda f, le=lease, en=entry: self._on_reply(le, en, f))

    async def _request_lease(self, ks: KeyState, rid: int) -> None:
        """Lease a worker: ask the local raylet, follow a spillback to another node's raylet."""
        core = self.core
        raylet = core.raylet
        payload = {"rid": rid, "shape": ks.shape, "strategy": ks.strategy}
        if ks.labels is not None:
            payload["labels"] = ks.labels
        if ks.runtime_env:
            payload["runtime_env"] = ks.runtime_env
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
            error = _lease_error(exc)
            actions, failed = self.pool.request_failed(ks, rid, isinstance(error, RuntimeEnvSetupError))
            self._run(actions)
            for entry in failed:
                self.finish_with_error(entry, error)
            return
        if grant is None or "spillback" in grant:  # still redirected: ask again on the next dispatch
            self._run(self.pool.granted(ks, rid, None))
            return
        try:
            conn = await core.peer(grant["address"])
        except Exception:
            raylet.notify("return_lease", {"lease_id": grant["lease_id"], "kill": True})
            self._run(self.pool.granted(ks, rid, None))
            return
        lease = Lease(grant["lease_id"], grant["worker_id"], grant["address"], conn, ks)
        lease.raylet = raylet
        lease.gpu_ids = grant.get("gpu_ids") or []
        self._run(self.pool.granted(ks, rid, lease))

    def _lease_task_done(self, ks: KeyState, rid: int, task: asyncio.Future) -> None:
        """A lease request crashed (a bug, not a refusal): never leave its tasks hanging."""
        if task.cancelled() or task.exception() is None:
            return
        logger.error("lease request failed", exc_info=task.exception())
        actions, failed = self.pool.request_failed(ks, rid)
        self._run(actions)
        for entry in failed:
            self.finish_with_error(entry, RaySystemError(f"could not lease a worker: {task.exception()!r}"))

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

    # -- I/O thread: results ------------------------------------------------------------
    def _on_reply(self, lease: Lease, entry: TaskEntry, fut: asyncio.Future) -> None:
        pool = self.pool
        ks = lease.key
        exc = fut.exception()
        if exc is not None:
            self._run(pool.lease_failed(lease, entry))
            outcome: Retry | Fail | Complete = self.manager.on_worker_lost(
                entry, str(exc), lease.worker_id, lease.oom
            )
        else:
            reply = TaskReply.from_wire(fut.result())
            pool.finished(lease, entry, reply.duration)
            if reply.exiting:  # max_calls reached: it may send its last task events first
                self._run(pool.release(lease, kill=RETIRE))
            outcome = self.manager.on_reply(entry, reply)
        if isinstance(outcome, Complete):
            self.complete(entry, outcome.returns, outcome.holder)
        elif isinstance(outcome, Fail):
            self.finish_with_error(entry, outcome.error)
        else:
            ks.queue.append(entry)
        self._run(pool.dispatch(ks))

    def complete(self, entry: TaskEntry, returns: list, holder: str | None = None) -> None:
        core = self.core
        if entry.ev_reported:  # (the worker's task events record the end: see task_events)
            events = entry.events
            if events is not None:
                events.finished(entry)
        if entry.spec.generator is not None:  # the end of its stream of items
            returns = core.streams.on_task_end(entry.task_id, returns)
        refs = core.refs
        for oid, ret in zip(entry.return_ids, returns):
            ret = tuple(ret)
            if holder is not None:
                core.ownership.remote_contained[oid] = holder  # told to let go when we free the object
            core.store.put(oid, ret)
            if not refs.has(oid):  # nobody wants it any more: free it, and what it holds, right away
                core.ownership.on_ref_zero(oid, None)
        self._release(entry, returns)

    def finish_with_entry(self, entry: TaskEntry, value: tuple) -> None:
        if entry.spec.generator is not None:  # the end of its stream of items
            value = tuple(self.core.streams.on_task_end(entry.task_id, [value])[0])
        refs = self.core.refs
        for oid in entry.return_ids:
            if refs.has(oid):
                self.core.store.put(oid, value)
        self._release(entry, None)
        if entry.on_ready is not None and not entry.resolved:
            entry.on_ready(entry)  # lets an actor's ordered queue move past a call that failed early

    def finish_with_error(self, entry: TaskEntry, exc: BaseException) -> None:
        events = entry.events
        if events is not None:
            events.failed_entry(entry, ts.error_type_of(exc), f"{type(exc).__name__}: {exc}")
        self.finish_with_entry(entry, error_entry(exc))

    def _release(self, entry: TaskEntry, returns: list | None) -> None:
        state = entry.actor_state
        if state is not None:  # counted once: lets the caller push its next call itself
            state.end_call(entry)
        released = self.manager.finish(entry, returns, self.core.refs.has)
        if self.manager.has_unpinned():
            released = [*released, *self.manager.take_unpinned()]  # finish's may be a shared tuple
        if released:
            self.core.refs.remove_task_uses(released)

    # -- lineage ------------------------------------------------------------------------
    async def rebuild(self, object_id: bytes, node_id: str | None = None) -> tuple:
        """I/O thread: run again the task that made a lost object; its new entry, or an error entry."""
        entry = self.manager.pending.get(_ids.task_id_of(object_id))
        if entry is None:
            try:
                entry = self.manager.reconstruct(object_id)
            except Exception as exc:
                if node_id and type(exc) is ObjectLostError:
                    exc = ObjectLostError(f"{exc} Its last copy was on node {node_id}.", object_id.hex())
                return error_entry(exc)
            logger.warning("object %s was lost: running %s again to rebuild it", object_id.hex(), entry.name)
            for oid in entry.return_ids:
                self.core.store.delete(oid)
            self._enqueue(entry)
        value = await self.core.objects.wait_entry(object_id)
        return (
            value if value is not None else error_entry(RaySystemError(f"object {object_id.hex()} vanished"))
        )

    def drop_lineage(self, object_id: bytes) -> None:
        released = self.manager.drop_lineage(object_id, self.core.refs.has) if self.manager.lineage else []
        if released:
            self.core.refs.remove_task_uses(released)

    # -- failures and cancellation ------------------------------------------------------
    def on_connection_lost(self, conn: Any) -> None:
        """A worker's connection closed: its idle leases are gone (busy ones fail their tasks)."""
        for ks in self.pool.connection_lost(conn):
            self._run(self.pool.dispatch(ks))

    def cancel(self, object_id: bytes, force: bool, recursive: bool) -> None:
        entry = self.manager.cancel(object_id, force)
        if entry is None:
            return
        if entry.key is None:  # an actor call
            self.core.actor_submitter.cancel(entry, force)
            return
        lease = entry.lease
        if lease is None:
            ks = self.pool.keys.get(entry.key)
            if ks is not None and entry.resolved:  # resolved and not leased: in its key's queue
                self.pool.remove_queued(ks, entry)
            self.finish_with_error(entry, self.manager.cancelled_error(entry))
        elif force:
            lease.raylet.notify("kill_worker", {"worker_id": lease.worker_id})
        else:
            lease.conn.notify("cancel_task", {"tid": entry.task_id, "recursive": recursive})

    def forward_cancel(self, owner: tuple, object_id: bytes, force: bool, recursive: bool) -> None:
        """cancel() of a borrowed ref: the owner submitted the task, so it cancels it."""

        async def send() -> None:
            try:
                conn = await self.core.peer(owner[1])
                conn.notify("cancel_object", {"oid": object_id, "force": force, "recursive": recursive})
            except Exception:
                pass  # the owner is gone, and its tasks with it

        asyncio.ensure_future(send())

    def cancel_all(self) -> None:
        """Cancel every task this process submitted (its own task was cancelled)."""
        for entry in list(self.manager.pending.values()):
            if not entry.done:
                self.cancel(entry.task_id, False, True)


def _strategy_key(strategy: Any) -> Any:
    if isinstance(strategy, dict):
        return (strategy["node_id"], strategy["soft"])
    return strategy


def _lease_error(exc: BaseException) -> BaseException:
    """What the tasks of a refused lease request fail with: the runtime env's setup error as
    itself (its message carries the installer's last lines), anything else as a system error."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, RuntimeEnvSetupError):
        return cause
    if isinstance(exc, RuntimeEnvSetupError):
        return exc
    return RaySystemError(f"could not lease a worker: {exc}")
