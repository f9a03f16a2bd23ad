"""The proxy driver: one process per client session, a real driver of the cluster.

The client server (`skate.client.server`) starts it for each new client session. It joins
the cluster with `skate.init(address=...)`, so the session is a job of its own: isolated from
other clients, and when it ends (the client disconnects, or stays away past the grace
period) its non-detached actors and its objects go with it.

It connects back to the server over the session directory's Unix socket and serves the
client's calls, which the server forwards: calls that must keep the client's order
(submissions, puts, releases) run one at a time on one thread; calls that block (get, wait,
GCS requests) run on a pool. Every ref shipped to the client is held here (`refs.HeldRefs`)
until the client releases it.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import os
import pickle
import sys
import traceback
from typing import Any

import cloudpickle

import skate
from skate._secure_files import read_token
from skate._serialization import KIND_ERROR, KIND_VALUE, serialize
from skate.actor import ActorHandle, _handle_from_info
from skate.client.refs import HeldRefs
from skate.client.transfer import INLINE_BYTES, Assembly, inline_form, load, parts_of
from skate.core_worker import context
from skate.exceptions import ObjectLostError, RaySystemError
from skate.object_ref import ObjectRef
from skate.protocol import connect

logger = logging.getLogger("skate.client.proxy")


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
        ordered = {
            "export": self._export,
            "submit": self._submit,
            "actor_create": self._actor_create,
            "actor_submit": self._actor_submit,
            "actor_kill": self._actor_kill,
            "put": self._put,
            "cancel": self._cancel,
            "release": self._release,
        }
        blocking = {
            "hello": self._hello,
            "get": self._get,
            "wait": self._wait,
            "gcs": self._gcs,
            "get_named": self._get_named,
            "stats": lambda p: {
                "held": len(self.held),
                "uploads": len(self.uploads),
                "downloads": len(self.downloads),
            },
        }
        self.handlers: dict[str, Any] = {}
        for name, fn in ordered.items():
            self.handlers[name] = self._runner(self.ordered, fn)
        for name, fn in blocking.items():
            self.handlers[name] = self._runner(self.blocking, fn)
        self.handlers.update(
            {
                "upload_begin": self._inline(self._upload_begin),
                "upload": self._inline(self._upload),
                "download": self._inline(self._download),
                "download_end": self._inline(self._download_end),
                "detached": lambda conn, p: self._detached(),
                "attached": lambda conn, p: self._attached(),
                "disconnect": lambda conn, p: self._finish("the client disconnected"),
            }
        )

    # -- dispatch -----------------------------------------------------------------------
    def _runner(self, pool: concurrent.futures.ThreadPoolExecutor, fn: Any) -> Any:
        def handler(conn: Any, payload: Any) -> asyncio.Future:
            # Submitted here, on the loop, in arrival order: the ordered pool keeps it.
            return asyncio.wrap_future(pool.submit(_guarded, fn, payload))

        return handler

    @staticmethod
    def _inline(fn: Any) -> Any:
        return lambda conn, payload: _guarded(fn, payload)

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
        self.uploads[p["t"]] = Assembly(p["s"])

    def _upload(self, p: dict) -> None:
        self.uploads[p["t"]].write(p["p"], p["o"], p["d"])

    def _download(self, p: dict) -> bytes:
        parts, _ = self.downloads[p["t"]]
        return bytes(parts[p["p"]][p["o"] : p["o"] + p["n"]])

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

    def _submit(self, p: dict) -> list[bytes]:
        args, kwargs, options = self._value(p["v"])
        refs = self.core.submitter.submit(p["key"], p["name"], args, kwargs, **options)
        return self._ship_refs(refs)

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

    def _actor_submit(self, p: dict) -> list[bytes]:
        actor_id, class_name, method, args, kwargs, num_returns, retries, retry_exc, group = self._value(
            p["v"]
        )
        handle = self.held.get(actor_id)
        if handle is None:
            raise ValueError(f"the client's actor handle {actor_id.hex()} is not held by its session")
        refs = self.core.actor_submitter.submit(
            actor_id, class_name, handle, method, args, kwargs, num_returns, retries, retry_exc, group
        )
        return self._ship_refs(refs)

    def _actor_kill(self, p: dict) -> None:
        self.core.actor_submitter.kill(p["id"], p["class_name"], p["no_restart"])

    def _get_named(self, p: dict) -> dict:
        core = self.core
        info = core.actor_submitter.get_named(p["name"], p["namespace"])
        handle = _handle_from_info(info, core)
        self.held.ship(info["actor_id"], handle)
        return _wire_info(info)

    def _put(self, p: dict) -> bytes:
        ref = self.core.objects.put(self._value(p["v"]))
        self.held.ship(ref._id, ref)
        return ref._id

    def _get(self, p: dict) -> dict:
        refs = [self._ref(oid) for oid in p["ids"]]
        try:
            values = self.core.objects.get(refs, p["timeout"])
        except Exception as exc:
            return self._ship(exc, KIND_ERROR)
        return self._ship(values)

    def _wait(self, p: dict) -> list[bytes]:
        refs = [self._ref(oid) for oid in p["ids"]]
        return self.core.objects.wait(refs, p["n"], p["timeout"], p["fetch"])

    def _cancel(self, p: dict) -> None:
        ref = self._ref(p["id"])
        skate.cancel(ref, force=p["force"], recursive=p["recursive"])

    def _gcs(self, p: dict) -> Any:
        core = self.core
        return core.request(core.gcs, p["m"], p["p"])

    def _release(self, pairs: list) -> None:
        for oid, shipments in pairs:
            self.held.release(oid, shipments)  # the last hold, if any, goes with this frame

    # -- running ------------------------------------------------------------------------
    async def serve(self, server_address: str, token: bytes, session: str) -> None:
        self.done = asyncio.Event()
        conn = await connect(
            server_address,
            token,
            self.handlers,
            name="client-server",
            on_close=lambda c: self._finish(f"lost the client server: {c.close_reason}"),
        )
        await conn.call("proxy_ready", {"session": session, "pid": os.getpid(), "info": self._hello(None)})
        await self.done.wait()
        conn.close("session over")


def _guarded(fn: Any, payload: Any) -> list:
    """[True, result] or [False, the pickled exception]: the server forwards either unread."""
    try:
        return [True, fn(payload)]
    except BaseException as exc:
        try:
            return [False, cloudpickle.dumps(exc)]
        except Exception:
            return [False, pickle.dumps(RaySystemError(_describe_error(exc)))]


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
    args = parser.parse_args(argv)
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
        asyncio.run(proxy.serve(args.server, token, args.session))
    finally:
        proxy.held.clear()
        skate.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
