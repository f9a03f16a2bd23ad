"""CoreWorker: one per driver or worker process; the I/O shell that holds the parts together.

An asyncio loop on its own thread owns every socket. User threads call put/get/wait and
submit tasks; the fast paths (a local get, a put of a small value, queuing a task) touch
only in-process state, and hand work to the loop in batches through `post`, the one way
from any other thread onto the loop.

The parts, each in its own module:
    objects       put, get, wait, reads from shared memory, fetches from owners
    ownership     borrowers, contained refs, releasing what nobody holds (objects, actors)
    submitter     normal tasks: TaskManager (what happens to a task) + LeasePool (workers)
    actor_submitter  actor creation and ordered method calls (per actor: actor_state;
                  a lane's caller end, read by user threads: caller_lane)
    executor      running calls in a worker (worker processes only)
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import math
import os
import sys
import threading
from typing import Any

from skate import _config, _event_loop, _ids
from skate.core_worker import call_context, context
from skate.core_worker.actor_submitter import ActorSubmitter
from skate.core_worker.caller_lane import CallerLane
from skate.core_worker.functions import FunctionManager
from skate.core_worker.generator_streams import GeneratorStreams
from skate.core_worker.memory_store import MemoryStore
from skate.core_worker.object_table import object_table
from skate.core_worker.objects import Objects
from skate.core_worker.ownership import Ownership
from skate.core_worker.plasma import ArenaMapping
from skate.core_worker.reference_counter import ReferenceCounter
from skate.core_worker.runtime_envs import RuntimeEnvResolver
from skate.core_worker.submitter import TaskSubmitter
from skate.core_worker.task_events import TRIM_INTERVAL_S, TaskEventBuffer, enabled, interval_s
from skate.exceptions import RaySystemError
from skate.protocol import Connection, connect, listen
from skate.protocol.connection import DeferredReply

logger = logging.getLogger(__name__)
# Calls posted lazily (post_lazily) that wake the loop when this many wait.
LAZY_BACKLOG = 64


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
        self.owner_address_list = list(self.owner_address)
        self.task_ids = _ids.TaskIdFactory()
        self.driver_task_id: bytes = self.task_ids.next()  # the id of work done outside any call
        self.assigned_resources: dict[str, float] = {}
        self.gpu_ids: list[int] = []
        self.stopped = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self.io_thread: threading.Thread | None = None
        self._posted: collections.deque = collections.deque()
        self._post_scheduled = False
        self._draining = False  # _drain_posted is running the posted calls
        # Set by start(); None only before it (and on a core worker that failed to start).
        self.gcs: Connection = None  # type: ignore[assignment]
        self.raylet: Connection = None  # type: ignore[assignment]
        self._listeners: list = []
        self._peer_conns: dict[str, asyncio.Future] = {}
        self._lanes: set[Connection | CallerLane] = set()  # lanes to actors (see lane())
        self.plasma: ArenaMapping | None = None
        self._infeasible_reported: set = set()
        self.actor_id: str | None = None
        self.actor_name: str | None = None
        self.actor_reconstructed = False
        self.handlers: dict[str, Any] = {
            "infeasible": self._h_infeasible,
            "logs": self._h_logs,
            "object_table": lambda conn, p: object_table(self),
            "retire": self._h_retire,
        }
        self.store = MemoryStore()
        self.ownership = Ownership(self)
        self.refs = ReferenceCounter(self.ownership.on_ref_zero)
        self.objects = Objects(self)
        self.functions = FunctionManager(self)
        # Task state transitions for the state API (None: off; see core_worker.task_events).
        self.task_events: TaskEventBuffer | None = (
            TaskEventBuffer() if enabled() and info.get("task_events", True) else None
        )
        self.submitter = TaskSubmitter(self)
        # The env this process's calls inherit: a worker's own (it serves one env), the job's
        # for a driver (set by init).
        self.runtime_envs = RuntimeEnvResolver(self, info.get("runtime_env"))
        self.actor_submitter = ActorSubmitter(self)
        self.store.on_wait = self.actor_submitter.need
        self.streams = GeneratorStreams(self)  # generator tasks' items, as their owner

    def current_task_id(self) -> bytes:
        """The id of the call running in this thread or coroutine (the process's own outside calls)."""
        call = call_context.current_call()
        return call.task_id if call is not None else self.driver_task_id

    @property
    def put_index(self):
        return self.objects.put_index

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Start the I/O thread and connect to the GCS and the raylet."""
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self.io_thread = threading.Thread(target=self._run_loop, args=(ready,), name="skate-io", daemon=True)
        self.io_thread.start()
        self.loop = ready.result()
        try:
            self.run(self._connect(), timeout=30)
        except BaseException:
            logger.exception("the core worker failed to start")
            self.stop()
            raise
        context.current = self
        if self.task_events is not None:
            self.loop.call_soon_threadsafe(self._send_task_events, True)

    def _send_task_events(self, again: bool = False) -> None:
        """I/O loop: send what the task event buffer holds as one message; with again, every
        interval from now on (and trim its rows between sends, at most a second apart)."""
        batch = self._task_events_batch()
        if batch is not None and self.gcs is not None and not self.gcs.closed:
            self.gcs.notify("add_task_events", batch)
        if again and not self.stopped:
            interval = interval_s()
            trims = math.ceil(interval / TRIM_INTERVAL_S) - 1
            for i in range(1, trims + 1):
                self.loop.call_later(interval * i / (trims + 1), self._trim_task_events)
            self.loop.call_later(interval, self._send_task_events, True)

    def _task_events_batch(self) -> dict | None:
        events = self.task_events
        if events is None:  # (off; or switched off meanwhile, by a benchmark)
            return None
        in_flight = reversed(self.submitter.manager.pending.values())  # newest first
        return events.batch(self.node_id, self.worker_id, os.getpid(), in_flight)

    async def _h_retire(self, conn: Connection, payload: Any) -> bool:
        """The raylet is about to stop this worker (idle and not needed, or max_calls
        reached): what the task event buffer holds goes to the GCS first, acknowledged, or
        the calls run since the last send would leave no trace."""
        gcs = self.gcs
        if gcs is not None and not gcs.closed:
            batch = self._task_events_batch()
            if batch is not None:
                await gcs.call("add_task_events", batch)
        return True

    def _trim_task_events(self) -> None:
        events = self.task_events
        if events is not None:
            events.trim()

    def _run_loop(self, ready: concurrent.futures.Future) -> None:
        loop = _event_loop.new_event_loop()
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
            thread_writes=True,  # the executor's threads send their replies themselves
        )
        tcp = await listen(
            f"tcp://{self.info.get('node_ip', '127.0.0.1')}:0",
            self.token,
            self.handlers,
            on_close=self._on_server_conn_closed,
            name=f"core-{self.worker_id[:8]}",
            thread_writes=True,  # the executor's threads send their replies themselves
        )
        self._listeners = [unix, tcp]
        # Peers on this machine use the Unix socket, others the TCP port.
        self.address = f"{unix.address}|{tcp.address}"
        self.owner_address = (self.worker_id, self.address)
        self.owner_address_list = list(self.owner_address)
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
                {
                    "driver_id": self.worker_id,
                    "pid": os.getpid(),
                    "namespace": self.namespace,
                    # A submitted job's driver names its submission (set by its supervisor).
                    "submission_id": os.environ.get("SKATE_JOB_SUBMISSION_ID"),
                    "entrypoint": " ".join(sys.argv),
                },
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
        # Tasks and actor calls keep running (they do not go through the GCS); a worker ends
        # with its raylet, not with the GCS. Reconnect: the GCS may be restarting.
        if self.stopped or conn is not self.gcs:
            return
        logger.warning("lost the connection to the GCS: %s; reconnecting", conn.close_reason)
        asyncio.ensure_future(self._reconnect_gcs())

    async def _reconnect_gcs(self) -> None:
        """Try the GCS's address with backoff for `gcs_rpc_server_reconnect_timeout_s`; a driver
        re-attaches to its job. Until then calls to the GCS fail with ConnectionError."""
        timeout = _config.GCS_RECONNECT_TIMEOUT_S
        deadline = self.loop.time() + timeout
        delay = 0.05
        while not self.stopped and self.loop.time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            try:
                conn = await connect(
                    self.info["gcs_address"],
                    self.token,
                    self.handlers,
                    name="gcs",
                    on_close=self._on_gcs_lost,
                    timeout=2,
                )
            except Exception:
                continue
            try:
                if self.mode == "driver":
                    await conn.call(
                        "register_job",
                        {
                            "driver_id": self.worker_id,
                            "pid": os.getpid(),
                            "namespace": self.namespace,
                            "job_id": self.job_id,
                        },
                    )
            except Exception as exc:
                conn._on_close = None
                conn.close("re-attach failed")
                if isinstance(exc, ConnectionError):
                    continue
                logger.error("the restarted GCS refused this driver's job %s: %s", self.job_id, exc)
                return
            self.gcs = conn
            self.functions.reexport()
            logger.info("reconnected to the GCS")
            return
        if not self.stopped:
            logger.error(
                "the GCS did not come back within %g s (gcs_rpc_server_reconnect_timeout_s)", timeout
            )

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if context.current is self:
            context.current = None
        loop = self.loop
        if loop is not None and loop.is_running():

            async def close_all():
                if self.task_events is not None:
                    self._send_task_events()  # the last events go before the connection closes
                for conn in (self.gcs, self.raylet):
                    if conn is not None:
                        conn.close("shutdown")
                for fut in self._peer_conns.values():
                    if fut.done() and not fut.exception():
                        fut.result().close("shutdown")
                for lane in list(self._lanes):
                    if isinstance(lane, CallerLane):
                        lane.close_on_loop(asyncio.get_running_loop(), "shutdown")
                    else:
                        lane.close("shutdown")
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
        if self.io_thread is not None and self.io_thread is not threading.current_thread():
            self.io_thread.join(5)
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
        """Send a request from a user thread and wait for the reply.

        The send is posted (batched with other posts) and the reply wakes this thread through
        a one-shot lock: no coroutine, task or chained future per request, which is most of a
        small request's cost (reads and writes of the shared store make one per object)."""
        if self.stopped or self.loop.is_closed():
            raise RaySystemError("skate has been shut down")
        reply = _Reply()
        self.post(_start_request, conn, method, payload, reply)
        return reply.wait(timeout)

    def post(self, fn, *args) -> None:
        """Run fn(*args) on the I/O loop soon; calls posted together run in one batch."""
        self._posted.append((fn, args))
        if not self._post_scheduled:
            self._post_scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain_posted)
            except RuntimeError:
                pass  # loop closed during shutdown

    def flush(self, timeout: float = 2.0) -> None:
        """Wait until what was posted so far has run and the frames it wrote have left."""

        async def settle() -> None:
            for _ in range(3):
                await asyncio.sleep(0)

        try:
            self.run(settle(), timeout)
        except Exception:
            pass

    def post_quietly(self, fn, *args) -> None:
        """Queue fn(*args) for the loop without waking it: it runs with the next batch of
        posted calls, in order, or at the latest when the loop next calls `drain_quiet`. For
        work that may wait (a reply can do it first)."""
        self._posted.append((fn, args))

    def post_lazily(self, fn, *args) -> None:
        """`post_quietly`, but the loop is woken once LAZY_BACKLOG calls wait: for a thread
        whose own reads mean the loop may not wake for a while (caller lanes), the backlog
        stays bounded."""
        if len(self._posted) + 1 >= LAZY_BACKLOG:
            self.post(fn, *args)
        else:
            self._posted.append((fn, args))

    def drain_quiet(self) -> None:
        """I/O loop: run what was posted quietly if no drain is on its way (so quiet posts
        never pile up in a process that posts nothing else)."""
        if self._posted and not self._post_scheduled and not self._draining:
            self._drain_posted()

    def nothing_posted(self) -> bool:
        """True when every call posted so far has run to its end: a thread may then send a
        frame itself (`Connection.send_threadsafe`) without overtaking what it posted."""
        return not self._posted and not self._post_scheduled and not self._draining

    def send_reply(self, sink: DeferredReply, reply: Any) -> None:
        """Send a call's reply from the thread that ran it; through the I/O loop instead while
        something this process posted has not run yet, so the reply never overtakes it (an item
        a generator reported, a message to the owner)."""
        if self.nothing_posted():
            sink.send(reply)
        else:
            self.post(sink.send, reply)

    def _drain_posted(self) -> None:
        self._post_scheduled = False
        self._draining = True
        posted = self._posted
        try:
            while posted:
                fn, args = posted.popleft()
                try:
                    fn(*args)
                except Exception:
                    logger.exception("posted call %s failed", getattr(fn, "__name__", fn))
        finally:
            self._draining = False

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
                thread_writes=True,  # a user thread pushes an idle actor's call itself
            )
        except BaseException as exc:
            self._peer_conns.pop(address, None)
            fut.set_exception(exc)
            fut.exception()
            raise
        fut.set_result(conn)
        return conn

    async def lane(self, address: str, actor_id: bytes) -> CallerLane | None:
        """A new connection to the actor at `address` whose main thread reads it itself, and
        whose replies this process's user threads read themselves (a lane: `core_worker.lanes`
        and `caller_lane`), or None when the actor declines one or the socket cannot move
        out of the loop (TLS)."""
        conn = await connect(
            address,
            self.token,
            self.handlers,
            name=f"lane {address[-20:]}",
            on_close=self._lanes.discard,
        )
        self._lanes.add(conn)
        try:
            accepted = await conn.call("open_lane", actor_id)
        except Exception:
            accepted = False
        sock = conn.detach_socket() if accepted is True and not self.stopped else None
        if sock is None:
            conn.close("lane declined")
            return None
        lane = CallerLane(sock)
        self._lanes.add(lane)
        return lane

    def forget_lane(self, lane: CallerLane) -> None:
        """A lane (see `lane()`) closed by its user: nothing to close at shutdown."""
        self._lanes.discard(lane)

    def _on_server_conn_closed(self, conn: Connection) -> None:
        """A peer that connected to us went away: it borrows nothing any more."""
        self.ownership.on_connection_closed(conn)

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

    # -- blocking in a call -------------------------------------------------------------
    def block(self) -> bool:
        """A call is about to wait in get/wait: the raylet may lend its CPU (tasks, not actors)."""
        if self.mode == "worker" and call_context.current_call() is not None and self.raylet is not None:
            self.post(self.raylet.notify, "worker_blocked", {"worker_id": self.worker_id})
            return True
        return False

    def unblock(self) -> None:
        self.post(self.raylet.notify, "worker_unblocked", {"worker_id": self.worker_id})

    # -- handlers (I/O thread) ----------------------------------------------------------
    def _h_infeasible(self, conn: Connection, payload: dict) -> None:
        key = (tuple(sorted(payload["shape"].items())), payload.get("labels"))
        if key in self._infeasible_reported:
            return
        self._infeasible_reported.add(key)
        if payload.get("labels"):
            print(
                f"(skate) Warning: the request {payload['shape']} with node labels "
                f"({payload['labels']}) cannot be scheduled: no alive node matches its labels and can "
                "hold it. It stays pending until such a node joins.",
                file=sys.stderr,
                flush=True,
            )
            return
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


class _Reply:
    """The reply to one request a user thread waits for; set once, by the I/O thread."""

    __slots__ = ("_lock", "value", "error")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()  # released when the reply is in
        self.value: Any = None
        self.error: BaseException | None = None

    def done(self, fut: asyncio.Future) -> None:
        if fut.cancelled():
            self.error = concurrent.futures.CancelledError()
        elif fut.exception() is not None:
            self.error = fut.exception()
        else:
            self.value = fut.result()
        self._lock.release()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self._lock.release()

    def wait(self, timeout: float | None) -> Any:
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError(f"no reply within {timeout} s")
        if self.error is not None:
            raise self.error
        return self.value


def _start_request(conn: Connection, method: str, payload: Any, reply: _Reply) -> None:
    """I/O thread: send a user thread's request; its reply releases the waiting thread."""
    try:
        conn.call(method, payload).add_done_callback(reply.done)
    except BaseException as exc:  # the waiting thread must hear of it, not hang
        reply.fail(exc)
