"""The proxy driver: one process per client session, a real driver of the cluster.

The client server (`skate.client.server`) starts it for each new client session. It joins
the cluster with `skate.init(address=...)`, so the session is a job of its own: isolated from
other clients, and when it ends (the client disconnects, or stays away past the grace
period) its non-detached actors and its objects go with it.

It connects back to the server over the session directory's Unix socket. Once the server has
authenticated the client, it hands the client's socket over (`protocol.handoff`, on the
socket pair given at start as --handoff-fd) and this process serves the client directly;
with TLS the server relays the client's frames instead, over the Unix socket. Either way the
calls are applied in arrival order on one lane (see `_lane`); calls that block (get, wait,
GCS requests) run on a pool. Every ref shipped to the client is held here (`refs.HeldRefs`)
until the client releases it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import functools
import json
import logging
import os
import pickle
import socket
import sys
import traceback
from typing import Any

import cloudpickle

import skate
from skate._config import MAX_INLINE_BYTES
from skate._secure_files import read_token
from skate._serialization import KIND_ERROR, KIND_VALUE, serialize
from skate.actor import ActorHandle, _handle_from_info
from skate.client.refs import HeldRefs
from skate.client.transfer import INLINE_BYTES, Assembly, inline_form, load, parts_of
from skate.core_worker import context
from skate.core_worker.errors import error_entry
from skate.core_worker.memory_store import Waiter
from skate.exceptions import GetTimeoutError, ObjectLostError, RayError, RaySystemError
from skate.object_ref import ObjectRef
from skate.protocol import connect
from skate.protocol.handoff import adopt, receive_sockets
from skate.protocol.messages import INLINE

logger = logging.getLogger("skate.client.proxy")


class Blocking:
    """What a step returns when the rest of its work may block: `fn` runs on the pool."""

    __slots__ = ("fn",)

    def __init__(self, fn: Any):
        self.fn = fn


class Proxy:
    """Serves one client session on behalf of the driver this process is."""

    def __init__(self, core: Any, grace: float):
        self.core = core
        self.grace = grace
        self.held = HeldRefs()
        self.ordered = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="proxy-ordered")
        self.blocking = concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="proxy-blocking")
        self.uploads: dict[str, Assembly] = {}
        self.downloads: dict[str, tuple[list[memoryview], Any]] = {}
        self._next_download = 0
        self.done: asyncio.Event | None = None
        self._grace_timer: asyncio.TimerHandle | None = None
        self._backlog: collections.deque = collections.deque()  # steps waiting for a holding step
        self._holding = False
        self.client: Any = None  # the client's connection, once handed over by the server
        self.puts_into_store = 0  # uploads written straight into the object store
        # Steps run on the loop, in arrival order. Those that wait on the GCS hold the lane
        # (on the ordered thread) so later steps see their effect; those that wait for
        # objects do their ordered part here and the waiting on the pool (see Blocking).
        steps = {
            "export": self._export,
            "submit": self._submit,
            "actor_submit": self._actor_submit,
            "put": self._put,
            "cancel": self._cancel,
            "release": self._release,
            "get": self._get,
            "wait": self._wait,
            "gcs": self._gcs,
            "hello": self._hello,
            "sync": lambda p: None,  # the client's flow control: answered once all before it ran
            "stats": lambda p: {
                "held": len(self.held),
                "uploads": len(self.uploads),
                "downloads": len(self.downloads),
                "puts_into_store": self.puts_into_store,
            },
            "upload_begin": self._upload_begin,
            "upload": self._upload,
            "download": self._download,
            "download_end": self._download_end,
        }
        holding = {
            "actor_create": self._actor_create,
            "actor_kill": self._actor_kill,
            "get_named": self._get_named,
        }
        self.handlers: dict[str, Any] = {}
        for name, fn in steps.items():
            self.handlers[name] = self._lane(name, fn, False)
        for name, fn in holding.items():
            self.handlers[name] = self._lane(name, fn, True)
        self.handlers.update(
            {
                "detached": lambda conn, p: self._detached(),
                "attached": lambda conn, p: self._attached(),
                "disconnect": lambda conn, p: self._finish("the client disconnected"),
            }
        )

    # -- dispatch: one ordered lane -----------------------------------------------------
    def _lane(self, name: str, fn: Any, hold: bool) -> Any:
        def handler(conn: Any, payload: Any) -> Any:
            if self._holding or self._backlog:
                fut = asyncio.get_running_loop().create_future()
                self._backlog.append((name, fn, payload, hold, fut))
                return fut
            return self._step(name, fn, payload, hold)

        return handler

    def _step(self, name: str, fn: Any, payload: Any, hold: bool) -> Any:
        """Run one step: its result ([ok, value]), or a future of it."""
        if hold:
            self._holding = True
            fut = asyncio.wrap_future(self.ordered.submit(_guarded, fn, payload))
            fut.add_done_callback(self._release_lane)
            return fut
        out = _guarded(fn, payload)
        if out[0] and isinstance(out[1], Blocking):
            return asyncio.wrap_future(self.blocking.submit(_guarded, out[1].fn, None))
        if out[0] and isinstance(out[1], asyncio.Future):  # a step that waits on the loop
            return out[1]
        if not out[0] and name in _ONE_WAY:
            logger.warning("the client's %s failed: %s", name, _load_quietly(out[1]))
        return out

    def _release_lane(self, _fut: Any = None) -> None:
        self._holding = False
        while self._backlog and not self._holding:
            name, fn, payload, hold, fut = self._backlog.popleft()
            out = self._step(name, fn, payload, hold)
            if isinstance(out, asyncio.Future):
                out.add_done_callback(functools.partial(_settle_from, fut))
            else:
                fut.set_result(out)

    # -- session ------------------------------------------------------------------------
    def _detached(self) -> None:
        logger.info("client gone; the session ends in %s s unless it reconnects", self.grace)
        if self._grace_timer is None:
            loop = asyncio.get_running_loop()
            self._grace_timer = loop.call_later(self.grace, self._finish, "the reconnect grace period passed")

    def _attached(self) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
            logger.info("client reconnected")

    def _finish(self, why: str) -> None:
        logger.info("session ends: %s", why)
        if self.done is not None:
            self.done.set()

    # -- values -------------------------------------------------------------------------
    def _value(self, form: dict) -> Any:
        if "t" in form:
            assembly = self.uploads.pop(form["t"], None)
            if assembly is None or not assembly.complete:
                raise RaySystemError(f"upload {form['t']} is missing or incomplete")
            return load(assembly.parts[0], assembly.parts[1:])
        return load(form["i"], form["b"])

    def _ship(self, value: Any, kind: int = KIND_VALUE) -> dict:
        """A value for the client: every ref inside is held here until the client drops it."""
        try:
            sobj = serialize(value, kind)
        except TypeError:
            if kind != KIND_ERROR:
                raise
            sobj = serialize(RaySystemError(_describe_error(value)), kind)
        shipped = []
        for ref in sobj.contained_refs:
            oid = ref._actor_id if isinstance(ref, ActorHandle) else ref._id
            self.held.ship(oid, ref)
            shipped.append(oid)
        parts = parts_of(sobj)
        if sum(p.nbytes for p in parts) <= INLINE_BYTES:
            return {"k": kind, "v": inline_form(parts), "r": shipped}
        self._next_download += 1
        tid = f"d{self._next_download}"
        self.downloads[tid] = (parts, value)  # the value keeps shared-memory views alive
        return {"k": kind, "v": {"t": tid, "s": [p.nbytes for p in parts]}, "r": shipped}

    def _ship_refs(self, refs: list) -> list[bytes]:
        for ref in refs:
            self.held.ship(ref._id, ref)
        return [ref._id for ref in refs]

    def _ref(self, oid: bytes) -> ObjectRef:
        ref = self.held.get(oid)
        if ref is None:
            raise ObjectLostError(
                f"the client's ref {oid.hex()} is not held by its session (released, or the session "
                "was restarted)",
                oid.hex(),
            )
        return ref

    def _upload_begin(self, p: dict) -> None:
        """Room for an upload: for a put of a value without refs, straight in the object store
        (the client's pickle is stored as it is: no assembly, no second pickling, no copy)."""
        sizes, put = p["s"], p.get("put")
        if put is not None and sum(sizes) >= MAX_INLINE_BYTES:
            try:
                views, _ = self.core.objects.begin_put(put, sizes)
            except Exception as exc:  # the store is full, say: the put fails the usual way
                logger.info("upload %s goes through memory: %r", p["t"], exc)
            else:
                self.uploads[p["t"]] = Assembly(sizes, views, put)
                return
        self.uploads[p["t"]] = Assembly(sizes)

    def _upload(self, p: dict) -> None:
        assembly = self.uploads.get(p["t"])
        if assembly is None:
            raise RaySystemError(f"upload {p['t']} was not begun")
        assembly.write(p["p"], p["o"], p["d"])

    def _download(self, p: dict) -> memoryview:
        parts, _ = self.downloads[p["t"]]
        return parts[p["p"]][p["o"] : p["o"] + p["n"]]  # encoded into the reply at once: no copy

    def _download_end(self, p: dict) -> None:
        self.downloads.pop(p["t"], None)

    # -- the client's calls ---------------------------------------------------------------
    def _hello(self, p: Any) -> dict:
        core = self.core
        return {
            "worker_id": core.worker_id,
            "node_id": core.node_id,
            "job_id": core.job_id,
            "namespace": core.namespace,
            "owner_address": list(core.owner_address),
            "gcs_address": core.info["gcs_address"],
            "raylet_address": core.info["raylet_address"],
            "pid": os.getpid(),
        }

    def _export(self, p: dict) -> None:
        self.core.functions.export(p["key"], p["data"])

    def _submit(self, p: dict) -> None:
        """A one-way submission with the task id the client minted; a failure becomes the
        value of its returns, so it surfaces at the client's get."""
        try:
            args, kwargs, options = self._value(p["v"])
            refs = self.core.submitter.submit(p["key"], p["name"], args, kwargs, task_id=p["id"], **options)
        except Exception as exc:
            self._fail(p["r"], exc, f"the task {p['name']}")
            return
        self._ship_refs(refs)

    def _fail(self, object_ids: list[bytes], exc: BaseException, what: str) -> None:
        """Objects the client was promised that will never be: each holds the error instead."""
        core = self.core
        if not isinstance(exc, RayError):
            exc = RaySystemError(f"{what} could not be submitted on the cluster: {type(exc).__name__}: {exc}")
        entry = error_entry(exc)
        for oid in object_ids:
            self.held.ship(oid, ObjectRef(oid, None, core))
            core.store.put(oid, entry)

    def _actor_create(self, p: dict) -> dict:
        class_name, methods, key, args, kwargs, options = self._value(p["v"])
        core = self.core
        info = core.actor_submitter.create(class_name, methods, key, args, kwargs, options)
        if info["created"]:
            handle = ActorHandle(info["actor_id"], class_name, methods, info["public"], None, core)
        else:
            handle = _handle_from_info(info, core)
        self.held.ship(info["actor_id"], handle)
        return _wire_info(info)

    def _actor_submit(self, p: dict) -> None:
        """A one-way actor call with the task id the client minted (failures as in _submit)."""
        try:
            call = self._value(p["v"])
            actor_id, class_name, method, args, kwargs, num_returns, retries, retry_exc, group, events = call
            handle = self.held.get(actor_id)
            if handle is None:
                raise ValueError(f"the client's actor handle {actor_id.hex()} is not held by its session")
            refs = self.core.actor_submitter.submit(
                actor_id,
                class_name,
                handle,
                method,
                args,
                kwargs,
                num_returns,
                retries,
                retry_exc,
                group,
                task_id=p["id"],
                task_events=events is not False,
            )
        except Exception as exc:
            self._fail(p["r"], exc, "an actor call")
            return
        self._ship_refs(refs)

    def _actor_kill(self, p: dict) -> None:
        self.core.actor_submitter.kill(p["id"], p["class_name"], p["no_restart"])

    def _get_named(self, p: dict) -> dict:
        core = self.core
        info = core.actor_submitter.get_named(p["name"], p["namespace"])
        handle = _handle_from_info(info, core)
        self.held.ship(info["actor_id"], handle)
        return _wire_info(info)

    def _put(self, p: dict) -> None:
        """A one-way put under the id the client minted (failures as in _submit)."""
        oid = p["id"]
        try:
            form = p["v"]
            assembly = self.uploads.get(form["t"]) if "t" in form else None
            if assembly is not None and assembly.put == oid:  # already in the store
                del self.uploads[form["t"]]
                if not assembly.complete:
                    raise RaySystemError(f"upload {form['t']} is incomplete")
                self.held.ship(oid, self.core.objects.end_put(oid, assembly.sizes))
                self.puts_into_store += 1
                return
            ref = self.core.objects.put(self._value(form), object_id=oid)
        except Exception as exc:
            self._fail([oid], exc, f"the put of object {oid.hex()}")
            return
        self.held.ship(oid, ref)

    def _get(self, p: dict) -> Any:
        refs = [self._ref(oid) for oid in p["ids"]]
        store = self.core.store
        entries = [store.get(oid) for oid in p["ids"]]
        if all(e is not None and e[0] == INLINE for e in entries):
            return self._get_now(refs, None)  # all here, in memory: nothing to wait for
        if None in entries and all(r._owner is None for r in refs):
            return self._get_when_ready(
                refs, [r._id for r, e in zip(refs, entries) if e is None], p["timeout"]
            )
        return Blocking(lambda _: self._get_now(refs, p["timeout"]))

    def _get_when_ready(self, refs: list, missing: list[bytes], timeout: float | None) -> asyncio.Future:
        """Objects this driver owns fill in its store as their tasks finish: wait for that on
        the loop (no thread), then read them here (in memory) or on the pool (shared memory)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        store = self.core.store
        timer: list = []

        def woke() -> None:
            if fut.done():
                return
            if timer:
                timer[0].cancel()
            entries = [store.get(r._id) for r in refs]
            if all(e is None or e[0] == INLINE for e in entries):  # all in memory, or an error
                fut.set_result(_guarded(lambda _: self._get_now(refs, None), None))
            else:
                pooled = asyncio.wrap_future(
                    self.blocking.submit(_guarded, lambda _: self._get_now(refs, None), None)
                )
                pooled.add_done_callback(functools.partial(_settle_from, fut))

        def ready(_w: Waiter) -> None:  # on whichever thread filled the store
            loop.call_soon_threadsafe(woke)

        waiter = Waiter(len(missing), ready, fail_fast=True)
        store.watch(missing, waiter)
        if timeout is not None and not waiter.done():

            def expired() -> None:
                if fut.done() or waiter.done():
                    return
                store.unwatch(missing, waiter)
                error = GetTimeoutError(
                    f"Get timed out: {len(missing) - len(waiter.ready)} of {len(refs)} objects "
                    f"were not ready after {timeout} s."
                )
                fut.set_result([True, self._ship(error, KIND_ERROR)])

            timer.append(loop.call_later(timeout, expired))
        return fut

    def _get_now(self, refs: list, timeout: float | None) -> dict:
        try:
            values = self.core.objects.get(refs, timeout)
        except Exception as exc:
            return self._ship(exc, KIND_ERROR)
        return self._ship(values)

    def _wait(self, p: dict) -> Blocking:
        refs = [self._ref(oid) for oid in p["ids"]]
        return Blocking(lambda _: self.core.objects.wait(refs, p["n"], p["timeout"], p["fetch"]))

    def _cancel(self, p: dict) -> None:
        ref = self._ref(p["id"])
        skate.cancel(ref, force=p["force"], recursive=p["recursive"])

    def _gcs(self, p: dict) -> Blocking:
        core = self.core
        return Blocking(lambda _: core.request(core.gcs, p["m"], p["p"]))

    def _release(self, pairs: list) -> None:
        for oid, shipments in pairs:
            self.held.release(oid, shipments)  # the last hold, if any, goes with this frame

    # -- running ------------------------------------------------------------------------
    async def serve(
        self, server_address: str, token: bytes, session: str, channel: socket.socket | None = None
    ) -> None:
        self.done = asyncio.Event()
        loop = asyncio.get_running_loop()
        conn = await connect(
            server_address,
            token,
            self.handlers,
            name="client-server",
            on_close=lambda c: self._finish(f"lost the client server: {c.close_reason}"),
        )
        if channel is not None:
            channel.setblocking(False)
            loop.add_reader(channel.fileno(), self._handed_over, channel, token)
        await conn.call("proxy_ready", {"session": session, "pid": os.getpid(), "info": self._hello(None)})
        await self.done.wait()
        if channel is not None:
            loop.remove_reader(channel.fileno())
        if self.client is not None:
            self.client.close("session over")
        conn.close("session over")

    def _handed_over(self, channel: socket.socket, token: bytes) -> None:
        """The server handed a client's socket over: serve it from now on."""
        socks, closed = receive_sockets(channel)
        if closed:
            asyncio.get_running_loop().remove_reader(channel.fileno())
        for _tag, sock in socks:
            asyncio.get_running_loop().create_task(self._adopt(sock, token))

    async def _adopt(self, sock: socket.socket, token: bytes) -> None:
        try:
            conn = await adopt(sock, token, self.handlers, on_close=self._client_closed, name="client")
        except OSError as exc:
            sock.close()
            logger.warning("could not serve the client's handed-over connection: %s", exc)
            return
        old, self.client = self.client, conn
        if old is not None and not old.closed:
            old.close("replaced by a reconnection")
        self._attached()

    def _client_closed(self, conn: Any) -> None:
        if conn is self.client:
            self.client = None
            if self.done is not None and not self.done.is_set():
                self._detached()


def _guarded(fn: Any, payload: Any) -> list:
    """[True, result] or [False, the pickled exception]: the server forwards either unread."""
    try:
        return [True, fn(payload)]
    except BaseException as exc:
        try:
            return [False, cloudpickle.dumps(exc)]
        except Exception:
            return [False, pickle.dumps(RaySystemError(_describe_error(exc)))]


_ONE_WAY = frozenset({"export", "submit", "actor_submit", "put", "release", "upload_begin", "download_end"})


def _settle_from(target: asyncio.Future, source: asyncio.Future) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())  # type: ignore[arg-type]
    else:
        target.set_result(source.result())


