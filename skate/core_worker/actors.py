"""The caller's side of actors: creating them, calling their methods in order, handle counting.

Creation registers the actor with the GCS (names are checked there, synchronously), then
hands the GCS the resolved constructor call; the GCS places and starts it. Method calls go
straight to the actor's worker, one connection per caller and actor, sent in submission
order. If that connection breaks the caller asks the GCS what became of the actor: calls are
resent to a restarted actor (within max_task_retries) or fail with ActorDiedError.

A non-detached actor lives while handles to it exist: its owner (the creating process)
counts its own handles plus processes that registered as borrowers, and asks the GCS to
kill the actor when both are gone.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from typing import Any

from skate import _ids
from skate._options import actor_shapes, wire_strategy
from skate.core_worker.submitter import TaskEntry, prepare_args
from skate.exceptions import ActorDiedError, ActorUnavailableError
from skate.protocol import Connection
from skate.protocol.connection import RemoteError

logger = logging.getLogger(__name__)


class ActorState:
    """What one caller knows about one actor."""

    __slots__ = (
        "actor_id",
        "conn",
        "connecting",
        "queue",
        "next_seq",
        "inflight",
        "dead_error",
        "incarnation",
        "name",
    )

    def __init__(self, actor_id: bytes, name: str):
        self.actor_id = actor_id
        self.name = name
        self.conn: Connection | None = None
        self.connecting = False
        self.queue: collections.deque[TaskEntry] = collections.deque()  # in submission order
        self.next_seq = 0
        self.inflight: dict[bytes, TaskEntry] = {}
        self.dead_error: BaseException | None = None
        self.incarnation = -1


class ActorClient:
    def __init__(self, core):
        self.core = core
        self.states: dict[bytes, ActorState] = {}
        self._lock = threading.Lock()
        self._handles: dict[bytes, int] = {}  # local handle counts
        self._owned: dict[bytes, bool] = {}  # actors created here -> detached?
        self._borrowers: dict[bytes, set] = {}  # owned actor -> connections of borrowers
        self._borrowing: dict[bytes, tuple] = {}  # borrowed actor -> owner address
        self._creation_args: dict[bytes, TaskEntry] = {}  # owned actor -> its constructor call
        core.handlers["actor_borrow"] = self._h_borrow
        core.handlers["actor_unborrow"] = self._h_unborrow

    # -- creation (user thread) -------------------------------------------------------
    def create(self, actor_class, class_key: bytes, args: tuple, kwargs: dict, options: dict):
        from skate.actor import ActorHandle

        core = self.core
        actor_id = _ids.random_id(16)
        namespace = options.get("namespace") or core.namespace
        detached = options.get("lifetime") == "detached"
        max_concurrency = options.get("max_concurrency")
        is_async = any(m.get("is_async") for m in actor_class._methods.values())
        if max_concurrency is None:
            max_concurrency = 1000 if is_async else 1
        place, hold = actor_shapes(options)
        public = {
            "class_name": actor_class._name,
            "methods": actor_class._methods,
            "max_task_retries": options.get("max_task_retries", 0),
        }
        try:
            reply = core.request(
                core.gcs,
                "register_actor",
                {
                    "actor_id": actor_id,
                    "name": options.get("name"),
                    "namespace": namespace,
                    "get_if_exists": options.get("get_if_exists", False),
                    "detached": detached,
                    "max_restarts": options.get("max_restarts", 0),
                    "owner": core.owner_address,
                    "job": core.job_id,
                    "public": public,
                },
            )
        except RemoteError as exc:
            if exc.kind == "ValueError":
                raise ValueError(str(exc).split(": ", 1)[1]) from None
            raise
        if not reply["created"]:
            info = reply["info"]
            return ActorHandle(
                info["actor_id"], info["class_name"], info["methods"], info, tuple(info["owner"]), core
            )
        spec: dict[str, Any] = {
            "tid": core.task_ids.next(),
            "actor_id": actor_id,
            "fn": class_key,
            "name": f"{actor_class._name}.__init__",
            "class_name": actor_class._name,
            "actor_name": options.get("name") or "",
            "owner": core.owner_address,
            "job": core.job_id,
            "ns": namespace,
            "res": hold,
            "place": place,
            "max_concurrency": max_concurrency,
            "groups": options.get("concurrency_groups") or {},
            "is_async": is_async,
            "renv": options.get("runtime_env"),
            "strategy": wire_strategy(options.get("scheduling_strategy")),
            "args": None,
            "deps": [],
        }
        dep_refs, hold_refs, uses = prepare_args(core, spec, spec["name"], args, kwargs)
        entry = TaskEntry(spec, spec["tid"], [], uses, 0, False, None, dep_refs, hold_refs)
        entry.ready = self._send_creation
        with self._lock:
            self._owned[actor_id] = detached
        handle = ActorHandle(actor_id, actor_class._name, actor_class._methods, public, None, core)
        core.post(core.submitter.resolve_dependencies, entry)
        return handle

    def _send_creation(self, entry: TaskEntry) -> None:
        """I/O thread: the constructor's arguments are ready; the GCS takes it from here."""
        if entry.done:  # an argument failed: so does the actor
            self.core.gcs.notify(
                "kill_actor",
                {
                    "actor_id": entry.spec["actor_id"],
                    "no_restart": True,
                    "reason": "an argument of its constructor failed",
                },
            )
            return
        fut = self.core.gcs.call("create_actor", entry.spec)
        # The constructor's arguments stay alive while the actor may need them (a restart).
        self._creation_args[entry.spec["actor_id"]] = entry

        def done(f: asyncio.Future) -> None:
            if f.exception() is not None and not self.core.stopped:
                logger.warning("creating actor %s failed: %s", entry.spec["class_name"], f.exception())
            # Handles passed to the constructor: the actor registered itself as their borrower
            # while it started, so holding them here would only keep their actors alive.
            from skate.actor import ActorHandle

            if entry.hold:
                entry.hold = [x for x in entry.hold if not isinstance(x, ActorHandle)]

        fut.add_done_callback(done)

    # -- method calls (user thread) ---------------------------------------------------
    def submit(self, handle, method: str, args: tuple, kwargs: dict, num_returns: int, options: dict) -> list:
        from skate.object_ref import ObjectRef

        core = self.core
        actor_id = handle._actor_id
        task_id = core.task_ids.next()
        return_ids = [_ids.object_id_for_return(task_id, i + 1) for i in range(num_returns)]
        name = f"{handle._class_name}.{method}"
        spec: dict[str, Any] = {
            "tid": task_id,
            "actor_id": actor_id,
            "method": method,
            "name": name,
            "nret": num_returns,
            "owner": core.owner_address,
            "job": core.job_id,
            "ns": core.namespace,
            "group": options.get("concurrency_group"),
            "args": None,
            "deps": [],
        }
        dep_refs, hold, uses = prepare_args(core, spec, name, args, kwargs)
        hold.append(handle)  # the actor stays alive while calls to it are pending
        retries = options.get("max_task_retries")
        if retries is None:
            retries = handle._actor_options.get("max_task_retries", 0)
        entry = TaskEntry(
            spec,
            task_id,
            return_ids,
            uses,
            retries,
            options.get("retry_exceptions", False),
            None,
            dep_refs,
            hold,
        )
        with self._lock:
            state = self.states.get(actor_id)
            if state is None:
                state = self.states[actor_id] = ActorState(actor_id, handle._class_name)
            entry.seq = state.next_seq
            state.next_seq += 1
        entry.ready = lambda e, s=state: self._on_ready(s, e)
        refs = [ObjectRef(oid, None, core) for oid in return_ids]
        core.post(self._on_submit, entry, state)
        return refs

    # -- method calls (I/O thread) ----------------------------------------------------
    def _on_submit(self, entry: TaskEntry, state: ActorState) -> None:
        self.core.submitter.tasks[entry.task_id] = entry
        state.queue.append(entry)
        self.core.submitter.resolve_dependencies(entry)

    def _on_ready(self, state: ActorState, entry: TaskEntry) -> None:
        self._flush(state)

    def _flush(self, state: ActorState) -> None:
        """Send queued calls in order; a call still resolving arguments holds back those after it."""
        queue = state.queue
        while queue and queue[0].done:
            queue.popleft()
        if not queue:
            return
        if state.dead_error is not None:
            while queue:
                self._fail(queue.popleft(), state.dead_error)
            return
        if state.conn is None or state.conn.closed:
            if not state.connecting:
                state.connecting = True
                asyncio.ensure_future(self._locate(state))
            return
        while queue and (queue[0].resolved or queue[0].done):
            entry = queue.popleft()
            if not entry.done:
                self._push(state, entry)

    def _push(self, state: ActorState, entry: TaskEntry) -> None:
        if entry.done:
            return
        state.inflight[entry.task_id] = entry
        fut = state.conn.call("push_actor_task", entry.spec)
        fut.add_done_callback(lambda f, s=state, e=entry: self._on_reply(s, e, f))

    def _on_reply(self, state: ActorState, entry: TaskEntry, fut: asyncio.Future) -> None:
        state.inflight.pop(entry.task_id, None)
        if entry.done:
            return
        exc = fut.exception()
        submitter = self.core.submitter
        if exc is None:
            reply = fut.result()
            returns = reply["returns"]
            if reply.get("app_error") and submitter._should_retry_exception(entry, returns[0]):
                if entry.retries_left > 0:
                    entry.retries_left -= 1
                state.queue.appendleft(entry)
                self._flush(state)
                return
            submitter._complete(entry, returns, reply.get("holder"))
            return
        # The connection broke: the actor died or restarts.
        if entry.retries_left != 0:
            if entry.retries_left > 0:
                entry.retries_left -= 1
            _insert_in_order(state.queue, entry)
        else:
            self._fail(
                entry,
                ActorDiedError(
                    f"The actor {state.name} ({state.actor_id.hex()}) died while running this call "
                    f"({entry.spec['name']}); it was not retried (max_task_retries=0).",
                    state.actor_id.hex(),
                ),
            )
        if state.conn is not None and state.conn.closed:
            state.conn = None
        self._flush(state)

    def _fail(self, entry: TaskEntry, exc: BaseException) -> None:
        self.core.submitter._finish_with_error(entry, exc)

    async def _locate(self, state: ActorState) -> None:
        """Ask the GCS where the actor lives (waiting while it starts), then connect."""
        core = self.core
        try:
            while True:
                info = await core.gcs.call(
                    "get_actor_info", {"actor_id": state.actor_id, "wait": True, "not": state.incarnation}
                )
                if info is None:
                    state.dead_error = ActorDiedError(f"The actor {state.actor_id.hex()} does not exist.")
                    break
                if info["state"] == "DEAD":
                    state.dead_error = ActorDiedError(
                        f"The actor {state.name} ({state.actor_id.hex()}) is dead: {info['death_cause']}",
                        state.actor_id.hex(),
                    )
                    break
                try:
                    state.conn = await core.peer(info["address"])
                    state.incarnation = info["incarnation"]
                    break
                except OSError:
                    state.incarnation = info["incarnation"]
                    await asyncio.sleep(0.05)
        except Exception as exc:
            state.dead_error = ActorUnavailableError(f"cannot reach the actor {state.actor_id.hex()}: {exc}")
        finally:
            state.connecting = False
        self._flush(state)

    # -- handle counting --------------------------------------------------------------
    def add_handle(self, handle) -> None:
        aid = handle._actor_id
        with self._lock:
            n = self._handles.get(aid, 0)
            self._handles[aid] = n + 1
            first_borrow = n == 0 and handle._owner is not None and aid not in self._owned
            if first_borrow:
                self._borrowing[aid] = handle._owner
        if first_borrow:
            self._register_borrow(aid, handle._owner)

    def _register_borrow(self, aid: bytes, owner: tuple) -> None:
        core = self.core

        async def register() -> None:
            try:
                conn = await core.peer(owner[1])
                await conn.call("actor_borrow", {"actor_id": aid})
            except Exception:
                pass  # the owner is gone: so is the actor

        if threading.current_thread() is core._thread:
            asyncio.ensure_future(register())
        else:  # registered before the task that received the handle can finish
            try:
                core.run(register(), timeout=10)
            except Exception:
                pass

    def remove_handle(self, aid: bytes) -> None:
        with self._lock:
            n = self._handles.get(aid, 0) - 1
            if n > 0:
                self._handles[aid] = n
                return
            self._handles.pop(aid, None)
            owner = self._borrowing.pop(aid, None)
        core = self.core
        if owner is not None:
            core.post(self._send_unborrow, aid, owner)
        else:
            core.post(self._maybe_release, aid)

    def _send_unborrow(self, aid: bytes, owner: tuple) -> None:
        async def send() -> None:
            try:
                conn = await self.core.peer(owner[1])
                conn.notify("actor_unborrow", {"actor_id": aid})
            except Exception:
                pass

        asyncio.ensure_future(send())

    def _maybe_release(self, aid: bytes) -> None:
        """An owned actor with no handles and no borrowers left goes away."""
        if aid not in self._owned or self._owned[aid] or self._handles.get(aid) or self._borrowers.get(aid):
            return
        self._owned.pop(aid, None)
        self._borrowers.pop(aid, None)
        self._release_creation_args(aid)
        if not self.core.stopped:
            self.core.gcs.notify(
                "kill_actor", {"actor_id": aid, "no_restart": True, "reason": "out_of_scope"}
            )

    def _h_borrow(self, conn: Connection, p: dict) -> bool:
        self._borrowers.setdefault(p["actor_id"], set()).add(conn)
        return True

    def on_connection_closed(self, conn: Connection) -> None:
        """A borrower's connection closed: it holds no handle any more."""
        for actor, borrowers in list(self._borrowers.items()):
            if conn in borrowers:
                borrowers.discard(conn)
                self._maybe_release(actor)

    def _release_creation_args(self, aid: bytes) -> None:
        entry = self._creation_args.pop(aid, None)
        if entry is not None and entry.uses:
            self.core.refs.remove_task_uses(entry.uses)

    def _h_unborrow(self, conn: Connection, p: dict) -> None:
        aid = p["actor_id"]
        borrowers = self._borrowers.get(aid)
        if borrowers is not None:
            borrowers.discard(conn)
        self._maybe_release(aid)

    # -- other operations -------------------------------------------------------------
    def kill(self, handle, no_restart: bool) -> None:
        aid = handle._actor_id
        self.core.request(self.core.gcs, "kill_actor", {"actor_id": aid, "no_restart": no_restart})
        if no_restart:
            # Calls made after kill() returns fail, even before the worker is gone.
            with self._lock:
                state = self.states.get(aid)
                if state is None:
                    state = self.states[aid] = ActorState(aid, handle._class_name)
            state.dead_error = ActorDiedError(
                f"The actor {handle._class_name} ({aid.hex()}) was killed by kill().", aid.hex()
            )
            self.core.post(self._release_creation_args, aid)

    def get_named(self, name: str, namespace: str | None):
        from skate.actor import ActorHandle

        core = self.core
        ns = namespace or core.namespace
        info = core.request(core.gcs, "get_named_actor", {"name": name, "namespace": ns})
        if info is None:
            raise ValueError(f"Failed to look up actor with name '{name}' in namespace '{ns}'.")
        owner = tuple(info["owner"]) if info.get("owner") and not info.get("detached") else None
        if owner == core.owner_address:
            owner = None
        if info.get("detached"):
            owner = None
        handle = ActorHandle(info["actor_id"], info["class_name"], info["methods"], info, owner, core)
        return handle


def _insert_in_order(queue: collections.deque, entry: TaskEntry) -> None:
    """Put a call to be resent back in the queue before any later call."""
    for i, other in enumerate(queue):
        if other.seq > entry.seq:
            queue.insert(i, entry)
            return
    queue.append(entry)
