"""Where an actor's calls run: in order on the main thread, on thread pools, or as coroutines.

- a plain actor runs one call at a time on the worker's main thread, in arrival order;
- max_concurrency > 1 (or concurrency groups) on a sync actor: a thread pool per group;
- an actor with any `async def` method: one event loop on its own thread, each group bounded
  by a semaphore (default 1000 calls at once).

Every call runs through the executor's one path (`run_call` / `run_call_async`); this
module only picks the place.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from skate.protocol.connection import DeferredReply
from skate.protocol.messages import ActorCreation, TaskSpec

DEFAULT_GROUP = "_default"


class ActorRuntime:
    def __init__(self, executor: Any, instance: Any, creation: ActorCreation):
        self.executor = executor
        self.core = executor.core
        self.instance = instance
        self.is_async = creation.is_async
        limits = {DEFAULT_GROUP: int(creation.max_concurrency or 1)}
        limits.update(creation.concurrency_groups or {})
        self.limits = limits
        self.pools: dict[str, ThreadPoolExecutor] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.semaphores: dict[str, asyncio.Semaphore] = {}
        # Calls handed from the I/O thread to the actor's loop: one wake-up per batch, and a
        # plain Task per call (no concurrent.futures.Future as run_coroutine_threadsafe makes).
        self._inbox: collections.deque = collections.deque()
        self._inbox_scheduled = False
        self._tasks: set[asyncio.Task] = set()  # strong refs: the loop keeps only weak ones
        if self.is_async:
            ready = threading.Event()
            threading.Thread(
                target=self._run_loop, args=(ready,), name="skate-actor-loop", daemon=True
            ).start()
            ready.wait()
        elif limits[DEFAULT_GROUP] > 1 or len(limits) > 1:
            for group, limit in limits.items():
                self.pools[group] = ThreadPoolExecutor(max_workers=limit, thread_name_prefix=f"skate-{group}")

    def _run_loop(self, ready: threading.Event) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.semaphores = {g: asyncio.Semaphore(n) for g, n in self.limits.items()}
        ready.set()
        self.loop.run_forever()

    def submit(self, spec: TaskSpec, reply: DeferredReply) -> None:
        """I/O thread: start a call where this actor's concurrency model says."""
        executor = self.executor
        if executor.exiting:
            return  # exit_actor() ran: the call fails when the connection drops
        unknown = self.unknown_group(spec)
        if unknown is not None:
            reply.send(unknown)
            return
        group = spec.concurrency_group or DEFAULT_GROUP
        if self.is_async:
            self._inbox.append((spec, reply, group))
            if not self._inbox_scheduled:
                self._inbox_scheduled = True
                self.loop.call_soon_threadsafe(self._drain_inbox)  # type: ignore[union-attr]
        elif self.pools:
            self.pools[group].submit(self._run_sync, spec, reply)
        else:
            executor.inbox.put((executor.run_call, spec, reply))

    def unknown_group(self, spec: TaskSpec) -> Any:
        """The error reply of a call naming a concurrency group this actor lacks (None: it
        names none, or one it has)."""
        group = spec.concurrency_group or DEFAULT_GROUP
        if group in self.limits:
            return None
        spec.concurrency_group = None
        return self.executor._error_reply(spec, ValueError(f"unknown concurrency group {group!r}"), 0.0)

    def _drain_inbox(self) -> None:
        """Actor loop: start a coroutine for every call the I/O thread handed over."""
        self._inbox_scheduled = False
        inbox = self._inbox
        create_task = self.loop.create_task  # type: ignore[union-attr]
        tasks = self._tasks
        while inbox:
            task = create_task(self._run_async(*inbox.popleft()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def _run_sync(self, spec: TaskSpec, sink: DeferredReply) -> None:
        reply = self.executor.run_call(spec)
        self._done(sink, reply)

    async def _run_async(self, spec: TaskSpec, sink: DeferredReply, group: str) -> None:
        async with self.semaphores[group]:
            reply = await self.executor.run_call_async(spec)
        self._done(sink, reply)

    def _done(self, sink: DeferredReply, reply: Any) -> None:
        self.core.send_reply(sink, reply)
        if self.executor.exiting:
            self.executor.stop_main_thread()