def _load_quietly(blob: bytes) -> str:
    try:
        return repr(pickle.loads(blob))
    except Exception:
        return "(an error that cannot be loaded)"


def _describe_error(exc: BaseException) -> str:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{type(exc).__name__}: {exc} (it could not be pickled for the client)\n{tb}"


def _wire_info(info: dict) -> dict:
    """Actor info for the client (msgpack-able; the owner as a list)."""
    out = {k: v for k, v in info.items() if k != "owner"}
    owner = info.get("owner")
    out["owner"] = list(owner) if owner else None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a client session's proxy driver")
    parser.add_argument("--server", required=True, help="the client server's Unix socket address")
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--config", default="{}", help="JSON: namespace, runtime_env, metadata")
    parser.add_argument("--handoff-fd", type=int, default=None, help="where the server hands clients over")
    args = parser.parse_args(argv)
    channel = socket.socket(fileno=args.handoff_fd) if args.handoff_fd is not None else None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = json.loads(args.config)
    token = read_token(args.session_dir)
    os.environ.setdefault("SKATE_AUTH_TOKEN", token.decode())
    skate.init(
        address=args.gcs_address.replace("tcp://", ""),
        namespace=config.get("namespace"),
        runtime_env=config.get("runtime_env"),
        log_to_driver=False,
    )
    proxy = Proxy(context.current, args.grace)
    try:
        asyncio.run(proxy.serve(args.server, token, args.session, channel))
    finally:
        proxy.held.clear()
        skate.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
