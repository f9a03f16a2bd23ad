"""What a generator task returns to its caller: ObjectRefGenerator and DynamicObjectRefGenerator.

`num_returns="streaming"` (the default for a generator function) gives an `ObjectRefGenerator`:
iterate it (sync or async) to get one ObjectRef per yielded item, each usable as soon as the
worker yielded it. The items arrive at the owner's core worker (`core_worker.generator_streams`,
which implements the `_stream` these objects read); this module is only the user's view.

`num_returns="dynamic"` gives one ObjectRef whose value is a `DynamicObjectRefGenerator`: the
refs of every item, available once the task has finished.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from typing import Any

from skate.object_ref import ObjectRef

__all__ = ["DynamicObjectRefGenerator", "ObjectRefGenerator"]


class ObjectRefGenerator:
    """The items of a streaming generator task, as ObjectRefs, in the order they were yielded.

    `next(gen)` blocks until the next item's ref is available and raises StopIteration after
    the last; `async for ref in gen` waits without blocking the event loop. If the task fails,
    the ref after the items it yielded holds its error (`get` raises it), then the iteration
    stops. Not thread-safe, and not serializable (it cannot be passed to another task).
    """

    def __init__(self, generator_ref: ObjectRef, stream: Any):
        self._generator_ref = generator_ref
        self._stream = stream

    # -- sync iteration ---------------------------------------------------------------------
    def __iter__(self) -> ObjectRefGenerator:
        return self

    def __next__(self) -> ObjectRef:
        return self._stream.next_ref(None)

    def _next_sync(self, timeout_s: float | None = None) -> ObjectRef:
        """The next item's ref, waiting at most `timeout_s` (GetTimeoutError past it)."""
        return self._stream.next_ref(timeout_s)

    # -- async iteration --------------------------------------------------------------------
    def __aiter__(self) -> ObjectRefGenerator:
        return self

    async def __anext__(self) -> ObjectRef:
        loop = asyncio.get_running_loop()
        while True:
            try:
                ref = self._stream.try_next()
            except StopIteration:
                raise StopAsyncIteration from None
            if ref is not None:
                return ref
            fut = loop.create_future()
            if self._stream.on_ready(functools.partial(loop.call_soon_threadsafe, _wake, fut)):
                await fut

    # -- state ------------------------------------------------------------------------------
    def completed(self) -> ObjectRef:
        """A ref that is ready when the task has finished (its `get` raises if the task failed)."""
        return self._generator_ref

    def next_ready(self) -> bool:
        """Whether next() would return (or stop) without waiting."""
        return self._stream.ready()

    def is_finished(self) -> bool:
        """Whether every item (and the task's error, if any) was taken: next() would stop."""
        return self._stream.finished()

    def task_id(self) -> bytes:
        """The id of the generator task."""
        return self._generator_ref.task_id()

    # -- what Python generators have and this one does not -------------------------------------
    def send(self, value: Any) -> Any:
        raise NotImplementedError("ObjectRefGenerator does not support send()")

    def throw(self, *args: Any) -> Any:
        raise NotImplementedError("ObjectRefGenerator does not support throw()")

    def close(self) -> None:
        raise NotImplementedError("ObjectRefGenerator does not support close()")

    def __reduce__(self):
        raise TypeError(
            "An ObjectRefGenerator cannot be serialized, so it cannot be passed to another task or "
            "actor; pass the ObjectRefs it yields instead."
        )

    def __del__(self) -> None:
        stream = self.__dict__.get("_stream")
        if stream is not None:
            try:
                stream.abandon()
            except Exception:
                pass

    def __repr__(self) -> str:
        return f"ObjectRefGenerator(task={self._generator_ref.task_id().hex()})"


class DynamicObjectRefGenerator:
    """The value of a `num_returns="dynamic"` task's ref: the refs of every item it yielded
    (and, if it failed, a last ref holding its error)."""

    def __init__(self, refs: list[ObjectRef]):
        self._refs = list(refs)

    def __iter__(self) -> Iterator[ObjectRef]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
