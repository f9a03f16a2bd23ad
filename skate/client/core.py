"""ClientCore: the core worker of a client process, forwarding every call to a proxy driver.

The public API reaches the core worker only through `context.current`; a client sets it to a
ClientCore, which has the same surface the API uses (submitter, actor_submitter, objects,
functions, refs, request to the GCS...) and carries each call over one authenticated
connection to the client server on the head, which hands it to this client's own proxy
driver there (`skate.client.proxy`). Nothing of the cluster runs in the client's process.

Submissions, actor calls and puts are one-way messages: the client mints their ids itself
(the core worker's formats, `skate._ids`), so `.remote()` and `put` return refs at once, and
the proxy submits under those ids. Messages and calls leave in the order they were made, on
one connection, batched into few writes (`send`); the proxy applies them in that order, so a
ref can be used in the next call at once. Whatever fails on the cluster side for a one-way
message becomes the value of its refs: it is raised at `get`, as with Ray's client. Calls
that answer something (get, wait, actor creation...) wait for their reply.
Refs the client holds are counted here (`refs.ClientRefTable`); the ones it drops are
released on the proxy in batches. A connection that drops is opened again, with the same
session, at the next call; within the server's grace period the session kept everything
(one-way messages still on the wire when it dropped are lost: their refs fail at `get`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import itertools
import logging
import os
import pickle
import threading
import time
from typing import Any

from skate import _event_loop, _ids
from skate._serialization import KIND_ERROR, serialize
from skate.client.refs import ClientRefTable
from skate.client.transfer import CHUNK_BYTES, INLINE_BYTES, WINDOW, chunk_plan, load, parts_of
from skate.core_worker import context
from skate.exceptions import AuthenticationError, RaySystemError
from skate.object_ref import ObjectRef
from skate.protocol import ConnectionClosed, RemoteError, connect

logger = logging.getLogger(__name__)

RELEASE_INTERVAL_S = 0.05
# Flow control of one-way messages: after every SYNC_EVERY messages (or SYNC_BYTES of them)
# a sync request follows; a sender waits while more than SYNCS_IN_FLIGHT syncs are unanswered,
# so a burst of `.remote()`s never runs more than a few thousand messages ahead of the proxy.
SYNC_EVERY = 500
SYNC_BYTES = 8 * 1024 * 1024
SYNCS_IN_FLIGHT = 4
_SYNC = "sync"
DEFAULT_CONNECT_TIMEOUT_S = float(os.environ.get("SKATE_CLIENT_CONNECT_TIMEOUT_S", "30"))


class _GcsStub:
    """Stands for the GCS connection: `core.request(core.gcs, ...)` goes through the proxy."""

    def __repr__(self) -> str:
        return "<GCS through the client>"


class ClientCore:
    """The client's stand-in for CoreWorker (see the module docstring)."""

    mode = "client"

    def __init__(
        self,
        address: str,
        tcp_address: str,
        token: bytes,
        *,
        namespace: str | None = None,
        runtime_env: dict | None = None,
        metadata: list | None = None,
        connect_timeout: float | None = None,
    ):
        self.client_address = address  # as the user wrote it, for messages
        self.tcp_address = tcp_address
        self.token = token
        self.connect_timeout = DEFAULT_CONNECT_TIMEOUT_S if connect_timeout is None else connect_timeout
        self._hello = {"namespace": namespace, "runtime_env": runtime_env, "metadata": metadata or []}
        self.session: str | None = None
        self.stopped = False
        self.info: dict = {}
        self.worker_id = self.node_id = self.job_id = ""
        self.namespace = namespace
        self.session_dir = None
        self.owner_address: tuple = ("", "")
        self.owner_address_list: list = ["", ""]
        self.actor_id = self.actor_name = None
        self.actor_reconstructed = False
        self.assigned_resources: dict[str, float] = {}
        self.gpu_ids: list[int] = []
        self.gcs = _GcsStub()
        self.refs = ClientRefTable()
        self.objects = _Objects(self)
        self.functions = _Functions(self)
        self.submitter = _Submitter(self)
        self.actor_submitter = _ActorSubmitter(self)
        self.ownership = _Ownership()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._conn_lock: asyncio.Lock | None = None
        self._next_transfer = 0
        self.task_ids = _ids.TaskIdFactory()
        self._put_task = self.task_ids.next()  # the task id the client's puts derive from
        self._put_index = itertools.count(1)
        self._outbox: collections.deque = collections.deque()  # one-way messages not sent yet
        self._outbox_lock = threading.Lock()
        self._pump_scheduled = False
        self._reconnecting: asyncio.Task | None = None
        self._unsynced = self._unsynced_bytes = 0
        self.syncs_sent = 0  # for tests and debugging
        self._syncs: collections.deque[concurrent.futures.Future] = collections.deque()

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Connect (retrying until the connect timeout) and open this client's session."""
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run_loop, args=(ready,), name="skate-client", daemon=True
        )
        self._thread.start()
        self.loop = ready.result()
        try:
            asyncio.run_coroutine_threadsafe(self._ensure_connected(first=True), self.loop).result()
        except BaseException:
            self._stop_loop()
            raise
        context.current = self

    def _run_loop(self, ready: concurrent.futures.Future) -> None:
        loop = _event_loop.new_event_loop()
        asyncio.set_event_loop(loop)
        self._conn_lock = asyncio.Lock()
        ready.set_result(loop)
        loop.call_later(RELEASE_INTERVAL_S, self._release_tick)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _ensure_connected(self, first: bool = False) -> Any:
        assert self._conn_lock is not None
        async with self._conn_lock:
            if self._conn is not None and not self._conn.closed:
                return self._conn
            if self.stopped:
                raise RaySystemError("the client has been disconnected")
            conn = await self._open(first)
            payload = dict(self._hello, session=self.session)
            try:
                reply = await conn.call("connect", payload)
            except RemoteError as exc:
                conn.close("connect refused")
                raise ConnectionError(
                    f"the client server at {self.client_address} refused the session: {exc.message}"
                ) from None
            conn.start_request_ids_at(self._next_request_id)
            self._conn = conn
            self._adopt(reply)
            return conn

    async def _open(self, first: bool) -> Any:
        deadline = time.monotonic() + self.connect_timeout
        last: BaseException | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                return await connect(
                    self.tcp_address,
                    self.token,
                    {},
                    name="client",
                    on_close=self._on_close,
                    timeout=min(remaining, 10.0),
                )
            except ConnectionClosed as exc:
                if "authentication" in str(exc) or "token" in str(exc):
                    raise AuthenticationError(
                        f"the client server at {self.client_address} refused this client's cluster token "
                        f"({exc}); set SKATE_AUTH_TOKEN to the cluster's token"
                    ) from None
                last = exc
            except (OSError, asyncio.TimeoutError) as exc:
                last = exc
            await asyncio.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
        what = "connect to" if first else "reconnect to"
        raise ConnectionError(
            f"could not {what} the Skate client server at {self.client_address} within "
            f"{self.connect_timeout:g} s: {last!r}"
        )

    def _adopt(self, reply: dict) -> None:
        self.session = reply["session"]
        info = reply["info"]
        self.info = info
        self.worker_id = info["worker_id"]
        self.node_id = info["node_id"]
        self.job_id = info["job_id"]
        self.namespace = info["namespace"]
        self.owner_address = tuple(info["owner_address"])
        self.owner_address_list = list(self.owner_address)

    @property
    def _next_request_id(self) -> int:
        """Request ids never repeat within a session: the proxy may still answer an old one."""
        conn = self._conn
        return conn.next_request_id if conn is not None else 1

    def _on_close(self, conn: Any) -> None:
        if not self.stopped:
            logger.warning(
                "lost the connection to the client server at %s: %s", self.client_address, conn.close_reason
            )

    def stop(self) -> None:
        """Disconnect: the session ends at once (no grace period), its job with it."""
        if self.stopped:
            return
        if context.current is self:
            context.current = None
        self.stopped = True
        self._stop_loop()

    def _stop_loop(self) -> None:
        loop = self.loop
        if loop is None or not loop.is_running():
            return

        async def close() -> None:
            conn = self._conn
            if conn is not None and not conn.closed:
                self._drain(conn)
                # The proxy ends the session at once (no grace period); close() flushes this.
                conn.notify("disconnect", None)
                conn.close("disconnect")
            await asyncio.sleep(0)

        try:
            asyncio.run_coroutine_threadsafe(close(), loop).result(5)
        except Exception:
            pass
        self._settle_syncs()
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    # -- calls --------------------------------------------------------------------------
    def run(self, awaitable: Any, timeout: float | None = None) -> Any:
        if self.stopped:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise RaySystemError("the client has been disconnected (skate.shutdown())")
        return asyncio.run_coroutine_threadsafe(awaitable, self.loop).result(timeout)

    async def acall(self, method: str, payload: Any = None, large: bool = False) -> Any:
        """Call the proxy's `method` (on the loop); raises what the proxy raised."""
        conn = await self._ensure_connected()
        self._send_releases()  # sends the one-way messages made before this call first
        try:
            ok, value = await conn.call(method, payload, large=large)
        except (ConnectionClosed, RemoteError) as exc:
            raise self.lost_error(method, exc) from None
        if ok:
            return value
        raise _load_error(value)

    def call(self, method: str, payload: Any = None) -> Any:
        """Call the proxy's `method` from a user thread and wait for the answer.

        While connected, the request is sent from one loop callback and the reply settles a
        plain future (no task); otherwise `acall` reconnects first.
        """
        if self.stopped:
            raise RaySystemError("the client has been disconnected (skate.shutdown())")
        done: concurrent.futures.Future = concurrent.futures.Future()
        self.loop.call_soon_threadsafe(self._start_call, method, payload, done)
        ok, value = done.result()
        if ok:
            return value
        raise _load_error(value)

    def _start_call(self, method: str, payload: Any, done: concurrent.futures.Future) -> None:
        conn = self._conn
        if conn is None or conn.closed or self._reconnecting is not None or self._connecting():
            task = self.loop.create_task(self._acall_raw(method, payload))
            task.add_done_callback(functools.partial(_settle_concurrent, done, method, self))
            return
        self._send_releases()  # sends the one-way messages made before this call first
        conn.call(method, payload).add_done_callback(
            functools.partial(_settle_concurrent, done, method, self)
        )

    def _connecting(self) -> bool:
        assert self._conn_lock is not None
        return self._conn_lock.locked()

    async def _acall_raw(self, method: str, payload: Any) -> Any:
        conn = await self._ensure_connected()
        self._send_releases()
        return await conn.call(method, payload)

    def lost_error(self, method: str, exc: BaseException) -> BaseException:
        """What a call's caller sees when its request failed on the way (not in the proxy)."""
        if isinstance(exc, ConnectionClosed):
            return ConnectionError(
                f"the connection to the client server at {self.client_address} was lost during "
                f"{method}: {exc}"
            )
        if isinstance(exc, RemoteError):
            return ConnectionError(f"the client server at {self.client_address} failed {method}: {exc}")
        return exc

    def send(self, method: str, payload: Any = None, nbytes: int = 0) -> None:
        """A one-way message to the proxy, sent after every message and call made before it.

        Any thread may call it. Messages queue here and the loop sends all that are queued in
        one go (one wakeup and one write for a burst of `.remote()`s). It waits only when the
        proxy lags far behind (see SYNC_EVERY).
        """
        if self.stopped:
            raise RaySystemError("the client has been disconnected (skate.shutdown())")
        wait_for = None
        with self._outbox_lock:
            self._outbox.append((method, payload))
            self._unsynced += 1
            self._unsynced_bytes += nbytes
            if self._unsynced >= SYNC_EVERY or self._unsynced_bytes >= SYNC_BYTES:
                self._unsynced = self._unsynced_bytes = 0
                self.syncs_sent += 1
                sync: concurrent.futures.Future = concurrent.futures.Future()
                self._outbox.append((_SYNC, sync))
                syncs = self._syncs
                syncs.append(sync)
                while syncs and syncs[0].done():
                    syncs.popleft()
                if len(syncs) > SYNCS_IN_FLIGHT:
                    wait_for = syncs[0]
            schedule = not self._pump_scheduled
            self._pump_scheduled = True
        if schedule:
            self.loop.call_soon_threadsafe(self._pump)
        if wait_for is not None:
            wait_for.result()  # never fails: a lost connection settles it too

    def _pump(self) -> None:
        with self._outbox_lock:
            self._pump_scheduled = False
        conn = self._conn
        if conn is not None and not conn.closed:
            self._drain(conn)
        elif self._outbox and self._reconnecting is None and not self.stopped:
            self._reconnecting = self.loop.create_task(self._pump_after_reconnect())

    async def _pump_after_reconnect(self) -> None:
        try:
            conn = await self._ensure_connected()
            self._drain(conn)
        except Exception as exc:  # the next call that waits for a reply reports it
            logger.warning("could not send to the client server at %s: %s", self.client_address, exc)
            self._settle_syncs()
        finally:
            self._reconnecting = None

    def _drain(self, conn: Any) -> None:
        """Send every queued one-way message, oldest first (the connection batches the writes)."""
        out = self._outbox
        while out:
            method, payload = out.popleft()
            if method == _SYNC:
                conn.call(_SYNC, None).add_done_callback(functools.partial(_synced, payload))
            else:
                conn.notify(method, payload)

    def _settle_syncs(self) -> None:
        """Nothing more will be sent for now: no sender may wait for it."""
        with self._outbox_lock:
            for sync in self._syncs:
                if not sync.done():
                    sync.set_result(None)
            self._syncs.clear()

    def request(self, conn: Any, method: str, payload: Any = None, timeout: float | None = None) -> Any:
        """A request to the GCS, made by the proxy for this client."""
        if conn is not self.gcs:
            raise RaySystemError(f"a client can only reach the cluster through its proxy, not {conn!r}")
        return self.run(self.acall("gcs", {"m": method, "p": payload}), timeout)

    def post(self, fn: Any, *args: Any) -> None:
        """The API posts some calls to the core worker's loop; a client just makes them."""
        fn(*args)

    def flush(self, timeout: float = 2.0) -> None:
        try:
            self.run(self._flush(), timeout)
        except Exception:
            pass

    async def _flush(self) -> None:
        self._send_releases()

    # -- releases -----------------------------------------------------------------------
    def _release_tick(self) -> None:
        if self.stopped:
            return
        try:
            self._send_releases()
        finally:
            self.loop.call_later(RELEASE_INTERVAL_S, self._release_tick)

    def _send_releases(self) -> None:
        conn = self._conn
        if conn is None or conn.closed:
            return  # kept in the table until the connection is back
        self._drain(conn)  # a ref's release never overtakes the message that made it
        releases = self.refs.take_releases()
        if releases:
            conn.notify("release", releases)

    # -- values -------------------------------------------------------------------------
    def value_form(self, value: Any, put_id: bytes | None = None) -> tuple[dict, int]:
        """The wire form of a value and its size (user thread): pickled here, so an
        unserializable value fails in the caller; inline, or uploaded in chunks first.
        An uploaded put of a value without refs (`put_id`) goes straight to the store there."""
        sobj = serialize(value)
        parts = parts_of(sobj)
        size = sum(p.nbytes for p in parts)
        if size <= INLINE_BYTES:
            # The pickle is fresh memory, sent as is; out-of-band buffers may be views of the
            # caller's arrays, copied now so a later change to them is not what arrives.
            return {"i": parts[0], "b": [bytes(p) for p in parts[1:]]}, size
        return self.run(self._upload(parts, None if sobj.contained_refs else put_id)), 0

    async def _upload(self, parts: list[memoryview], put_id: bytes | None = None) -> dict:
        self._next_transfer += 1
        tid = f"u{self._next_transfer}"
        sizes = [p.nbytes for p in parts]
        begin: dict = {"t": tid, "s": sizes}
        if put_id is not None:
            begin["put"] = put_id
        await self.acall("upload_begin", begin)
        plan = chunk_plan(sizes, CHUNK_BYTES)
        sem = asyncio.Semaphore(WINDOW)

        async def one(part: int, off: int, n: int) -> None:
            async with sem:
                chunk = {"t": tid, "p": part, "o": off, "d": parts[part][off : off + n]}
                await self.acall("upload", chunk, large=True)

        await asyncio.gather(*(one(*c) for c in plan))
        return {"t": tid}

    def decode_value(self, reply: dict) -> Any:
        """Decode a value the proxy sent inline (raising it if it is an error)."""
        shipped = reply.get("r") or []
        self.refs.arrived(shipped)
        form = reply["v"]
        return self._loaded(reply, shipped, form["i"], form["b"])

    def _loaded(self, reply: dict, shipped: list, inband: Any, bufs: list) -> Any:
        value = load(inband, bufs)
        self.refs.settle(shipped)
        if reply.get("k") == KIND_ERROR:
            raise value if isinstance(value, BaseException) else RaySystemError(repr(value))
        return value

    async def receive_value(self, reply: dict) -> Any:
        """Decode a value the proxy sent (downloading it first if it was streamed)."""
        shipped = reply.get("r") or []
        self.refs.arrived(shipped)
        form = reply["v"]
        if "t" in form:
            sizes = form["s"]
            buffers = [bytearray(n) for n in sizes]
            sem = asyncio.Semaphore(WINDOW)

            async def one(part: int, off: int, n: int) -> None:
                async with sem:
                    data = await self.acall("download", {"t": form["t"], "p": part, "o": off, "n": n})
                    buffers[part][off : off + n] = data

            try:
                await asyncio.gather(*(one(*c) for c in chunk_plan(sizes, CHUNK_BYTES)))
            finally:
                await self.acall("download_end", {"t": form["t"]})
            inband, bufs = buffers[0], buffers[1:]
        else:
            inband, bufs = form["i"], form["b"]
        return self._loaded(reply, shipped, inband, bufs)

    def next_put_id(self) -> bytes:
        return _ids.object_id_for_put(self._put_task, next(self._put_index))

    def new_refs(self, ids: list[bytes]) -> list[ObjectRef]:
        """Refs to objects the proxy holds (or will, once it has read the message that made
        them) for this client, one hold each."""
        self.refs.arrived(ids)
        return [ObjectRef(oid, None, self) for oid in ids]


