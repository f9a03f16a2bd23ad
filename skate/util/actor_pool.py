"""ActorPool: spread work over a fixed set of actors (Ray's `ray.util.ActorPool`)."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from skate.exceptions import ActorDiedError
from skate.object_ref import ObjectRef

_TIMEOUT_MSG = "Timed out waiting for result"


def _refs(future: Any) -> list[ObjectRef]:
    """The refs a submission's result depends on: one ref, or each of a list of them."""
    return [future] if isinstance(future, ObjectRef) else list(future)


def _key(future: Any) -> Any:
    """A hashable key for a submission (a list of refs becomes a tuple)."""
    return tuple(future) if isinstance(future, list) else future


class ActorPool:
    """Hands values to idle actors and collects the results, in order or as they finish.

    `fn(actor, value)` must return an ObjectRef, or a list of ObjectRefs (then the result is
    the list of their values), e.g. `lambda a, v: a.work.remote(v)`. An actor is busy until
    its result is taken with get_next()/get_next_unordered(); values submitted while every
    actor is busy wait in the pool and go out as actors free up.
    """

    def __init__(self, actors: Iterable):
        self._idle_actors = list(actors)
        self._future_to_actor: dict[Any, tuple[int, Any]] = {}  # key -> (index, actor)
        self._index_to_future: dict[int, Any] = {}
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending_submits: collections.deque = collections.deque()

    # -- bulk -----------------------------------------------------------------------------
    def map(self, fn: Callable[[Any, Any], Any], values: Iterable) -> Iterator:
        """Results of fn over values, in the order of values.

        Work is submitted when map() is called, not when the results are read; results of
        earlier submissions not read yet are dropped first (as Ray does)."""
        while self.has_next():
            try:
                self.get_next(timeout=0, ignore_if_timedout=True)
            except TimeoutError:
                pass
        for v in values:
            self.submit(fn, v)
        return self._results(self.get_next)

    def map_unordered(self, fn: Callable[[Any, Any], Any], values: Iterable) -> Iterator:
        """Results of fn over values, each as soon as it is ready.

        Work is submitted when map_unordered() is called; results of earlier submissions are
        waited for and dropped first (as Ray does)."""
        while self.has_next():
            self.get_next_unordered()
        for v in values:
            self.submit(fn, v)
        return self._results(self.get_next_unordered)

    def _results(self, take: Callable[[], Any]) -> Iterator:
        while self.has_next():
            yield take()

    # -- one at a time ----------------------------------------------------------------------
    def submit(self, fn: Callable[[Any, Any], Any], value: Any) -> None:
        """Run fn(actor, value) on an idle actor, or queue it until one is free."""
        if not self._idle_actors:
            self._pending_submits.append((fn, value))
            return
        actor = self._idle_actors.pop()
        try:
            future = fn(actor, value)
            if not isinstance(future, ObjectRef) and not (
                isinstance(future, (list, tuple)) and all(isinstance(r, ObjectRef) for r in future)
            ):
                raise TypeError(
                    "ActorPool: fn(actor, value) must return an ObjectRef or a list of ObjectRefs, "
                    f"got {type(future).__name__}"
                )
        except BaseException:
            self._idle_actors.append(actor)
            raise
        self._future_to_actor[_key(future)] = (self._next_task_index, actor)
        self._index_to_future[self._next_task_index] = future
        self._next_task_index += 1

    def has_next(self) -> bool:
        """Whether a submitted result is waiting to be read (queued values do not count until
        an actor takes them)."""
        return bool(self._future_to_actor)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order.

        TimeoutError if it is not ready within `timeout`; with ignore_if_timedout the task is
        dropped (its actor goes back to the pool) before the error is raised."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        future = self._index_to_future[self._next_return_index]
        timed_out = False
        if timeout is not None:
            refs = _refs(future)
            ready, _ = _api().wait(refs, num_returns=len(refs), timeout=timeout)
            if len(ready) < len(refs):
                if not ignore_if_timedout:
                    raise TimeoutError(_TIMEOUT_MSG)
                timed_out = True
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(_key(future))
        if timed_out:
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMEOUT_MSG}. The task {future} has been ignored.")
        return self._get_result(future, actor)

    def get_next_unordered(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """Whichever result is ready first.

        TimeoutError if none is ready within `timeout`; with ignore_if_timedout one pending
        task is dropped (its actor goes back to the pool) before the error is raised."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        key = self._first_ready(timeout)
        timed_out = key is None
        if timed_out:
            if not ignore_if_timedout:
                raise TimeoutError(_TIMEOUT_MSG)
            key = next(iter(self._future_to_actor))
        index, actor = self._future_to_actor.pop(key)
        future = self._index_to_future.pop(index)
        self._next_return_index = max(self._next_return_index, index + 1)
        if timed_out:
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMEOUT_MSG}. The task {future} has been ignored.")
        return self._get_result(future, actor)

    def _first_ready(self, timeout: float | None) -> Any:
        """The key of a submission whose refs are all ready, or None after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        keys = list(self._future_to_actor)
        ready: set = set()
        while True:
            for key in keys:
                if isinstance(key, ObjectRef):
                    if key in ready:
                        return key
                elif all(r in ready for r in key):
                    return key
            pending = [r for key in keys for r in _refs(key) if r not in ready]
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = _api().wait(pending, num_returns=1, timeout=remaining)
            if not done:
                return None
            ready.update(done)

    def _get_result(self, future: Any, actor: Any) -> Any:
        alive = True
        try:
            return _api().get(future)
        except ActorDiedError:
            alive = False  # a dead actor would only fail every later value: it leaves the pool
            raise
        finally:
            self._return_actor(actor, alive)

    def _return_actor(self, actor: Any, alive: bool = True) -> None:
        if alive:
            self._idle_actors.append(actor)
        if self._pending_submits and self._idle_actors:
            self.submit(*self._pending_submits.popleft())

    # -- membership -------------------------------------------------------------------------
    def has_free(self) -> bool:
        """Whether an actor is idle and no value is waiting for one."""
        return bool(self._idle_actors) and not self._pending_submits

    def pop_idle(self) -> Any:
        """Take an idle actor out of the pool (None if none is free)."""
        return self._idle_actors.pop() if self.has_free() else None

    def push(self, actor: Any) -> None:
        """Add an actor to the pool; it takes a waiting value at once if there is one."""
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)


def _api():
    """The module-level API, imported when first used (skate.util loads before it)."""
    from skate import _api as api

    return api
