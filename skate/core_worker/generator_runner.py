"""The worker's side of generator tasks: run the generator, report each item as it comes.

The executor hands a generator call's result here (`run` on the calling thread, `run_async`
on an async actor's loop). Each yielded item is stored as a return value is (inline when
small, else in this node's shared memory, owned by the caller) and reported to the owner
with its index (`report_generator_item`), on the connection the call came on, so reports
reach the owner in order and before the call's reply, which marks the end.

Backpressure (`_generator_backpressure_num_objects` > 0): reports are requests, and the owner
holds the reply to item `i` until fewer than that many items are unconsumed. The producer
waits for that reply only when its lead over the consumer (as the replies so far told it)
reaches the threshold; it waits on a future, never blocking the I/O loop, and in slices, so
a cancellation (SIGINT, or an asynchronous exception on a pool thread) still lands.

A retried attempt skips the items its owner already has (`TaskSpec.generator[2]`): they are
run again but neither stored nor reported.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from typing import Any

from skate._config import MAX_INLINE_BYTES
from skate._serialization import serialize
from skate.core_worker.generator_streams import item_id
from skate.protocol.messages import IN_STORE, INLINE, GeneratorItem, TaskSpec


class _Progress:
    """What the producer knows of the consumer: the position in the latest reply."""

    __slots__ = ("consumed",)

    def __init__(self) -> None:
        self.consumed = 0

    def update(self, fut: asyncio.Future) -> None:
        if not fut.cancelled() and fut.exception() is None and isinstance(fut.result(), int):
            self.consumed = max(self.consumed, fut.result())


class GeneratorRunner:
    def __init__(self, core: Any):
        self.core = core
        self.origins: dict[bytes, Any] = {}  # task id -> the connection its call came on

    def remember(self, spec: TaskSpec, conn: Any) -> None:
        """I/O thread: where a generator call's reports go."""
        if spec.generator is not None:
            self.origins[spec.task_id] = conn

    # -- running ---------------------------------------------------------------------------
    def run(self, spec: TaskSpec, result: Any) -> Any:
        """Drive a sync generator to its end, reporting each item; its exception propagates.

        Returns the call's own result: None (its completion)."""
        conn = self._origin(spec)
        if inspect.isasyncgen(result):
            raise TypeError(f"{spec.name} is an async generator: only an async actor's method can be one")
        items = _iterator(spec, result)
        skip, threshold = spec.generator[2], spec.generator[1]  # type: ignore[index]
        progress = _Progress()
        for index, value in enumerate(items):
            if index >= skip:
                wait = self._report(spec, conn, index, value, threshold, progress)
                if wait is not None:
                    _wait(wait)
        return None

    async def run_async(self, spec: TaskSpec, result: Any) -> Any:
        """The same on an async actor's loop: an async generator, or a sync one."""
        conn = self._origin(spec)
        skip, threshold = spec.generator[2], spec.generator[1]  # type: ignore[index]
        progress = _Progress()
        index = 0
        if inspect.isasyncgen(result):
            async for value in result:
                if index >= skip:
                    wait = self._report(spec, conn, index, value, threshold, progress)
                    if wait is not None:
                        await asyncio.wrap_future(wait)
                index += 1
            return None
        for value in _iterator(spec, result):
            if index >= skip:
                wait = self._report(spec, conn, index, value, threshold, progress)
                if wait is not None:
                    await asyncio.wrap_future(wait)
            index += 1
        return None

    def _origin(self, spec: TaskSpec) -> Any:
        conn = self.origins.pop(spec.task_id, None)
        if conn is None:
            raise RuntimeError(f"generator call {spec.name} has no connection to report its items on")
        return conn

    # -- one item --------------------------------------------------------------------------
    def _report(
        self, spec: TaskSpec, conn: Any, index: int, value: Any, threshold: int, progress: _Progress
    ) -> concurrent.futures.Future | None:
        """Store the item and report it; a future to wait on when the producer must pause."""
        core = self.core
        oid = item_id(spec.task_id, index)
        sobj = serialize(value)
        holder = None
        if sobj.contained_refs:
            # Kept alive until the owner frees the item (release_contained).
            core.ownership.contained[oid] = list(sobj.contained_refs)
            holder = core.address
        if sobj.size < MAX_INLINE_BYTES:
            entry = [INLINE, sobj.to_inline()]
        else:
            core.objects.write_to_plasma(oid, sobj, spec.owner[0])
            entry = [IN_STORE, core.node_id, sobj.size]
        item = GeneratorItem(spec.task_id, index, entry, holder, spec.attempt)
        if threshold <= 0:
            core.post(conn.notify, "report_generator_item", item)
            return None
        done: concurrent.futures.Future = concurrent.futures.Future()
        core.post(_send, conn, item, done, progress)
        if index + 1 - progress.consumed >= threshold:
            return done
        return None


def _send(conn: Any, item: GeneratorItem, done: concurrent.futures.Future, progress: _Progress) -> None:
    """I/O thread: report an item as a request; its reply is the consumer's position."""

    def replied(fut: asyncio.Future) -> None:
        progress.update(fut)
        if fut.cancelled():
            done.set_exception(ConnectionError("the owner's connection closed"))
        elif fut.exception() is not None:
            done.set_exception(fut.exception())
        else:
            done.set_result(fut.result())

    conn.call("report_generator_item", item).add_done_callback(replied)


def _wait(fut: concurrent.futures.Future) -> None:
    """Wait for the owner's go-ahead in slices, so a cancellation can interrupt the wait."""
    while True:
        try:
            fut.result(timeout=0.1)
            return
        except concurrent.futures.TimeoutError:
            continue


def _iterator(spec: TaskSpec, result: Any) -> Any:
    if inspect.isgenerator(result) or (hasattr(result, "__next__") and hasattr(result, "__iter__")):
        return result
    mode = spec.generator[0] if spec.generator else "streaming"
    raise TypeError(
        f"{spec.name} was called with num_returns={mode!r} but returned a "
        f"{type(result).__name__}, not a generator: only a generator function can stream its results"
    )
