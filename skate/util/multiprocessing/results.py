"""Results of a `skate.util.multiprocessing.Pool`: AsyncResult and the imap iterators.

A pool sends work to its actors in batches ("chunks"); each chunk's reply is a list of
entries, one per call, `(True, value)` or `(False, exception, traceback text)`, so an error
in one call neither hides the others nor changes the exception's type. The caller re-raises
the original exception with the remote traceback attached as its `__cause__`, as
multiprocessing does.

AsyncResult is completed by the pool's result thread (`ResultHandler`), which also runs the
user's callbacks: a callback never runs on Skate's I/O thread, and one thread serves every
result of a pool (multiprocessing has one result-handler thread per pool too).
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing import TimeoutError as MpTimeoutError
from typing import Any

from skate.object_ref import ObjectRef

logger = logging.getLogger(__name__)

Entry = tuple  # (True, value) | (False, exception, traceback text or None)


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a pool's actor (set as the `__cause__`)."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def raise_entry(entry: Entry) -> None:
    """Raise the exception a failed entry carries, with its remote traceback as the cause."""
    exc = entry[1]
    tb = entry[2] if len(entry) > 2 else None
    if tb and exc.__cause__ is None:
        exc.__cause__ = RemoteTraceback(tb)
    raise exc


def chunk_entries(future_or_value: Any, size: int) -> list:
    """The entries of a finished chunk; a failure of the whole chunk (its actor died, its
    reply could not be read) becomes a failed entry for each of its calls."""
    try:
        if hasattr(future_or_value, "result"):
            return future_or_value.result()
        return future_or_value
    except Exception as exc:
        return [(False, exc, None)] * size


class ResultHandler:
    """One daemon thread per pool that completes AsyncResults and runs their callbacks."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._closing = False
        self._thread: threading.Thread | None = None

    def track(self, result: AsyncResult, refs: list[ObjectRef], sizes: list[int]) -> None:
        """Deliver each chunk's reply to `result` on the handler thread as it arrives."""
        with self._lock:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="skate-pool-results", daemon=True)
                self._thread.start()
        for index, (ref, size) in enumerate(zip(refs, sizes)):
            ref.future().add_done_callback(functools.partial(self._deliver, result, index, size))

    def _deliver(self, result: AsyncResult, index: int, size: int, fut: concurrent.futures.Future) -> None:
        """A chunk's future is done (on whichever thread finished it): hand it to the thread."""
        self._queue.put((result, index, chunk_entries(fut, size)))

    def close(self) -> None:
        """Stop the thread once every tracked result is complete."""
        with self._lock:
            self._closing = True
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is not None:
                result, index, entries = item
                if result._chunk_done(index, entries):
                    with self._lock:
                        self._pending -= 1
            with self._lock:
                if self._closing and self._pending == 0:
                    self._thread = None
                    return


class AsyncResult:
    """The result of apply_async / map_async / starmap_async (multiprocessing's AsyncResult)."""

    def __init__(
        self,
        sizes: list[int],
        single: bool,
        callback: Callable | None,
        error_callback: Callable | None,
    ):
        self._chunks: list[list | None] = [None] * len(sizes)
        self._remaining = len(sizes)
        self._single = single
        self._callback = callback
        self._error_callback = error_callback
        self._event = threading.Event()
        self._value: Any = None
        self._error: Entry | None = None
        if not sizes:
            self._finish()

    def _chunk_done(self, index: int, entries: list) -> bool:
        """Record one chunk (handler thread); True once the whole result is complete."""
        self._chunks[index] = entries
        self._remaining -= 1
        if self._remaining:
            return False
        self._finish()
        return True

    def _finish(self) -> None:
        values = []
        for entries in self._chunks:
            for entry in entries or ():
                if not entry[0]:
                    self._error = entry
                    break
                values.append(entry[1])
            if self._error is not None:
                break
        self._chunks = []
        if self._error is None:
            self._value = values[0] if self._single else values
        callback = self._callback if self._error is None else self._error_callback
        if callback is not None:
            try:
                callback(self._value if self._error is None else self._error[1])
            except Exception:
                logger.exception("a Pool result callback raised")
        self._event.set()

    def ready(self) -> bool:
        """Whether every call of this result has finished."""
        return self._event.is_set()

    def successful(self) -> bool:
        """Whether every call succeeded; ValueError while the result is not ready."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def wait(self, timeout: float | None = None) -> None:
        """Block until ready or `timeout` seconds pass (no error on timeout)."""
        self._event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The value (a list for the map forms); the call's own exception if one failed;
        multiprocessing.TimeoutError if not ready within `timeout` seconds."""
        if not self._event.wait(timeout):
            raise MpTimeoutError
        if self._error is not None:
            raise_entry(self._error)
        return self._value


class IMapIterator:
    """Results of imap (ordered) or imap_unordered, submitting lazily.

    At most one chunk per actor of the pool is in flight: the next chunk of the input goes
    out when a reply comes back, so a long or endless input is never read ahead of the work.
    """

    def __init__(
        self,
        submit: Callable[[Any, list], ObjectRef],
        workers: int,
        func: Any,
        iterable: Any,
        chunksize: int,
        ordered: bool,
    ):
        self._submit = submit  # the pool's: sends one batch of calls to its next actor
        self._func = func
        self._input: Iterator = iter(iterable)
        self._chunksize = chunksize
        self._ordered = ordered
        self._exhausted = False
        self._inflight: dict[ObjectRef, tuple[int, int]] = {}  # ref -> (chunk index, size)
        self._done: dict[int, list] = {}  # ordered: finished chunks not yet reached
        self._next_chunk = 0  # ordered: the chunk whose values come next
        self._submitted = 0
        self._ready: collections.deque = collections.deque()
        for _ in range(workers):
            self._submit_next()

    def _submit_next(self) -> None:
        if self._exhausted:
            return
        chunk = []
        for item in self._input:
            chunk.append(((item,), None))
            if len(chunk) == self._chunksize:
                break
        if len(chunk) < self._chunksize:
            self._exhausted = True
        if chunk:
            ref = self._submit(self._func, chunk)
            self._inflight[ref] = (self._submitted, len(chunk))
            self._submitted += 1

    def __iter__(self) -> IMapIterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
        """The next value; multiprocessing.TimeoutError if none within `timeout` seconds."""
        from skate import _api

        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready:
            if self._ordered and self._next_chunk in self._done:
                self._ready.extend(self._done.pop(self._next_chunk))
                self._next_chunk += 1
                continue
            if not self._inflight:
                raise StopIteration
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = _api.wait(list(self._inflight), num_returns=1, timeout=remaining)
            if not done:
                raise MpTimeoutError
            for ref in done:
                index, size = self._inflight.pop(ref)
                try:
                    entries = _api.get(ref)
                except Exception as exc:
                    entries = [(False, exc, None)] * size
                self._submit_next()
                if self._ordered:
                    self._done[index] = entries
                else:
                    self._ready.extend(entries)
        entry = self._ready.popleft()
        if not entry[0]:
            raise_entry(entry)
        return entry[1]

    __next__ = next
