"""ActorPool: spread work over a fixed set of actors (Ray's `ray.util.ActorPool`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any



class ActorPool:
    """Hands values to idle actors and collects the results, in order or as they finish.

    `fn(actor, value)` must return an ObjectRef, e.g. `lambda a, v: a.work.remote(v)`.
    """

    def __init__(self, actors: list):
        actors = list(actors)
        self._idle_actors = actors
        self._future_to_actor: dict = {}  # ref -> (index, actor)
        self._index_to_future: dict = {}
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending_submits: list = []

    def map(self, fn: Callable, values: Iterable) -> Iterator:
        """Results of fn over values, in the order of values."""
        self._drain_check()
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn: Callable, values: Iterable) -> Iterator:
        """Results of fn over values, as soon as each is ready."""
        self._drain_check()
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next_unordered()

    def _drain_check(self) -> None:
        if self.has_next():
            raise RuntimeError("the pool still has results from an earlier call; collect them first")

    def submit(self, fn: Callable, value: Any) -> None:
        """Run fn(actor, value) on an idle actor, or queue it until one is free."""
        if self._idle_actors:
            actor = self._idle_actors.pop()
            ref = fn(actor, value)
            self._future_to_actor[ref] = (self._next_task_index, actor)
            self._index_to_future[self._next_task_index] = ref
            self._next_task_index += 1
        else:
            self._pending_submits.append((fn, value))

    def has_next(self) -> bool:
        return bool(self._future_to_actor) or bool(self._pending_submits)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        ref = self._index_to_future[self._next_return_index]
        if timeout is not None:
            ready, _ = _api().wait([ref], timeout=timeout)
            if not ready:
                if ignore_if_timedout:
                    self._next_return_index += 1
                    del self._index_to_future[self._next_return_index - 1]
                    self._return_actor(ref)
                raise TimeoutError("Timed out waiting for result")
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        self._return_actor(ref)
        return _api().get(ref)

    def get_next_unordered(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """Whichever result is ready first."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        ready, _ = _api().wait(list(self._future_to_actor), num_returns=1, timeout=timeout)
        if not ready:
            raise TimeoutError("Timed out waiting for result")
        ref = ready[0]
        index, _ = self._future_to_actor[ref]
        self._index_to_future.pop(index, None)
        self._next_return_index = max(self._next_return_index, index + 1)
        self._return_actor(ref)
        return _api().get(ref)

    def _return_actor(self, ref) -> None:
        _, actor = self._future_to_actor.pop(ref)
        self._idle_actors.append(actor)
        if self._pending_submits:
            self.submit(*self._pending_submits.pop(0))

    def has_free(self) -> bool:
        return bool(self._idle_actors) and not self._pending_submits

    def pop_idle(self):
        """Take an idle actor out of the pool (None if none is idle)."""
        return self._idle_actors.pop() if self.has_free() else None

    def push(self, actor) -> None:
        """Add an actor to the pool."""
        busy = {a for _, a in self._future_to_actor.values()}
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor_direct(actor)

    def _return_actor_direct(self, actor) -> None:
        self._idle_actors.append(actor)
        if self._pending_submits:
            self.submit(*self._pending_submits.pop(0))


def _api():
    """The module-level API, imported when first used (skate.util loads before it)."""
    from skate import _api as api

    return api
