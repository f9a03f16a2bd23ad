"""Driver-side helpers shared by the integration tests (never referenced from remote code)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05) -> object:
    """Poll `predicate` until it returns something truthy; return that, or the last falsy value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def in_threads(work: Callable[[int], None], count: int, timeout: float = 60.0) -> list[BaseException]:
    """Run work(0) .. work(count - 1) on threads of their own at once; the exceptions they
    raised (an empty list when all ended well)."""
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            work(k)
        except BaseException as exc:  # reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return errors


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals that are open at one instant."""
    events = []
    for start, end in intervals:
        events.append((start, 1))
        events.append((end, -1))
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    best = cur = 0
    for _, delta in events:
        cur += delta
        best = max(best, cur)
    return best


def read_counter(path: str) -> int:
    """How many lines a task appended to `path` (one line per attempt)."""
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return len(f.read().splitlines())


class Tap(io.TextIOBase):
    """A thread-safe text sink that keeps everything written to it (never truncated on read).

    pytest's capfd.readouterr() truncates its capture file, which races with the driver's
    I/O thread printing worker output at the same moment, so polling it loses lines.
    """

    def __init__(self, encoding: str = "utf-8"):
        super().__init__()
        self._lock = threading.Lock()
        self._parts: list[str] = []
        self._encoding = encoding

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def getvalue(self) -> str:
        with self._lock:
            return "".join(self._parts)


@contextlib.contextmanager
def tapped_std_streams():
    """Replace sys.stdout and sys.stderr with Taps for the duration; yields (out, err)."""
    out, err = Tap(), Tap()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        yield out, err
    finally:
        sys.stdout, sys.stderr = saved