def _settle_concurrent(done: concurrent.futures.Future, method: str, core: ClientCore, reply: Any) -> None:
    """Hand a call's reply ([ok, value]) or failure to the user thread waiting on `done`."""
    if reply.cancelled():
        done.set_exception(RaySystemError(f"the client's {method} was cancelled"))
    elif reply.exception() is not None:
        done.set_exception(core.lost_error(method, reply.exception()))
    else:
        done.set_result(reply.result())


def _synced(sync: concurrent.futures.Future, reply: asyncio.Future) -> None:
    """A sync was answered, or its connection was lost: either way the senders go on."""
    if not reply.cancelled():
        reply.exception()  # retrieved: a lost connection is reported by the next call instead
    if not sync.done():
        sync.set_result(None)


def _load_error(blob: bytes) -> BaseException:
    try:
        exc = pickle.loads(blob)
    except Exception as exc_load:
        return RaySystemError(f"the proxy failed with an error the client cannot load: {exc_load!r}")
    return exc if isinstance(exc, BaseException) else RaySystemError(repr(exc))


class _Ownership:
    """A client borrows nothing itself: its proxy registers every borrow."""

    def register_borrows(self) -> None:
        pass


class _Functions:
    def __init__(self, core: ClientCore):
        self.core = core
        self._exported: set[bytes] = set()

    def export(self, key: bytes, data: bytes) -> None:
        if key in self._exported:
            return
        self._exported.add(key)
        self.core.send("export", {"key": key, "data": data})


