"""A drop-in `multiprocessing.Pool` whose worker processes are actors (Ray's
`ray.util.multiprocessing.Pool`), so the same program spreads over a whole cluster.

Work goes to the actors in batches ("chunks") round-robin; an actor runs a batch call by
call and answers with one entry per call (see `results`), so a failing call raises its own
exception, of its own type, in the caller. Like Ray, the pool starts a local cluster if none
is running (`ray_address` or SKATE_ADDRESS/RAY_ADDRESS name one to join instead), sizes itself
to the cluster's CPUs by default, ignores `context`, and its actors take no CPU of their own
(`ray_remote_args` changes their options).
"""

from __future__ import annotations

import itertools
import logging
import os
import traceback
import weakref
from collections.abc import Callable, Iterable, Sized
from typing import Any

import cloudpickle

from skate.object_ref import ObjectRef
from skate.util.multiprocessing.results import AsyncResult, IMapIterator, ResultHandler

logger = logging.getLogger(__name__)

_ADDRESS_VARS = ("SKATE_ADDRESS", "RAY_ADDRESS")


class _PoolActor:
    """One worker process of a pool: runs the initializer once, then batches of calls."""

    def __init__(self, initializer: Callable | None, initargs: tuple):
        if initializer is not None:
            initializer(*initargs)

    def ping(self) -> None:
        """Answers once the constructor (and the initializer) has run."""

    def run_batch(self, func: Callable, batch: list) -> list:
        """Call func on each (args, kwargs) of the batch; one entry per call."""
        out: list[tuple] = []
        for args, kwargs in batch:
            try:
                out.append((True, func(*args, **(kwargs or {}))))
            except Exception as exc:
                out.append((False, _picklable(exc), traceback.format_exc()))
        return out


def _picklable(exc: Exception) -> Exception:
    """The exception itself if it can travel back to the caller, else a RuntimeError naming it."""
    try:
        cloudpickle.dumps(exc)
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc} (the original exception could not be pickled)")


