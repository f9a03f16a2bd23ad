"""Running tasks in a worker process: on the main thread, one at a time, in arrival order.

The I/O thread queues pushed tasks; the main thread loads the function (cached by
content key), resolves arguments, runs it and stores the returns, then hands the
reply back to the I/O thread.
"""

from __future__ import annotations

import collections
import os
import queue
import signal
import socket
import threading
import time
from typing import Any

from skate._config import MAX_INLINE_BYTES
from skate._serialization import KIND_ERROR, deserialize_inline, serialize
from skate.core_worker.core import _set_if_pending, error_entry, task_error_entry
from skate.core_worker.memory_store import IN_STORE, INLINE
from skate.core_worker.submitter import ARGS_SLOT, ArgSlot
from skate.exceptions import TaskCancelledError


class _IdOnly:
    """Stands in for an ObjectRef where only the id is read (no reference is counted)."""

    __slots__ = ("_id",)

    def __init__(self, object_id: bytes):
        self._id = object_id

    def hex(self) -> str:
        return self._id.hex()


class ActorExit(SystemExit):
    """Raised by exit_actor() to end the actor once the current call returns."""


_IP = "127.0.0.1"
try:
    _IP = socket.gethostbyname(socket.gethostname())
except OSError:
    pass


class _Cancelled(BaseException):
    """Raised into a running task by cancel(); not an Exception so user code rarely eats it."""


