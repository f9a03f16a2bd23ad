"""Progress for the command line's long waits (a head starting, a job not yet running).

On a terminal, a spinner with the time waited so far, redrawn in place on stderr and erased
when the wait ends; elsewhere (a log, CI) one line every `every` seconds, so a pipe is not
flooded. A wait shorter than a tick (or than `every`) prints nothing. It runs in a thread of
its own: the wait itself may block the main thread.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, TextIO

SPINNER = "|/-\\"
# Seconds between the lines written when stderr is not a terminal.
EVERY_S = float(os.environ.get("SKATE_PROGRESS_INTERVAL_S", "5"))


class Progress:
    """`with Progress("starting the head node"): ...` shows the wait on stderr."""

    def __init__(
        self,
        message: str,
        stream: TextIO | None = None,
        every: float | None = None,
        tty: bool | None = None,
        tick: float = 0.1,
    ):
        self.message = message
        self.stream = stream if stream is not None else sys.stderr
        self.every = EVERY_S if every is None else every
        self.tty = self._isatty() if tty is None else tty
        self.tick = tick
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0
        self._width = 0

    def _isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed: progress is not worth failing for
            self._done.set()

    def _run(self) -> None:
        n = 0
        while not self._done.wait(self.tick if self.tty else self.every):
            elapsed = time.monotonic() - self._start
            if self.tty:
                line = f"\r{SPINNER[n % len(SPINNER)]} {self.message} ({elapsed:.0f}s)"
                self._width = max(self._width, len(line))
                self._write(line)
            else:
                self._write(f"{self.message}: still waiting ({elapsed:.0f}s)\n")
            n += 1

    def start(self) -> Progress:
        self._start = time.monotonic()  # a quick wait shows nothing at all
        self._thread = threading.Thread(target=self._run, name="skate-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._done.is_set() and self._thread is None:
            return
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.tty and self._width:
            self._write("\r" + " " * self._width + "\r")

    def __enter__(self) -> Progress:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