class _Objects:
    def __init__(self, core: ClientCore):
        self.core = core

    def put(self, value: Any) -> ObjectRef:
        core = self.core
        oid = core.next_put_id()
        form, nbytes = core.value_form(value, oid)
        core.send("put", {"id": oid, "v": form}, nbytes)
        return core.new_refs([oid])[0]

    def get(self, refs: list, timeout: float | None = None) -> list:
        core = self.core
        reply = core.call("get", {"ids": [r._id for r in refs], "timeout": timeout})
        if "t" in reply["v"]:  # streamed: downloaded in chunks on the loop
            return core.run(core.receive_value(reply))
        return core.decode_value(reply)  # here, on the caller's thread

    def wait(self, refs: list, num_returns: int, timeout: float | None, fetch_local: bool) -> list[bytes]:
        return self.core.call(
            "wait", {"ids": [r._id for r in refs], "n": num_returns, "timeout": timeout, "fetch": fetch_local}
        )

    def future_for(self, ref: ObjectRef) -> concurrent.futures.Future:
        core = self.core

        async def go() -> Any:
            reply = await core.acall("get", {"ids": [ref._id], "timeout": None})
            return (await core.receive_value(reply))[0]

        return asyncio.run_coroutine_threadsafe(go(), core.loop)


class _Submitter:
    def __init__(self, core: ClientCore):
        self.core = core

    def submit(self, function_key: bytes, name: str, args: tuple, kwargs: dict, **options: Any) -> list:
        core = self.core
        task_id = core.task_ids.next()
        ids = [_ids.object_id_for_return(task_id, i + 1) for i in range(options["num_returns"])]
        form, nbytes = core.value_form((args, kwargs, options))
        core.send("submit", {"id": task_id, "r": ids, "key": function_key, "name": name, "v": form}, nbytes)
        return core.new_refs(ids)

    def cancel(self, object_id: bytes, force: bool, recursive: bool) -> None:
        self.core.call("cancel", {"id": object_id, "force": force, "recursive": recursive})

    def forward_cancel(self, owner: tuple, object_id: bytes, force: bool, recursive: bool) -> None:
        self.cancel(object_id, force, recursive)


