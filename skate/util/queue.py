"""An actor-backed FIFO queue shared by tasks and actors (Ray's `ray.util.queue.Queue`)."""

from __future__ import annotations

import asyncio
import queue as _stdlib_queue
from typing import Any

import skate


class Empty(_stdlib_queue.Empty):
    pass


class Full(_stdlib_queue.Full):
    pass


class _QueueActor:
    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.queue: asyncio.Queue | None = None

    def _q(self) -> asyncio.Queue:
        if self.queue is None:
            self.queue = asyncio.Queue(self.maxsize)
        return self.queue

    async def qsize(self) -> int:
        return self._q().qsize()

    async def empty(self) -> bool:
        return self._q().empty()

    async def full(self) -> bool:
        return self._q().full()

    async def put(self, item: Any, timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(self._q().put(item), timeout)
        except asyncio.TimeoutError:
            raise Full from None

    async def get(self, timeout: float | None = None) -> Any:
        try:
            return await asyncio.wait_for(self._q().get(), timeout)
        except asyncio.TimeoutError:
            raise Empty from None

    async def put_nowait(self, item: Any) -> None:
        try:
            self._q().put_nowait(item)
        except asyncio.QueueFull:
            raise Full from None

    async def put_nowait_batch(self, items: list) -> None:
        q = self._q()
        if self.maxsize > 0 and len(items) + q.qsize() > self.maxsize:
            raise Full(
                f"Cannot add {len(items)} items to queue of size {q.qsize()} and maxsize {self.maxsize}."
            )
        for item in items:
            q.put_nowait(item)

    async def get_nowait(self) -> Any:
        try:
            return self._q().get_nowait()
        except asyncio.QueueEmpty:
            raise Empty from None

    async def get_nowait_batch(self, num_items: int) -> list:
        q = self._q()
        if num_items > q.qsize():
            raise Empty(f"Cannot get {num_items} items from queue of size {q.qsize()}.")
        return [q.get_nowait() for _ in range(num_items)]


class Queue:
    """A first-in, first-out queue living in an actor; its handle can be passed anywhere."""

    def __init__(self, maxsize: int = 0, actor_options: dict | None = None):
        if not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError(f"maxsize must be an int >= 0, got {maxsize!r}")
        self.maxsize = maxsize
        options = dict(actor_options or {})
        options.setdefault("num_cpus", 0)
        self.actor = skate.remote(_QueueActor).options(**options).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        return self.qsize()

    def qsize(self) -> int:
        return skate.get(self.actor.qsize.remote())

    def empty(self) -> bool:
        return skate.get(self.actor.empty.remote())

    def full(self) -> bool:
        return skate.get(self.actor.full.remote())

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add an item; with block=False (or after timeout) raise Full when there is no room."""
        if not block:
            skate.get(self.actor.put_nowait.remote(item))
            return
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        skate.get(self.actor.put.remote(item, timeout))

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Take the oldest item; with block=False (or after timeout) raise Empty when there is none."""
        if not block:
            return skate.get(self.actor.get_nowait.remote())
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        return skate.get(self.actor.get.remote(timeout))

    def put_nowait(self, item: Any) -> None:
        self.put(item, block=False)

    def put_nowait_batch(self, items: list) -> None:
        skate.get(self.actor.put_nowait_batch.remote(list(items)))

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list:
        if not isinstance(num_items, int) or num_items < 0:
            raise ValueError("'num_items' must be a non-negative int")
        return skate.get(self.actor.get_nowait_batch.remote(num_items))

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if not block:
            await self.actor.put_nowait.remote(item)
        else:
            await self.actor.put.remote(item, timeout)

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        if not block:
            return await self.actor.get_nowait.remote()
        return await self.actor.get.remote(timeout)

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        if self.actor is not None:
            skate.kill(self.actor)
        self.actor = None
