"""How an actor runs its calls: in order on the main thread, on thread pools, or as coroutines.

- a plain actor runs one call at a time on the worker's main thread, in arrival order;
- max_concurrency > 1 (or concurrency groups) on a sync actor: a thread pool per group;
- an actor with any `async def` method: one event loop on its own thread, each group bounded
  by a semaphore (default 1000 calls at once).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from skate.core_worker.core import _set_if_pending, task_error_entry

DEFAULT_GROUP = "_default"


class ActorRuntime:
    def __init__(self, executor: Any, instance: Any, spec: dict):
        self.executor = executor
        self.core = executor.core
        self.instance = instance
        self.is_async = bool(spec.get("is_async"))
        limits = {DEFAULT_GROUP: int(spec.get("max_concurrency") or 1)}
        limits.update(spec.get("groups") or {})
        self.limits = limits
        self.pools: dict[str, ThreadPoolExecutor] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.semaphores: dict[str, asyncio.Semaphore] = {}
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

    def submit(self, spec: dict, fut: asyncio.Future) -> None:
        """I/O thread: start a call where this actor's concurrency model says."""
        if self.executor.exiting:
            return  # exit_actor() ran: the call fails when the connection drops
        group = spec.get("group") or DEFAULT_GROUP
        if group not in self.limits:
            reply = _error_reply(spec, ValueError(f"unknown concurrency group {group!r}"))
            self.core.post(_set_if_pending, fut, reply)
            return
        if self.is_async:
            asyncio.run_coroutine_threadsafe(self._run_async(spec, fut, group), self.loop)
        elif self.pools:
            self.pools[group].submit(self._run_sync, spec, fut)
        else:
            self.executor.queue.put((self.executor.call_actor_method, spec, fut))

    def _run_sync(self, spec: dict, fut: asyncio.Future) -> None:
        reply = self.executor.call_actor_method(spec)
        self.core.post(_set_if_pending, fut, reply)

    async def _run_async(self, spec: dict, fut: asyncio.Future, group: str) -> None:
        executor = self.executor
        async with self.semaphores[group]:
            start = time.perf_counter()
            try:
                method = getattr(self.instance, spec["method"])
                args, kwargs = executor._load_args(spec)
                if self.core.refs.new_borrowed:
                    self.core.register_borrows()
                result = method(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                returns = executor._store_returns(result, spec, spec["owner"][0])
                reply = {"returns": returns, "dur": time.perf_counter() - start, "app_error": False}
            except SystemExit:  # exit_actor()
                returns = executor._store_returns(None, spec, spec["owner"][0]) if spec["nret"] else []
                reply = {"returns": returns, "dur": 0.0, "app_error": False}
                executor._exit_actor()
            except Exception as exc:
                reply = _error_reply(spec, exc)
        self.core.post(_set_if_pending, fut, reply)


def _error_reply(spec: dict, exc: BaseException) -> dict:
    entry = task_error_entry(spec["name"], exc, os.getpid(), "127.0.0.1")
    return {"returns": [list(entry)] * spec["nret"], "dur": 0.0, "app_error": True}