class _ActorSubmitter:
    def __init__(self, core: ClientCore):
        self.core = core

    def create(
        self, class_name: str, methods: dict, class_key: bytes, args: tuple, kwargs: dict, options: dict
    ) -> dict:
        core = self.core
        form, _ = core.value_form((class_name, methods, class_key, args, kwargs, options))
        return self._arrived(core.call("actor_create", {"v": form}))

    def _arrived(self, info: dict) -> dict:
        self.core.refs.arrived([info["actor_id"]])
        owner = info.get("owner")
        return dict(info, owner=tuple(owner) if owner else None)

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
        task_events: bool = True,
    ) -> list:
        core = self.core
        task_id = core.task_ids.next()
        ids = [_ids.object_id_for_return(task_id, i + 1) for i in range(num_returns)]
        call = (
            actor_id,
            class_name,
            method,
            args,
            kwargs,
            num_returns,
            retries,
            retry_exceptions,
            group,
            task_events,
        )
        form, nbytes = core.value_form(call)
        core.send("actor_submit", {"id": task_id, "r": ids, "v": form}, nbytes)
        return core.new_refs(ids)

    def kill(self, actor_id: bytes, class_name: str, no_restart: bool) -> None:
        self.core.call("actor_kill", {"id": actor_id, "class_name": class_name, "no_restart": no_restart})

    def get_named(self, name: str, namespace: str | None) -> dict:
        return self._arrived(self.core.call("get_named", {"name": name, "namespace": namespace}))
