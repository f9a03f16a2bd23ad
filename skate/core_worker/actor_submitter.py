"""The caller's side of actors: creating them and calling their methods in order.

Creation registers the actor with the GCS (names are checked there, synchronously), then
hands the GCS the resolved constructor call; the GCS places and starts it. Method calls go
straight to the actor's worker, one connection per caller and actor, sent in submission
order. If that connection breaks the caller asks the GCS what became of the actor: calls are
resent to a restarted actor (within max_task_retries) or fail with ActorDiedError; while it
restarts, calls without retries fail at once with ActorUnavailableError.

What a reply or a lost connection means for a call is the TaskManager's decision, as for
normal tasks; handles are counted by the ReferenceCounter like refs (see `ownership`).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from skate import _ids
from skate._options import actor_shapes, label_constraint, resolve_placement_group, wire_strategy
from skate.core_worker.actor_state import ActorState
from skate.core_worker.args import prepare_args
from skate.core_worker.caller_lane import LOOP, USER, CallerLane
from skate.core_worker.task_manager import Complete, Fail, TaskEntry
from skate.exceptions import ActorDiedError, ActorUnavailableError, RaySystemError, RuntimeEnvSetupError
from skate.object_ref import ObjectRef
from skate.protocol.connection import Connection, ConnectionClosed, RemoteError
from skate.protocol.messages import INLINE, ActorCreation, TaskReply, TaskSpec

logger = logging.getLogger(__name__)

RESTARTING = "RESTARTING"
DEAD = "DEAD"
# After this many calls a user thread pushed itself to one actor (a caller waiting on each
# call in turn), open a lane to it (`core_worker.lanes`); SKATE_ACTOR_LANES=0: never.
LANE_AFTER = 16
LANES = os.environ.get("SKATE_ACTOR_LANES", "1") not in ("", "0", "false")
# Every SWEEP_SECONDS the loop reads the replies on lanes that nobody came for within that
# time (a call whose result no one waits for: its end still frees what it holds).
SWEEP_SECONDS = 0.25


class ActorSubmitter:
    def __init__(self, core: Any):
        self.core = core
        self.states: dict[bytes, ActorState] = {}
        self._lock = threading.RLock()
        self.lanes_declined = 0  # lanes an actor declined (it runs its calls elsewhere)
        # Result ids of the calls in flight on lanes -> their ActorState (see `collect`).
        self.lane_calls: dict[bytes, ActorState] = {}
        self.lane_reads = 0  # replies user threads read themselves (a statistic)
        self.lane_sends = 0  # calls the loop sent on lanes (a statistic)
        self._lane_states: set[ActorState] = set()  # actors we have a lane to
        self._sweep_armed = False

    # -- creation (user thread) ---------------------------------------------------------
    def create(
        self, class_name: str, methods: dict, class_key: bytes, args: tuple, kwargs: dict, options: dict
    ) -> dict:
        """Register and start an actor; returns what its handle needs (see ActorHandle).

        With get_if_exists and a live actor of that name, the existing actor's info.
        """
        core = self.core
        actor_id = _ids.random_id(16)
        namespace = options.get("namespace") or core.namespace
        detached = options.get("lifetime") == "detached"
        max_concurrency = options.get("max_concurrency")
        is_async = any(m.get("is_async") for m in methods.values())
        if max_concurrency is None:
            max_concurrency = 1000 if is_async else 1
        env, _ = core.runtime_envs.resolve(options.get("runtime_env"))  # a bad path fails here
        place, hold = actor_shapes(options)
        # In a placement group the actor asks only for what it holds, under its bundle's names.
        (group_hold,), group = resolve_placement_group(options, [hold])
        if group is not None:
            place = hold = group_hold
        public = {
            "class_name": class_name,
            "methods": methods,
            "max_task_retries": options.get("max_task_retries", 0),
        }
        if options.get("enable_task_events") is False:  # the default of its methods' calls
            public["enable_task_events"] = False
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
                raise ValueError(exc.message) from None
            raise
        if not reply["created"]:
            info = reply["info"]
            return dict(info, owner=tuple(info["owner"]), created=False)
        name = f"{class_name}.__init__"
        spec = TaskSpec(
            core.task_ids.next(),
            name,
            0,
            core.owner_address_list,
            core.job_id,
            namespace,
            class_key,
            resources=hold,
            runtime_env=env,
            actor_id=actor_id,
        )
        spec.placement_group = group
        creation = ActorCreation(
            actor_id,
            class_name,
            options.get("name") or "",
            max_concurrency,
            options.get("concurrency_groups") or {},
            is_async,
        )
        dep_refs, hold_refs, uses = prepare_args(core, spec, args, kwargs)
        entry = TaskEntry(spec, [], uses, 0, False, None, dep_refs, hold_refs)
        if options.get("enable_task_events") is not False:
            entry.events = core.task_events
        entry.on_ready = lambda e: self._send_creation(e, creation, place, hold, options)
        core.ownership.own_actor(actor_id, detached)
        core.post(core.submitter.resolve_dependencies, entry)
        return {
            "actor_id": actor_id,
            "class_name": class_name,
            "methods": methods,
            "public": public,
            "owner": None,
            "created": True,
        }

    def _send_creation(
        self, entry: TaskEntry, creation: ActorCreation, place: dict, hold: dict, options: dict
    ) -> None:
        """I/O thread: the constructor's arguments are ready; the GCS takes it from here."""
        core = self.core
        actor_id = entry.spec.actor_id
        if entry.done:  # an argument failed: so does the actor
            core.gcs.notify(
                "kill_actor",
                {"actor_id": actor_id, "no_restart": True, "reason": "an argument of its constructor failed"},
            )
            return
        if entry.events is not None:  # the GCS sends it: the owner does not see when
            entry.events.stamp(entry, float("nan"))
        fut = core.gcs.call(
            "create_actor",
            {
                "actor_id": actor_id,
                "place": place,
                "res": hold,
                "strategy": wire_strategy(options.get("scheduling_strategy")),
                "labels": label_constraint(options),
                "pg": entry.spec.placement_group[0] if entry.spec.placement_group else None,
                "task": entry.spec,
                "creation": creation,
                "runtime_env": entry.spec.runtime_env,
            },
        )
        # The constructor's arguments stay alive while the actor may need them (a restart).
        core.ownership.actor_creations[actor_id] = entry

        def done(f: asyncio.Future) -> None:
            if f.exception() is not None and not core.stopped:
                logger.warning("creating actor %s failed: %s", creation.class_name, f.exception())
            # Handles passed to the constructor: the actor registered itself as their borrower
            # while it started, so holding them here would only keep their actors alive.
            if entry.hold:
                entry.hold = [x for x in entry.hold if type(x) is ObjectRef]

        fut.add_done_callback(done)

    # -- method calls (user thread) -----------------------------------------------------
    def submit(
        self,
        actor_id: bytes,
        class_name: str,
        handle: Any,
        method: str,
        args: tuple,
        kwargs: dict,
        num_returns: int,
        retries: int,
        retry_exceptions: Any,
        group: str | None,
        task_id: bytes | None = None,
        generator: list | None = None,
        task_events: bool = True,
    ) -> list[ObjectRef]:
        """Queue a method call; `task_id` is given only by a client's proxy (the client minted
        it); `task_events` False: no task events for it (Ray's `enable_task_events`)."""
        core = self.core
        task_id = task_id or core.task_ids.next()
        return_ids = [_ids.object_id_for_return(task_id, i + 1) for i in range(num_returns)]
        # (no events key: an actor call's row is written by this owner, which knows the
        # method's info by its name: `TaskEventBuffer.ran_elsewhere`)
        spec = TaskSpec(
            task_id,
            f"{class_name}.{method}",
            num_returns,
            core.owner_address_list,
            core.job_id,
            core.namespace,
            method=method,
            actor_id=actor_id,
            concurrency_group=group,
        )
        if generator is not None:  # [mode, backpressure threshold, items the owner has]
            spec.generator = generator
        dep_refs, hold, uses = prepare_args(core, spec, args, kwargs)
        if generator is not None:
            core.streams.register(task_id, generator, actor_call=True)
        # No refs among the arguments: nothing posted for them that a push sent by this thread
        # could overtake (see below).
        plain = not hold and not dep_refs
        hold = [*hold, handle]  # the actor stays alive while calls to it are pending (hold may be shared)
        entry = TaskEntry(spec, return_ids, uses, retries, retry_exceptions, None, dep_refs, hold)
        if task_events:
            entry.events = core.task_events
        # The refs exist before the call can leave: a reply handled before them would find
        # its results unreferenced and free them.
        refs = [ObjectRef(oid, None, core) for oid in return_ids]
        sent: Any = None
        with self._lock:
            state = self.states.get(actor_id)
            if state is None:
                state = self.states[actor_id] = ActorState(actor_id, class_name)
            entry.seq = state.next_seq
            state.next_seq += 1
            entry.actor_state = state
            entry.on_ready = lambda e, s=state: self._flush(s)
            conn = state.conn
            open_lane = False
            if (
                state.finished == entry.seq  # every earlier call has ended: none to overtake
                and conn is not None
                and plain
                and generator is None
                and state.dead_error is None
                and not state.restarting
                and not conn.closed
            ):
                # The actor is idle: push from this thread, saving the I/O thread's wake-up
                # (a sync call's latency). The loop books the call when its reply comes, or
                # before anything posted later (`_book`), whichever is first.
                events = entry.events
                if events is not None:  # submitted, ready and sent at once (see task_events)
                    spec.sent_at = events.clock()  # (and so submitted and ready)
                lane = state.lane
                if lane is not None and return_ids and lane.push(spec, entry):
                    # The actor's main thread reads it, and our user thread its reply (`collect`).
                    state.lane_inflight += 1  # (nothing else in flight: no reply changes it now)
                    for oid in return_ids:
                        self.lane_calls[oid] = state
                    sent = True
                else:
                    state.conn_inflight += 1
                    if state.direct_calls < LANE_AFTER and LANES:
                        state.direct_calls += 1
                        open_lane = state.direct_calls == LANE_AFTER
                    sent = conn.call_threadsafe(
                        "push_actor_task", spec, functools.partial(self._on_direct_reply, state, entry)
                    )
                    if sent is None:
                        state.conn_inflight -= 1
        if sent is not None:
            core.post_lazily(self._book, entry, state)  # no wake-up (while few wait): see _book
            if open_lane:
                core.post(self._open_lane, state)
        else:
            core.post(self._on_submit, entry, state)
        return refs

    # -- method calls (I/O thread) ------------------------------------------------------
    def _on_submit(self, entry: TaskEntry, state: ActorState) -> None:
        self.core.submitter.manager.add(entry)
        state.queue.append(entry)
        self.core.submitter.resolve_dependencies(entry)

    def _book(self, entry: TaskEntry, state: ActorState) -> None:
        """Track a call its user thread pushed (see `submit`; its task event times are in its
        spec) as `_push` would, once: from the reply's callback or from the quiet post,
        whichever runs first."""
        if entry.resolved or entry.done:
            return
        self.core.submitter.manager.add(entry)
        entry.resolved = True
        self._in_flight(state, entry)

    def _on_direct_reply(self, state: ActorState, entry: TaskEntry, fut: asyncio.Future) -> None:
        self._book(entry, state)
        self._on_reply(state, entry, False, fut)
        self.core.drain_quiet()  # the quiet posts of earlier direct calls, now moot

    def _open_lane(self, state: ActorState) -> None:
        if state.address is not None and state.lane is None and not self.core.stopped:
            asyncio.ensure_future(self._connect_lane(state, state.incarnation, state.address))

    async def _connect_lane(self, state: ActorState, incarnation: int, address: str) -> None:
        try:
            lane = await self.core.lane(address, state.actor_id)
        except Exception as exc:  # the usual connection serves on
            logger.debug("no lane to actor %s: %s", state.actor_id.hex(), exc)
            return
        if lane is None:
            self.lanes_declined += 1
            return
        if state.incarnation != incarnation or state.dead_error is not None or self.core.stopped:
            lane.close("the actor restarted")
            self.core.forget_lane(lane)
            return
        state.lane = lane
        self._lane_states.add(state)
        if not self._sweep_armed:
            self._sweep_armed = True
            self.core.loop.call_later(SWEEP_SECONDS, self._sweep)

    # -- lane replies (core_worker.caller_lane) -------------------------------------------
    def collect(self, oid: bytes, timeout: float | None) -> bool | None:
        """User thread, in `get` of `oid` alone: when `oid` is the result of the call in flight
        on a lane and nobody reads that lane, read its reply here. True: the reply was read
        (a plain result is in the store now; anything else the loop handles, to be waited
        for as usual); False: nothing to read here; None: `timeout` seconds passed first."""
        state = self.lane_calls.get(oid)
        lane = state.lane if state is not None else None
        if state is None or lane is None:
            return False
        pending = lane.pending
        if pending is None or oid not in pending[1].return_ids or not lane.take_reader(USER, pending[1]):
            return False
        answered = False
        try:
            message = lane.read_reply(timeout)
            answered = message is not None
        finally:
            entry = lane.release_reader(answered)
        if entry is None:
            return None
        self.lane_reads += 1
        self._lane_answered(state, lane, entry, message, on_loop=False)
        return True

    def need(self, oids: Iterable[bytes]) -> None:
        """Any thread: something waits for these objects (MemoryStore.watch); those made by a
        lane's call in flight get their reply read by the loop, if nobody reads it yet."""
        lane_calls = self.lane_calls
        if not lane_calls:
            return
        for oid in oids:
            state = lane_calls.get(oid)
            if state is not None:
                self.core.post(self._collect_on_loop, state)

    def _collect_on_loop(self, state: ActorState) -> None:
        """I/O thread: read the reply of the lane's call in flight as it comes, unless a user
        thread reads it (it hands the outcome over itself)."""
        lane = state.lane
        if lane is None or not lane.take_reader(LOOP):
            return
        self._watch_lane(state, lane)

    def _watch_lane(self, state: ActorState, lane: CallerLane) -> None:
        """I/O thread, reading the lane: have its replies handled as they come."""
        if lane.watched:
            return
        try:
            if lane.watch(self.core.loop, self._lane_readable, state, lane):
                return
            exc: BaseException = ConnectionClosed("the lane closed")
        except (ValueError, OSError, RuntimeError) as error:  # the socket is gone
            exc = ConnectionClosed(f"the lane broke: {error}")
        self._lane_broke(state, lane, exc)

    def _lane_readable(self, state: ActorState, lane: CallerLane) -> None:
        got, broke = lane.read_all()
        for entry, message in got:
            self._lane_answered(state, lane, entry, message, on_loop=True)
        if broke is not None:
            self._lane_broke(state, lane, broke)
        elif lane.loop_done():  # a user thread may push and read it again
            lane.unwatch(self.core.loop)

    def _lane_writable(self, lane: CallerLane) -> None:
        if lane.flush_out():
            lane.done_writing(self.core.loop)

    def _lane_broke(self, state: ActorState, lane: CallerLane, exc: BaseException) -> None:
        """I/O thread: the lane the loop reads broke: the actor's process is gone, or
        misbehaves. The lane closes, and so does the connection (its calls go back through
        `_locate`, which waits for the restart), and the lane's calls end as lost."""
        if state.conn is not None:
            state.conn.close(f"the lane to the actor broke ({exc})")
        if state.lane is lane:
            self._close_lane(state, str(exc))
        else:  # dropped already (its calls ended then): only the loop's callbacks are left
            lane.close_on_loop(self.core.loop, str(exc))

    def _lane_answered(
        self, state: ActorState, lane: CallerLane, entry: TaskEntry, message: Any, on_loop: bool
    ) -> None:
        """The reply of a lane's call was read (`message`: the response, or the exception of
        a broken lane). A user thread stores a plain result itself and counts the call as
        ended, so its get returns and its next call may be pushed at once; the loop does the
        rest of the bookkeeping later, without being woken for it (`_on_lane_reply`)."""
        with self._lock:
            state.lane_inflight = max(0, state.lane_inflight - 1)
            held, state.held = state.held, False
            for oid in entry.return_ids:
                self.lane_calls.pop(oid, None)
        core = self.core
        if on_loop:
            self._on_lane_reply(state, lane, entry, message)
            return
        returns = _plain_returns(message, len(entry.return_ids)) if not entry.done else None
        if returns is None:
            core.post(self._on_lane_reply, state, lane, entry, message)
            return
        put = core.store.put
        for oid, ret in zip(entry.return_ids, returns):
            put(oid, tuple(ret))
        state.end_call(entry)
        # Calls held back behind this one: wake the loop to send them.
        (core.post if held else core.post_lazily)(self._on_lane_reply, state, lane, entry, message)

    def _on_lane_reply(self, state: ActorState, lane: CallerLane, entry: TaskEntry, message: Any) -> None:
        """I/O thread: a lane call's outcome, handled as one from the connection (`_on_reply`).

        A broken lane also closes the lane and the connection (`_lane_broke`), so that a
        retry is not sent to a process that is dying."""
        self._book(entry, state)
        fut = self.core.loop.create_future()
        if isinstance(message, BaseException):
            if state.lane is lane:  # it broke (read so by a user thread); not a newer lane
                self._lane_broke(state, lane, message)
            fut.set_exception(message)
        elif message[2] is not None:
            try:
                fut.set_exception(RemoteError.from_info(message[2]))
            except Exception:
                fut.set_exception(ConnectionClosed("the lane to the actor sent a malformed error"))
        else:
            fut.set_result(message[3])
        self._on_reply(state, entry, True, fut)
        self.core.drain_quiet()  # the bookkeeping user threads posted lazily, now moot

    def _close_lane(self, state: ActorState, reason: str) -> None:
        """I/O thread: drop the actor's lane (a restart, a lane that broke). Its call in flight,
        unless a user thread is reading it, ends as if its connection had broken."""
        lane = state.lane
        state.lane = None
        self._lane_states.discard(state)
        if lane is None:
            return
        self.core.forget_lane(lane)
        lane.unwatch(self.core.loop)
        lane.done_writing(self.core.loop)
        entries = lane.take_all()
        lane.close(reason)
        for entry in entries:
            lost = ConnectionClosed(f"the lane closed: {reason}")
            self._lane_answered(state, lane, entry, lost, on_loop=True)

    def _sweep(self) -> None:
        """I/O thread, every SWEEP_SECONDS while lanes are open: read the replies that no one
        came for (their calls' ends free what they hold), and drop broken lanes."""
        self.core.drain_quiet()  # (a caller that only reads its lanes never wakes the loop)
        now = time.monotonic()
        for state in list(self._lane_states):
            lane = state.lane
            if lane is None:
                self._lane_states.discard(state)
            elif lane.closed:
                self._close_lane(state, "closed")
            elif lane.pending is not None and lane.reader is None and now - lane.sent_at >= SWEEP_SECONDS:
                self._collect_on_loop(state)
        self._sweep_armed = bool(self._lane_states) and not self.core.stopped
        if self._sweep_armed:
            self.core.loop.call_later(SWEEP_SECONDS, self._sweep)

    def _flush(self, state: ActorState) -> None:
        """Send queued calls in order; a call still resolving arguments holds back those after it."""
        queue = state.queue
        while queue and queue[0].done:
            queue.popleft()
        if not queue:
            return
        if state.dead_error is not None:
            while queue:
                entry = queue.popleft()
                if not entry.done:  # a call cancelled or failed early is over already
                    self._fail(entry, state.dead_error)
            return
        if state.conn is None or state.conn.closed:
            if state.restarting and state.connecting:  # a long-poll for the restart is running
                self._fail_unretried(state)
            if not state.connecting and state.queue:
                state.connecting = True
                asyncio.ensure_future(self._locate(state))
            return
        sent_at = None  # one clock reading for the calls this flush sends (their task events)
        while queue and (queue[0].resolved or queue[0].done):
            entry = queue[0]
            if not entry.done:
                conn = self._channel(state, entry)
                if conn is None:  # the other channel has calls in flight: after their replies
                    return
                events = entry.events
                if events is not None:
                    if sent_at is None:
                        sent_at = events.clock()
                    spec = entry.spec
                    if spec.sent_at is None and not entry.ev_args:  # sent as submitted
                        spec.sent_at = sent_at  # (and so submitted and ready: `events.stamp`'s case)
                    else:
                        events.stamp(entry, sent_at)
                self._push(state, entry, conn)
            queue.popleft()

    def _channel(self, state: ActorState, entry: TaskEntry) -> Connection | CallerLane | None:
        """Where the loop sends a call: the lane, when there is one, the call is not streaming
        (its items come on the connection), nothing is in flight on the connection and no user
        thread reads the lane (the loop then reads it, and every reply on it); else the
        connection, once nothing is in flight on the lane; None meanwhile."""
        lane = state.lane
        if (
            lane is not None
            and entry.spec.generator is None
            and not state.conn_inflight
            and not lane.closed
            and lane.take_for_loop()
        ):
            self._watch_lane(state, lane)
            if state.lane is lane:  # (still there: watching it may have found it broken)
                return lane
        if state.held:  # (a burst behind a call a user thread reads: asked for its reply)
            return None
        with self._lock:
            if not state.lane_inflight:
                return state.conn
            state.held = True  # (its reader clears it, and wakes the loop if it is a user thread)
        self._collect_on_loop(state)
        return None

    def _in_flight(self, state: ActorState, entry: TaskEntry) -> None:
        """The call is sent: it waits for its reply in `state.inflight`."""
        state.inflight[entry.task_id] = entry
        entry.lease = state

    def _push(self, state: ActorState, entry: TaskEntry, conn: Connection | CallerLane) -> None:
        """Send a call (its task event times stamped: see `_flush`)."""
        self._in_flight(state, entry)
        if isinstance(conn, CallerLane):
            self.lane_sends += 1
            with self._lock:
                state.lane_inflight += 1
            if conn.send_from_loop(entry.spec, entry):
                try:
                    conn.want_write(self.core.loop, self._lane_writable, conn)
                except (ValueError, OSError, RuntimeError) as exc:  # (its reads say it broke)
                    logger.debug("cannot write the lane to %s: %s", state.name, exc)
            return
        state.conn_inflight += 1
        if entry.spec.generator is not None:  # a retry skips the items already here
            entry.spec.generator[2] = self.core.streams.received(entry.task_id)
        fut = conn.call("push_actor_task", entry.spec)
        fut.add_done_callback(functools.partial(self._on_reply, state, entry, False))

    def _on_reply(self, state: ActorState, entry: TaskEntry, on_lane: bool, fut: asyncio.Future) -> None:
        """A call's outcome: its reply, or its connection's loss. `on_lane`: it was a lane's
        call, whose count its reader lowered already (`_lane_answered`)."""
        if not on_lane:
            state.conn_inflight -= 1
        state.inflight.pop(entry.task_id, None)
        entry.lease = None
        if entry.done:
            if state.queue:  # calls held back while the other channel had some in flight
                self._flush(state)
            return
        manager = self.core.submitter.manager
        exc = fut.exception()
        if exc is None:
            reply = TaskReply.from_wire(fut.result())
            started = reply.started
            if started is not None and entry.events is not None:  # the worker left us its row
                entry.events.ran_elsewhere(
                    state, state.executor, state.ev_infos, entry.spec, started, reply.duration
                )
            if reply.actor_exited:
                state.dead_error = ActorDiedError(
                    f"The actor {state.name} ({state.actor_id.hex()}) exited: exit_actor() was called "
                    f"in {entry.name}.",
                    state.actor_id.hex(),
                )
            outcome = manager.on_reply(entry, reply)
            if isinstance(outcome, Complete):
                self.core.submitter.complete(entry, outcome.returns, outcome.holder)
                if state.queue:  # calls held back while the other channel had some in flight
                    self._flush(state)
            else:
                state.queue.appendleft(entry)
                self._flush(state)
            return
        # The connection broke: the actor died or restarts.
        lost = manager.on_actor_lost(entry, state.name, state.actor_id)
        if isinstance(lost, Fail):
            self._fail(entry, state.dead_error or lost.error)
        else:
            _insert_in_order(state.queue, entry)
        if state.conn is not None and state.conn.closed:
            state.conn = None
        self._flush(state)

    def _fail(self, entry: TaskEntry, exc: BaseException) -> None:
        self.core.submitter.finish_with_error(entry, exc)

    async def _locate(self, state: ActorState) -> None:
        """Ask the GCS where the actor lives (waiting while it starts), then connect."""
        core = self.core
        wait = False
        stale_until = core.loop.time() + 2.0
        try:
            while True:
                info = await core.gcs.call(
                    "get_actor_info", {"actor_id": state.actor_id, "wait": wait, "not": state.incarnation}
                )
                if (
                    not wait
                    and info is not None
                    and info["state"] == "ALIVE"
                    and info["incarnation"] == state.incarnation
                    and core.loop.time() < stale_until
                ):
                    # The GCS has not seen the death yet: ask again shortly, so a restart is
                    # noticed (and calls without retries fail fast) instead of long-polling.
                    await asyncio.sleep(0.02)
                    continue
                if info is None:
                    state.dead_error = ActorDiedError(f"The actor {state.actor_id.hex()} does not exist.")
                    break
                if info["state"] == DEAD and info.get("runtime_env_failed"):
                    state.dead_error = RuntimeEnvSetupError(
                        f"The actor {state.name} ({state.actor_id.hex()}) could not start: "
                        f"{info['death_cause']}"
                    )
                    break
                if info["state"] == DEAD:
                    state.dead_error = ActorDiedError(
                        f"The actor {state.name} ({state.actor_id.hex()}) is dead: {info['death_cause']}",
                        state.actor_id.hex(),
                    )
                    break
                if info["state"] == "ALIVE" and info["incarnation"] != state.incarnation:
                    self._close_lane(state, "the actor restarted")  # a new process: a new lane later
                    try:
                        state.conn = await core.peer(info["address"])
                        state.incarnation = info["incarnation"]
                        state.address = info["address"]
                        state.executor = (info.get("node_id"), info.get("worker_id"), info.get("pid"))
                        state.direct_calls = 0
                        state.restarting = False
                        break
                    except (OSError, RaySystemError):
                        # The worker died as we connected (reset, closed mid-handshake): ask again,
                        # never give up on the actor for a failed connect.
                        state.incarnation = info["incarnation"]
                        await asyncio.sleep(0.05)
                        continue
                if info["state"] == RESTARTING:
                    state.restarting = True
                    self._fail_unretried(state)
                    if not state.queue:
                        break
                wait = True
        except Exception as exc:
            state.dead_error = ActorUnavailableError(f"cannot reach the actor {state.actor_id.hex()}: {exc}")
        finally:
            state.connecting = False
        self._flush(state)

    def _fail_unretried(self, state: ActorState) -> None:
        """The actor is restarting: calls that may not be retried fail now instead of waiting."""
        keep: collections.deque[TaskEntry] = collections.deque()
        for entry in state.queue:
            if entry.done:
                continue
            if entry.retries_left == 0 and entry.spec.attempt == 0:  # a resent call waits
                self._fail(
                    entry,
                    ActorUnavailableError(
                        f"The actor {state.name} ({state.actor_id.hex()}) is restarting, and the call "
                        f"{entry.name} has no retries (max_task_retries=0), so it was not sent.",
                        state.actor_id.hex(),
                    ),
                )
            else:
                keep.append(entry)
        state.queue = keep

    def cancel(self, entry: TaskEntry, force: bool) -> None:
        """Cancel an actor call: one still queued fails now; a running one is interrupted."""
        state = self.states.get(entry.spec.actor_id or b"")
        if entry.lease is None:
            # It stays in the ordered queue, done, and is skipped when reached: searching the
            # queue for it made cancelling n queued calls O(n^2).
            self.core.submitter.finish_with_error(entry, self.core.submitter.manager.cancelled_error(entry))
        elif state is not None and state.conn is not None:
            state.conn.notify("cancel_task", {"tid": entry.task_id, "recursive": True})

    # -- other operations ---------------------------------------------------------------
    def kill(self, actor_id: bytes, class_name: str, no_restart: bool) -> None:
        core = self.core
        core.request(core.gcs, "kill_actor", {"actor_id": actor_id, "no_restart": no_restart})
        if no_restart:
            # Calls made after kill() returns fail, even before the worker is gone.
            with self._lock:
                state = self.states.get(actor_id)
                if state is None:
                    state = self.states[actor_id] = ActorState(actor_id, class_name)
            state.dead_error = ActorDiedError(
                f"The actor {class_name} ({actor_id.hex()}) was killed by kill().", actor_id.hex()
            )
            core.post(core.ownership.release_creation_args, actor_id)

    def get_named(self, name: str, namespace: str | None) -> dict:
        """What a handle to the named actor needs; ValueError when there is none."""
        core = self.core
        ns = namespace or core.namespace
        info = core.request(core.gcs, "get_named_actor", {"name": name, "namespace": ns})
        if info is None:
            raise ValueError(f"Failed to look up actor with name '{name}' in namespace '{ns}'.")
        owner = tuple(info["owner"]) if info.get("owner") and not info.get("detached") else None
        if owner == core.owner_address:
            owner = None
        return dict(info, owner=owner)


def _insert_in_order(queue: collections.deque, entry: TaskEntry) -> None:
    """Put a call to be resent back in the queue before any later call."""
    for i, other in enumerate(queue):
        if other.seq > entry.seq:
            queue.insert(i, entry)
            return
    queue.append(entry)


def _plain_returns(message: Any, count: int) -> list | None:
    """The result entries of a lane reply that is a plain success (values inline, nothing
    held for us, the actor staying): what a user thread may store itself. None otherwise."""
    if type(message) is not list or message[2] is not None:
        return None
    payload = message[3]
    try:
        reply = TaskReply.from_wire(payload)
    except Exception:
        return None
    returns = reply.returns
    if (
        reply.app_error
        or reply.actor_exited
        or reply.exiting
        or reply.holder is not None
        or type(returns) is not list
        or len(returns) != count
    ):
        return None
    for ret in returns:
        if type(ret) is not list or len(ret) != 2 or ret[0] != INLINE:
            return None
    return returns