class Executor:
    def __init__(self, core):
        self.core = core
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.current: bytes | None = None
        self._cancel_target: bytes | None = None
        self._cancelled_early: set[bytes] = set()
        self._calls: collections.Counter = collections.Counter()
        self.actor = None  # the ActorRuntime once this worker hosts an actor
        self._instance = None
        self.exiting = False
        core.handlers["push_task"] = self._h_push
        core.handlers["cancel_task"] = self._h_cancel
        core.handlers["create_actor"] = self._h_create_actor
        core.handlers["push_actor_task"] = self._h_push_actor_task
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._on_sigint)

    # -- I/O thread -------------------------------------------------------------------
    def _h_push(self, conn, spec: dict):
        fut = self.core.loop.create_future()
        self.queue.put((self.execute, spec, fut))
        return fut

    def _h_create_actor(self, conn, spec: dict):
        fut = self.core.loop.create_future()
        self.queue.put((self._create_actor, spec, fut))
        return fut

    def _h_push_actor_task(self, conn, spec: dict):
        fut = self.core.loop.create_future()
        if self.actor is None:
            raise RuntimeError("this worker hosts no actor")
        self.actor.submit(spec, fut)
        return fut

    def _h_cancel(self, conn, payload: dict) -> None:
        tid = payload["tid"]
        if self.current == tid:
            self._cancel_target = tid
            os.kill(os.getpid(), signal.SIGINT)
        else:
            self._cancelled_early.add(tid)
        if payload.get("recursive", True):
            self.core.submitter.cancel_all()

    def _on_sigint(self, signum, frame) -> None:
        if self.current is not None and self._cancel_target == self.current:
            self._cancel_target = None
            raise _Cancelled()

    # -- main thread ------------------------------------------------------------------
    def run_forever(self) -> None:
        core = self.core
        while not core.stopped:
            run, spec, fut = self.queue.get()
            if self.exiting:
                continue  # exit_actor() ran: later calls fail when the connection drops
            reply = run(spec)
            core.post(_set_if_pending, fut, reply)

    def _create_actor(self, spec: dict) -> dict:
        from skate.core_worker.actor_runtime import ActorRuntime

        core = self.core
        core.actor_id = spec["actor_id"].hex()
        core.actor_reconstructed = spec.get("restarts", 0) > 0
        core.actor_name = spec.get("actor_name") or ""
        reply = self.execute(dict(spec, nret=1, fn_is_class=True))
        if reply["app_error"]:
            _, err = deserialize_inline(reply["returns"][0][1])
            return {"error": str(err)}
        self.actor = ActorRuntime(self, self._instance, spec)
        return {"ok": True, "pid": os.getpid()}

    def call_actor_method(self, spec: dict) -> dict:
        """Run one actor method call (on whichever thread the actor's concurrency uses)."""
        return self.execute(spec)

    def execute(self, spec: dict) -> dict:
        core = self.core
        tid = spec["tid"]
        name = spec["name"]
        nret = spec["nret"]
        owner_id = spec["owner"][0]
        core.current_task_id = tid
        core.current_task_name = name
        core.job_id = spec["job"]
        core.namespace = spec["ns"]
        if "res" in spec:
            core.assigned_resources = spec["res"]
        gpus = spec.get("gpus")
        if gpus is not None or "fn" in spec:  # a task or an actor's creation: set its GPUs
            core.gpu_ids = list(gpus or [])
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in core.gpu_ids)
        core.in_task_blocking = True
        start = time.perf_counter()
        app_error = False
        try:
            if tid in self._cancelled_early:
                self._cancelled_early.discard(tid)
                raise _Cancelled()
            method = spec.get("method")
            fn = getattr(self._instance, method) if method else core.functions.load(spec["fn"])
            args, kwargs = self._load_args(spec)
            if core.refs.new_borrowed:
                core.register_borrows()
            self.current = tid
            try:
                result = fn(*args, **kwargs)
            finally:
                self.current = None
            del args, kwargs
            if spec.get("fn_is_class"):
                self._instance = result
                result = None
            returns = self._store_returns(result, spec, owner_id)
        except ActorExit:
            returns = self._store_returns(None if nret == 1 else (None,) * nret, spec, owner_id)
            self._exit_actor()
        except _Cancelled:
            returns = [list(error_entry(TaskCancelledError(f"Task {name} was cancelled.")))] * nret
            app_error = False
        except Exception as exc:
            returns = [list(task_error_entry(name, exc, os.getpid(), _IP))] * nret
            app_error = True
        finally:
            core.in_task_blocking = False
            core.current_task_name = None
        dur = time.perf_counter() - start
        max_calls = spec.get("max_calls") or 0
        exiting = False
        if max_calls:
            self._calls[spec["fn"]] += 1
            exiting = self._calls[spec["fn"]] >= max_calls
        reply = {"returns": returns, "dur": dur, "app_error": app_error, "exiting": exiting}
        if core.contained or core._reported_owns:
            core.report_ownership()
        if (
            not app_error
            and nret
            and any(spec["tid"] + (i + 1).to_bytes(4, "little") in core.contained for i in range(nret))
        ):
            reply["holder"] = core.address
        return reply

    def _exit_actor(self) -> None:
        """exit_actor() was called: tell the GCS not to restart us, reply, then leave."""
        core = self.core
        self.exiting = True
        core.post(core.gcs.notify, "actor_exiting", {"actor_id": bytes.fromhex(core.actor_id)})
        core.post(lambda: core.loop.call_later(0.1, os._exit, 0))

    def _load_args(self, spec: dict) -> tuple[tuple, dict]:
        values: dict[int, Any] = {}
        blob = None
        in_store = []
        for slot, oid, entry in spec["deps"]:
            if entry[0] == INLINE:
                kind, value = deserialize_inline(entry[1])
                if kind == KIND_ERROR:
                    raise value
                if slot == ARGS_SLOT:
                    blob = value
                else:
                    values[slot] = value
            else:
                in_store.append((slot, oid, tuple(entry)))
        if in_store:
            refs = [_IdOnly(oid) for _, oid, _ in in_store]  # no ref counting: the caller holds these
            entries = [entry for _, _, entry in in_store]
            loaded = self.core._materialize(refs, entries)
            for (slot, _, _), value in zip(in_store, loaded):
                if slot == ARGS_SLOT:
                    blob = value
                else:
                    values[slot] = value
        if blob is None:
            blob = deserialize_inline(spec["args"])[1] if spec["args"] is not None else ((), {})
        args, kwargs = blob
        if values:
            args = tuple(values[a.index] if type(a) is ArgSlot else a for a in args)
            kwargs = {k: values[v.index] if type(v) is ArgSlot else v for k, v in kwargs.items()}
        return args, kwargs

    def _store_returns(self, result: Any, spec: dict, owner_id: str) -> list:
        nret = spec["nret"]
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
                    f"Task {spec['name']} was declared with num_returns={nret} but returned a {got}"
                )
            values = list(result)
        returns = []
        core = self.core
        for i, value in enumerate(values):
            sobj = serialize(value)
            oid = spec["tid"] + (i + 1).to_bytes(4, "little")
            if sobj.contained_refs:
                # Kept alive until the caller frees the returned object (release_contained).
                core.contained[oid] = list(sobj.contained_refs)
            if sobj.size < MAX_INLINE_BYTES:
                returns.append([INLINE, sobj.to_inline()])
            else:
                core.write_to_plasma(oid, sobj, owner_id)
                returns.append([IN_STORE, core.node_id, sobj.size])
        return returns
