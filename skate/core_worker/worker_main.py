"""Entry point of a worker process (forked from the raylet's zygote)."""

from __future__ import annotations

import asyncio
import atexit
import collections
import io
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from skate import _config, _gc_tuning
from skate._log_files import RotatingTextFile, log_to_rotating_file
from skate.core_worker import call_context
from skate.core_worker.core import CoreWorker
from skate.core_worker.executor import Executor
from skate.core_worker.log_budget import LogBudget, dropped_notice


class LogStream(io.TextIOBase):
    """stdout/stderr of a worker: written to its log file and forwarded to the driver by line.

    `write` runs on any user thread; the lines are queued and the I/O loop sends them (the
    only thread that may write to the raylet's connection), grouped by the call that printed.
    Forwarding is bounded: at most LOG_LINES_PER_SECOND lines (bursts up to LOG_LINES_BURST),
    lines cut at MAX_LOG_LINE_CHARS, and a bounded queue; what is not forwarded is counted and
    the driver told so (the log file keeps everything).
    """

    def __init__(self, core: Any, stream: str, file, *, clock: Callable[[], float] = time.monotonic):
        self._core = core
        self._stream = stream
        self._file = file
        self._partial = ""
        self._lines: collections.deque[tuple[str | None, str]] = collections.deque()
        self._scheduled = False
        self._clock = clock
        self._budget = LogBudget(_config.LOG_LINES_PER_SECOND, _config.LOG_LINES_BURST, clock())
        self._queue_dropped = 0  # lines refused because the queue was full
        self._notice_scheduled = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._file.write(text)
        cap = _config.MAX_LOG_LINE_CHARS
        data = self._partial + text
        if "\n" not in data:
            self._partial = data if len(data) <= cap else data[:cap]  # the file has the rest
            return len(text)
        *lines, partial = data.split("\n")
        self._partial = partial[:cap]
        name = call_context.current_task_name()
        room = max(0, _config.LOG_LINES_BURST - len(self._lines))
        if len(lines) > room:
            self._queue_dropped += len(lines) - room
            lines = lines[:room]
        self._lines.extend((name, line if len(line) <= cap else line[:cap] + " [line cut]") for line in lines)
        if not self._scheduled:
            self._scheduled = True
            self._core.post(self._send)
        return len(text)

    def flush(self) -> None:
        self._file.flush()

    def _send(self) -> None:
        """I/O thread: forward the queued lines, one message per run of lines from one call."""
        self._scheduled = False
        core = self._core
        if core.raylet is None or core.raylet.closed or not core.job_id:
            self._lines.clear()
            return
        queued = len(self._lines)
        allowed = self._budget.admit(queued, self._clock())
        groups: list[tuple[str | None, list[str]]] = []
        for _ in range(allowed):
            name, line = self._lines.popleft()
            if groups and groups[-1][0] == name:
                groups[-1][1].append(line)
            else:
                groups.append((name, [line]))
        self._lines.clear()  # over the budget: counted in the LogBudget
        for name, lines in groups:
            self._notify(name, lines)
        if (self._budget.dropped or self._queue_dropped) and not self._notice_scheduled:
            self._notice_scheduled = True
            asyncio.get_running_loop().call_later(1.0, self._send_notice)

    def _send_notice(self) -> None:
        """I/O thread: tell the driver how many lines it did not get, once there is budget."""
        self._notice_scheduled = False
        core = self._core
        if core.raylet is None or core.raylet.closed or not core.job_id:
            return
        if not self._budget.admit(1, self._clock()):
            self._notice_scheduled = True
            asyncio.get_running_loop().call_later(1.0, self._send_notice)
            return
        count = self._budget.take_dropped() + self._queue_dropped
        self._queue_dropped = 0
        where = getattr(self._file, "name", "the worker's log file")
        self._notify(None, [dropped_notice(count, self._budget.rate, str(where))])

    def _notify(self, name: str | None, lines: list[str]) -> None:
        self._core.raylet.notify(
            "worker_log",
            {
                "job": self._core.job_id,
                "pid": os.getpid(),
                "name": name,
                "stream": self._stream,
                "lines": lines,
            },
        )


def main(info: dict) -> None:
    logs = os.path.join(info["session_dir"], "logs")
    wid = info["worker_id"][:12]
    # Rotated by size (skate._log_files); descriptors 1 and 2 follow each new file.
    out = RotatingTextFile(os.path.join(logs, f"worker-{wid}.out"), fd_targets=(1,))
    err = RotatingTextFile(os.path.join(logs, f"worker-{wid}.err"), fd_targets=(2,))
    log_to_rotating_file(os.path.join(logs, f"worker-{wid}.log"), info.get("logging_level", logging.INFO))
    core = CoreWorker(info, "worker")
    executor = Executor(core)  # its handlers exist before the raylet can lease us out
    core.start()
    _gc_tuning.tune(own_process=True)
    sys.stdout = LogStream(core, "out", out)
    sys.stderr = LogStream(core, "err", err)
    executor.run_forever()
    # The actor exited (exit_actor): send its last reply, run the program's atexit handlers
    # while their output can still reach the driver, then leave.
    core.flush()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    core.flush()
    core.stop()