def _check_positive_int(name: str, value: Any, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")


def _check_callable(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {type(value).__name__}")


class Pool:
    """A pool of actor processes with multiprocessing.Pool's interface.

    processes: number of actors (default: the cluster's CPUs; more than the cluster has is a
        ValueError, as in Ray). initializer(*initargs) runs once in each actor.
    maxtasksperchild: after that many batches an actor is retired (once its queued work is
        done) and a fresh one takes its place.
    context: accepted and ignored (a warning is logged), as Ray does.
    ray_address: the cluster to join when none is connected yet.
    ray_remote_args: options of the actors (e.g. {"num_cpus": 1}).
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable | None = None,
        initargs: Iterable = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
        ray_address: str | None = None,
        ray_remote_args: dict | None = None,
    ):
        _check_positive_int("processes", processes)
        _check_positive_int("maxtasksperchild", maxtasksperchild)
        _check_callable("initializer", initializer)
        if ray_remote_args is not None and not isinstance(ray_remote_args, dict):
            raise TypeError(f"ray_remote_args must be a dict, got {type(ray_remote_args).__name__}")
        if context is not None:
            logger.warning("Pool: the 'context' argument is ignored; the pool's processes are actors")
        self._closed = False
        self._initializer = initializer
        self._initargs = tuple(initargs or ())
        self._maxtasks = maxtasksperchild
        self._remote_args = {"num_cpus": 0, **(ray_remote_args or {})}
        self._stopping: list[ObjectRef] = []  # __ray_terminate__ calls of retired actors
        self._round_robin = itertools.count()
        self._handler = ResultHandler()
        weakref.finalize(self, self._handler.close)  # a pool dropped unclosed stops its thread
        processes = self._connect(processes, ray_address)
        from skate import _api

        cls = _api.remote(_PoolActor).options(**self._remote_args)
        self._actor_class = cls
        self._actors: list[list] = [[self._new_actor(), 0] for _ in range(processes)]
        _api.get([a.ping.remote() for a, _ in self._actors])

    # -- setup ------------------------------------------------------------------------------
    @staticmethod
    def _connect(processes: int | None, address: str | None) -> int:
        """Join or start a cluster if needed; the number of actors to start."""
        from skate import _api

        if not _api.is_initialized():
            if address is not None:
                _api.init(address=address)
            elif any(os.environ.get(var) for var in _ADDRESS_VARS):
                _api.init()
            else:
                _api.init(num_cpus=processes)
        cpus = int(_api.cluster_resources().get("CPU", 0))
        if processes is None:
            processes = cpus
        if processes < 1:
            raise ValueError(f"Processes in the pool must be >0 (the cluster has {cpus} CPUs)")
        if processes > cpus:
            raise ValueError(
                f"Tried to start a pool with {processes} processes, but the cluster has only {cpus} CPUs"
            )
        return processes

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self._initializer, self._initargs)

    def _size(self) -> int:
        return len(self._actors)

    def _check_running(self) -> None:
        if self._closed:
            raise ValueError("Pool not running")

    # -- dispatch ---------------------------------------------------------------------------
    def _submit(self, func: Any, batch: list) -> ObjectRef:
        """Send one batch to the next actor; retire the actor after maxtasksperchild batches."""
        slot = self._actors[next(self._round_robin) % len(self._actors)]
        ref = slot[0].run_batch.remote(func, batch)
        slot[1] += 1
        if self._maxtasks is not None and slot[1] >= self._maxtasks:
            self._stopping.append(slot[0].__ray_terminate__.remote())
            slot[0], slot[1] = self._new_actor(), 0
        return ref

    def _func_arg(self, func: Callable, chunks: int) -> Any:
        """The function as the batches take it: stored once when it goes to many batches."""
        if chunks > 1:
            from skate import _api

            return _api.put(func)
        return func

    def _default_chunksize(self, n: int) -> int:
        chunks, extra = divmod(n, len(self._actors) * 4)
        return chunks + 1 if extra else max(chunks, 1)

    def _map_async(
        self,
        func: Callable,
        iterable: Iterable,
        chunksize: int | None,
        star: bool,
        callback: Callable | None,
        error_callback: Callable | None,
    ) -> AsyncResult:
        self._check_running()
        _check_callable("func", func)
        _check_positive_int("chunksize", chunksize)
        _check_callable("callback", callback)
        _check_callable("error_callback", error_callback)
        items = iterable if isinstance(iterable, Sized) else list(iterable)
        size = chunksize or self._default_chunksize(len(items))
        batches: list[list] = []
        it = iter(items)
        while True:
            chunk = [(tuple(args) if star else (args,), None) for args in itertools.islice(it, size)]
            if not chunk:
                break
            batches.append(chunk)
        func_arg = self._func_arg(func, len(batches))
        refs = [self._submit(func_arg, b) for b in batches]
        sizes = [len(b) for b in batches]
        result = AsyncResult(sizes, False, callback, error_callback)
        if refs:
            self._handler.track(result, refs, sizes)
        return result

    # -- multiprocessing.Pool's interface ---------------------------------------------------
    def apply(
        self, func: Callable, args: tuple = (), kwds: dict | None = None, *, kwargs: dict | None = None
    ) -> Any:
        """func(*args, **kwds) on one of the actors; its result or its exception.
        (`kwargs=` is Ray's name for `kwds`; either may be used.)"""
        return self.apply_async(func, args, kwds, kwargs=kwargs).get()

    def apply_async(
        self,
        func: Callable,
        args: tuple = (),
        kwds: dict | None = None,
        callback: Callable | None = None,
        error_callback: Callable | None = None,
        *,
        kwargs: dict | None = None,
    ) -> AsyncResult:
        """Like apply, returning an AsyncResult; callback gets the value, error_callback the
        exception (each on the pool's result thread)."""
        self._check_running()
        if kwargs is not None:
            if kwds is not None:
                raise TypeError("apply: pass the keyword arguments as kwds or kwargs, not both")
            kwds = kwargs
        _check_callable("func", func)
        _check_callable("callback", callback)
        _check_callable("error_callback", error_callback)
        if kwds is not None and not isinstance(kwds, dict):
            raise TypeError(f"kwds must be a dict, got {type(kwds).__name__}")
        ref = self._submit(func, [(tuple(args or ()), kwds)])
        result = AsyncResult([1], True, callback, error_callback)
        self._handler.track(result, [ref], [1])
        return result

    def map(self, func: Callable, iterable: Iterable, chunksize: int | None = None) -> list:
        """[func(x) for x in iterable], computed by the actors in batches of chunksize."""
        return self._map_async(func, iterable, chunksize, False, None, None).get()

    def map_async(
        self,
        func: Callable,
        iterable: Iterable,
        chunksize: int | None = None,
        callback: Callable | None = None,
        error_callback: Callable | None = None,
    ) -> AsyncResult:
        """Like map, returning an AsyncResult; callback gets the whole list once, if no call
        failed, else error_callback gets the first failure's exception."""
        return self._map_async(func, iterable, chunksize, False, callback, error_callback)

    def starmap(self, func: Callable, iterable: Iterable, chunksize: int | None = None) -> list:
        """[func(*args) for args in iterable]."""
        return self._map_async(func, iterable, chunksize, True, None, None).get()

    def starmap_async(
        self,
        func: Callable,
        iterable: Iterable,
        chunksize: int | None = None,
        callback: Callable | None = None,
        error_callback: Callable | None = None,
    ) -> AsyncResult:
        """Like starmap, returning an AsyncResult."""
        return self._map_async(func, iterable, chunksize, True, callback, error_callback)

    def imap(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> IMapIterator:
        """func over iterable lazily, in order; next(timeout) on the iterator as in multiprocessing."""
        return self._imap(func, iterable, chunksize, True)

    def imap_unordered(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> IMapIterator:
        """Like imap, each value as soon as its batch is done."""
        return self._imap(func, iterable, chunksize, False)

    def _imap(self, func: Callable, iterable: Iterable, chunksize: int, ordered: bool) -> IMapIterator:
        self._check_running()
        _check_callable("func", func)
        _check_positive_int("chunksize", chunksize, allow_none=False)
        return IMapIterator(
            self._submit, len(self._actors), self._func_arg(func, 2), iterable, chunksize, ordered
        )

    # -- shutting down ----------------------------------------------------------------------
    def close(self) -> None:
        """No more work may be submitted; the actors exit once their queued work is done."""
        if self._closed:
            return
        self._closed = True
        if self._connected():
            for actor, _ in self._actors:
                self._stopping.append(actor.__ray_terminate__.remote())
        self._handler.close()

    @staticmethod
    def _connected() -> bool:
        """Whether the cluster is still there (shutting a pool down must not start a new one)."""
        from skate import _api

        return _api.is_initialized()

    def terminate(self) -> None:
        """Stop at once: the actors are killed; unfinished results fail."""
        from skate import _api

        self.close()
        if not self._connected():
            return
        for actor, _ in self._actors:
            try:
                _api.kill(actor)
            except Exception:  # the cluster may be gone already
                pass

    def join(self) -> None:
        """Wait for the actors of a closed or terminated pool to exit."""
        if not self._closed:
            raise ValueError("Pool is still running")
        from skate import _api

        if self._stopping and self._connected():
            _api.wait(self._stopping, num_returns=len(self._stopping))
        self._stopping = []

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()

    def __reduce__(self):
        raise TypeError("a Pool cannot be pickled: pass its results, not the pool, to tasks")
