"""Entry point of a worker process (forked from the raylet's zygote)."""

from __future__ import annotations

import atexit
import collections
import io
import logging
import os
import sys

from skate._secure_files import open_private_append
from skate.core_worker import call_context
from skate.core_worker.core import CoreWorker
from skate.core_worker.executor import Executor


class LogStream(io.TextIOBase):
    """stdout/stderr of a worker: written to its log file and forwarded to the driver by line.

    `write` runs on any user thread; the lines are queued and the I/O loop sends them (the
    only thread that may write to the raylet's connection), grouped by the call that printed.
    """

    def __init__(self, core: CoreWorker, stream: str, file):
        self._core = core
        self._stream = stream
        self._file = file
        self._partial = ""
        self._lines: collections.deque[tuple[str | None, str]] = collections.deque()
        self._scheduled = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._file.write(text)
        data = self._partial + text
        if "\n" not in data:
            self._partial = data
            return len(text)
        *lines, self._partial = data.split("\n")
        name = call_context.current_task_name()
        self._lines.extend((name, line) for line in lines)
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
        groups: list[tuple[str | None, list[str]]] = []
        while self._lines:
            name, line = self._lines.popleft()
            if groups and groups[-1][0] == name:
                groups[-1][1].append(line)
            else:
                groups.append((name, [line]))
        for name, lines in groups:
            core.raylet.notify(
                "worker_log",
                {
                    "job": core.job_id,
                    "pid": os.getpid(),
                    "name": name,
                    "stream": self._stream,
                    "lines": lines,
                },
            )


def main(info: dict) -> None:
    logs = os.path.join(info["session_dir"], "logs")
    wid = info["worker_id"][:12]
    out = os.fdopen(open_private_append(os.path.join(logs, f"worker-{wid}.out")), "a", buffering=1)
    err = os.fdopen(open_private_append(os.path.join(logs, f"worker-{wid}.err")), "a", buffering=1)
    os.close(open_private_append(os.path.join(logs, f"worker-{wid}.log")))  # 0600 before logging opens it
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    logging.basicConfig(
        filename=os.path.join(logs, f"worker-{wid}.log"),
        level=info.get("logging_level", logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    core = CoreWorker(info, "worker")
    executor = Executor(core)  # its handlers exist before the raylet can lease us out
    core.start()
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
