"""Running calls in a worker: one path for every kind of call.

A task, an actor's constructor, a method of a plain actor, of a threaded actor and of an
async actor all go through `run_call` (or its coroutine twin `run_call_async`, which only
adds an `await`): load the function, unpack the arguments, run, store the returns, and turn
any exception into the call's result. They differ only in where they run, which
`actor_runtime` decides: the worker's main thread, a thread pool, or the actor's event loop.

Per-call state (task id, name, cancellation) lives in a ContextVar (`call_context`), so
concurrent calls of one actor never see each other's.

Cancelling a running call raises KeyboardInterrupt in it (SIGINT on the main thread, an
asynchronous exception on a pool thread, `Task.cancel()` for a coroutine); a call that
catches it and returns gives that value.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import inspect
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from skate import _task_states as ts
from skate._config import MAX_INLINE_BYTES
from skate._serialization import serialize
from skate.core_worker import call_context
from skate.core_worker.args import load_args
from skate.core_worker.call_context import CallContext
from skate.core_worker.errors import error_entry, task_error_entry
from skate.core_worker.generator_runner import GeneratorRunner
from skate.core_worker.lanes import MainThreadInbox
from skate.exceptions import ActorDiedError, TaskCancelledError
from skate.protocol.connection import DeferredReply, ReplyThen
from skate.protocol.messages import IN_STORE, INLINE, ActorCreation, TaskReply, TaskSpec

logger = logging.getLogger(__name__)


class ActorExit(SystemExit):
    """Raised by exit_actor() to end the actor once the current call returns."""


def _node_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


class Executor:
    def __init__(self, core: Any):
        self.core = core
        # (run, spec, reply) items for the main thread, and the lanes it reads itself
        self.inbox = MainThreadInbox(self._run_lane_call)
        self.running: dict[bytes, tuple[CallContext, Any]] = {}  # task id -> (call, thread id or Task)
        # A cancel that finds its call not running yet marks it for `_prepare`; this lock
        # makes "not running yet" and "now running" exclusive (else a cancel arriving as
        # the call starts could be lost, the call running to its end).
        self._cancel_lock = threading.Lock()
        if core.task_events is not None:  # a drain of task events reports the running calls
            core.task_events.running_calls = self._running_calls
        self._cancelled_early: set[bytes] = set()
        self._calls: collections.Counter = collections.Counter()
        self.actor: Any = None  # the ActorRuntime once this worker hosts an actor
        self.actor_pg: list | None = None  # the placement group the hosted actor was placed in
        self.instance: Any = None
        self.last_call: str | None = None  # the name of the latest call begun (for the memory report)
        self.exiting = False
        self.ip = core.info.get("node_ip") or _node_ip()
        self.generators = GeneratorRunner(core)  # runs generator calls, reporting each item
        handlers = core.handlers
        handlers["push_task"] = self._h_push
        handlers["cancel_task"] = self._h_cancel
        handlers["create_actor"] = self._h_create_actor
        handlers["push_actor_task"] = self._h_push_actor_task
        handlers["open_lane"] = self._h_open_lane
        handlers["process_info"] = lambda conn, p: self.process_info()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._on_sigint)

    def process_info(self) -> dict:
        """What this worker runs, for the raylet's memory report: its actor's class, or the
        calls running now (else the latest one)."""
        running = [call.name for call, _ in list(self.running.values())]
        return {
            "actor_class": None if self.instance is None else type(self.instance).__name__,
            "actor_id": self.core.actor_id,
            "running": running,
            "last_call": self.last_call,
        }

    # -- I/O thread ---------------------------------------------------------------------
    # A call's reply is sent by the thread that ran it (see `CoreWorker.send_reply`), not handed back to
    # this thread first: the handlers return the request's DeferredReply.
    def _h_push(self, conn: Any, fields: list) -> DeferredReply:
        reply = conn.defer()
        spec = TaskSpec.from_wire(fields)
        self.generators.remember(spec, conn)
        self.inbox.put((self.run_call, spec, reply))
        return reply

    def _h_create_actor(self, conn: Any, msg: dict) -> DeferredReply:
        reply = conn.defer()
        spec = TaskSpec.from_wire(msg["task"])
        spec.gpus = msg.get("gpus") or []
        creation = ActorCreation.from_wire(msg["creation"])
        creation.restarts = msg.get("restarts", 0)
        self.inbox.put((lambda s: self._create_actor(s, creation), spec, reply))
        return reply

    def _h_push_actor_task(self, conn: Any, fields: list) -> DeferredReply:
        if self.actor is None:
            raise RuntimeError("this worker hosts no actor")
        reply = conn.defer()
        spec = TaskSpec.from_wire(fields)
        self.generators.remember(spec, conn)
        self.actor.submit(spec, reply)
        return reply

    def _h_open_lane(self, conn: Any, actor_id: Any) -> Any:
        """A caller asks for this connection to become a lane (`core_worker.lanes`): only a
        plain actor (sync, one call at a time) takes one. The socket moves to the main
        thread right after the reply, before anything more is read from it."""
        actor = self.actor
        if (
            actor is None
            or actor.is_async
            or actor.pools
            or self.exiting
            or actor_id != bytes.fromhex(self.core.actor_id or "")
            or not self.inbox.reserve()
        ):
            return False
        return ReplyThen(True, self._adopt_lane)

    def _adopt_lane(self, conn: Any) -> None:
        sock = conn.detach_socket()
        if sock is not None:
            self.inbox.add_lane(sock)
        else:  # it cannot move (TLS...): it stays a connection like any other
            self.inbox.unreserve()

    def _run_lane_call(self, spec: TaskSpec) -> TaskReply:
        """Main thread: a call read from a lane, checked as `ActorRuntime.submit` checks one."""
        unknown = self.actor.unknown_group(spec)
        return unknown if unknown is not None else self.run_call(spec)

    def _h_cancel(self, conn: Any, payload: dict) -> None:
        tid = payload["tid"]
        with self._cancel_lock:
            running = self.running.get(tid)
            if running is None:
                self._cancelled_early.add(tid)
        if running is not None:
            call, where = running
            call.cancelled = True
            if isinstance(where, asyncio.Task):
                where.get_loop().call_soon_threadsafe(where.cancel)
            elif where == threading.main_thread().ident:
                os.kill(os.getpid(), signal.SIGINT)
            else:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(where), ctypes.py_object(KeyboardInterrupt)
                )
        if payload.get("recursive", True):
            self.core.submitter.cancel_all()

    def _on_sigint(self, signum: int, frame: Any) -> None:
        call = call_context.current_call()
        if call is not None and call.cancelled:
            raise KeyboardInterrupt

    # -- main thread --------------------------------------------------------------------
    def run_forever(self) -> None:
        """Run calls queued for the main thread until the worker stops or the actor exits."""
        core = self.core
        while not core.stopped:
            run, spec, sink = self.inbox.get()
            if run is None:
                return
            if self.exiting:
                continue  # exit_actor() ran: later calls fail when the connection drops
            try:
                reply = run(spec)
            except Exception as exc:  # a call the executor could not even fail properly
                logger.exception("call %r could not be run", getattr(spec, "name", "?"))
                core.post(sink.fail, exc)
                continue
            core.send_reply(sink, reply)
            if self.exiting:
                return

    def _create_actor(self, spec: TaskSpec, creation: ActorCreation) -> dict:
        from skate.core_worker.actor_runtime import ActorRuntime

        core = self.core
        core.actor_id = creation.actor_id.hex()
        core.actor_reconstructed = creation.restarts > 0
        core.actor_name = creation.actor_name
        spec.num_returns = 1  # the constructor's result: None, or the error it raised
        reply = self.run_call(spec, creation=True)
        if reply.app_error:
            from skate._serialization import deserialize_inline

            _, err = deserialize_inline(reply.returns[0][1])
            return {"error": str(err)}
        self.actor = ActorRuntime(self, self.instance, creation)
        return {"ok": True, "pid": os.getpid()}

    # -- one call -----------------------------------------------------------------------
    def _running_calls(self) -> list[tuple[TaskSpec, float]]:
        """The calls running now, as (spec, start by perf_counter) for task events (I/O
        thread)."""
        running = list(self.running.values())
        return [(call.spec, call.began) for call, _ in running if call.began]

    def _begin(self, spec: TaskSpec) -> CallContext:
        core = self.core
        self.last_call = spec.name
        core.job_id = spec.job_id
        core.namespace = spec.namespace
        if spec.resources is not None:
            core.assigned_resources = spec.resources
        if spec.method is None:  # a task or an actor's creation: set its GPUs
            core.gpu_ids = list(spec.gpus or ())
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in core.gpu_ids)
        if spec.method is None:
            pg = spec.placement_group
            if spec.actor_id is not None:  # an actor's constructor: its methods run in its group
                self.actor_pg = pg
        else:
            pg = self.actor_pg
        return CallContext(
            spec.task_id,
            spec.name,
            spec.actor_id is not None,
            placement_group=pg,
            spec=spec,
        )

    def _prepare(self, spec: TaskSpec, call: CallContext) -> tuple[Any, tuple, dict]:
        """The callable and its arguments."""
        core = self.core
        if spec.task_id in self._cancelled_early:
            self._cancelled_early.discard(spec.task_id)
            call.cancelled = True
            raise KeyboardInterrupt
        method = spec.method
        if method is None:
            fn = core.functions.load(spec.function)
        elif method == "__ray_ready__":
            fn = _ready
        elif method == "__ray_terminate__":
            fn = _terminate
        else:
            fn = getattr(self.instance, method)
        args, kwargs = load_args(spec, core.objects.read_stored)
        if core.refs.new_borrowed:
            core.ownership.register_borrows()
        return fn, args, kwargs

    def run_call(self, spec: TaskSpec, creation: bool = False) -> TaskReply:
        """Run one call on this thread and return its reply."""
        call = self._begin(spec)
        token = call_context.enter(call)
        with self._cancel_lock:
            self.running[spec.task_id] = (call, threading.get_ident())
        # A spec without the owner's times: its events are off (the option, or an owner that
        # records none), so this worker records none either.
        events = self.core.task_events if spec.sent_at is not None else None
        start = time.perf_counter()
        if events is not None:
            call.began = start  # (a drain reports a call running this long)
        try:
            try:
                fn, args, kwargs = self._prepare(spec, call)
                result = fn(*args, **kwargs)
                del args, kwargs
                if spec.generator is not None:
                    result = self.generators.run(spec, result)
                if creation:
                    self.instance, result = result, None
            except BaseException as exc:
                if events is not None:
                    _record_failure(events, spec, start, call, exc)
                return self._failed(spec, call, exc, start)
            reply = self._succeeded(spec, result, start, events)
            if events is not None:
                if reply.app_error:  # the result could not be stored
                    _record_unstored(events, spec, start)
                elif reply.started is None:  # (else its owner writes its row)
                    events.ran(spec, start, reply.duration)
            return reply
        finally:
            self.running.pop(spec.task_id, None)
            call_context.leave(token)

    async def run_call_async(self, spec: TaskSpec) -> TaskReply:
        """Run one call of an async actor as a coroutine on the actor's loop."""
        call = self._begin(spec)
        token = call_context.enter(call)
        with self._cancel_lock:
            self.running[spec.task_id] = (call, asyncio.current_task())
        # A spec without the owner's times: its events are off (the option, or an owner that
        # records none), so this worker records none either.
        events = self.core.task_events if spec.sent_at is not None else None
        start = time.perf_counter()
        if events is not None:
            call.began = start  # (a drain reports a call running this long)
        try:
            try:
                fn, args, kwargs = self._prepare(spec, call)
                result = fn(*args, **kwargs)
                del args, kwargs
                if spec.generator is not None:
                    result = await self.generators.run_async(spec, result)
                elif inspect.isawaitable(result):
                    result = await result
            except asyncio.CancelledError as exc:
                call.cancelled = True
                if events is not None:
                    _record_failure(events, spec, start, call, exc)
                return self._failed(spec, call, exc, start)
            except BaseException as exc:
                if events is not None:
                    _record_failure(events, spec, start, call, exc)
                return self._failed(spec, call, exc, start)
            reply = self._succeeded(spec, result, start, events)
            if events is not None:
                if reply.app_error:  # the result could not be stored
                    _record_unstored(events, spec, start)
                elif reply.started is None:  # (else its owner writes its row)
                    events.ran(spec, start, reply.duration)
            return reply
        finally:
            self.running.pop(spec.task_id, None)
            call_context.leave(token)

    def _succeeded(self, spec: TaskSpec, result: Any, start: float, events: Any = None) -> TaskReply:
        """The reply of a call that returned. With `events` (its task events are on), an
        actor call begun since the last send of them (so never reported running) has its
        row written by its owner, from the reply's `started`: the owner's I/O thread handles
        the reply anyway, and this thread, which runs the actor's calls, is spared the work."""
        try:
            returns = self._store_returns(result, spec)
        except Exception as exc:
            return self._error_reply(spec, exc, start)
        core = self.core
        started = None
        if events is not None and spec.method is not None and start > events.drained_perf:
            started = start + events.perf_offset
        reply = TaskReply(
            returns, time.perf_counter() - start, False, self._count_call(spec), None, False, started
        )
        ownership = core.ownership
        if ownership.contained or ownership.reported_owns:
            ownership.report_ownership()
            if any(
                spec.task_id + (i + 1).to_bytes(4, "little") in ownership.contained
                for i in range(spec.num_returns)
            ):
                reply.holder = core.address
        return reply

    def _failed(self, spec: TaskSpec, call: CallContext, exc: BaseException, start: float) -> TaskReply:
        n = spec.num_returns
        if isinstance(exc, SystemExit) and spec.actor_id is not None:
            # exit_actor() (or sys.exit in an actor): this call fails, the actor ends, no restart.
            self._exit_actor()
            err = ActorDiedError(
                f"The actor {self.core.actor_name or spec.actor_id.hex()} exited: exit_actor() was "
                f"called in {spec.name}.",
                spec.actor_id.hex(),
            )
            entry = list(error_entry(err))
            return TaskReply([entry] * n, time.perf_counter() - start, False, True, None, True)
        if call.cancelled and isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
            entry = list(error_entry(TaskCancelledError(f"Task {spec.name} was cancelled.")))
            return TaskReply([entry] * n, time.perf_counter() - start, False, self._count_call(spec))
        if not isinstance(exc, Exception):
            if isinstance(exc, KeyboardInterrupt):
                raise exc  # a real Ctrl-C, not a cancellation
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        return self._error_reply(spec, exc, start)

    def _error_reply(self, spec: TaskSpec, exc: BaseException, start: float) -> TaskReply:
        entry = list(task_error_entry(spec.name, exc, os.getpid(), self.ip))
        return TaskReply(
            [entry] * spec.num_returns, time.perf_counter() - start, True, self._count_call(spec)
        )

    def _count_call(self, spec: TaskSpec) -> bool:
        """Whether the worker leaves after this call (max_calls reached)."""
        if not spec.max_calls:
            return False
        self._calls[spec.function] += 1
        return self._calls[spec.function] >= spec.max_calls

    def _exit_actor(self) -> None:
        """exit_actor() was called: tell the GCS not to restart us; the worker leaves after the reply."""
        core = self.core
        if self.exiting:
            return
        self.exiting = True
        core.post(core.gcs.notify, "actor_exiting", {"actor_id": bytes.fromhex(core.actor_id)})

    def stop_main_thread(self) -> None:
        """Wake the main thread's loop so that it returns (the worker then leaves)."""
        self.inbox.put((None, None, None))

    def _store_returns(self, result: Any, spec: TaskSpec) -> list:
        nret = spec.num_returns
        if nret == 1:
            values = [result]
        elif nret == 0:
            values = []
        else:
            if not isinstance(result, (tuple, list)) or len(result) != nret:
                got = (
                    f"{type(result).__name__} of length {len(result)}"
                    if hasattr(result, "__len__")
                    else (type(result).__name__)
                )
                raise ValueError(
                    f"Task {spec.name} was declared with num_returns={nret} but returned a {got}"
                )
            values = list(result)
        returns = []
        core = self.core
        owner_id = spec.owner[0]
        for i, value in enumerate(values):
            sobj = serialize(value)
            oid = spec.task_id + (i + 1).to_bytes(4, "little")
            if sobj.contained_refs:
                # Kept alive until the caller frees the returned object (release_contained).
                core.ownership.contained[oid] = list(sobj.contained_refs)
            if sobj.size < MAX_INLINE_BYTES:
                returns.append([INLINE, sobj.to_inline()])
            else:
                core.objects.write_to_plasma(oid, sobj, owner_id)
                returns.append([IN_STORE, core.node_id, sobj.size])
        return returns


def _ready() -> bool:
    return True


def _terminate() -> None:
    raise ActorExit(0)


def _record_failure(events: Any, spec: TaskSpec, began: float, call: CallContext, exc: BaseException) -> None:
    """A task event for a call that raised: why, in Ray's error types (`began`: by
    `time.perf_counter()`)."""
    if call.cancelled and isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        events.ran_and_failed(spec, began, "TASK_CANCELLED", f"Task {spec.name} was cancelled.")
    elif isinstance(exc, SystemExit) and spec.actor_id is not None:
        events.ran_and_failed(spec, began, "ACTOR_DIED", f"exit_actor() was called in {spec.name}")
    else:
        events.ran_and_failed(spec, began, ts.TASK_EXECUTION_EXCEPTION, f"{type(exc).__name__}: {exc}")


def _record_unstored(events: Any, spec: TaskSpec, began: float) -> None:
    """A task event for a call whose result could not be stored (`began`: by perf_counter)."""
    events.ran_and_failed(spec, began, ts.TASK_EXECUTION_EXCEPTION, "its result could not be stored")
