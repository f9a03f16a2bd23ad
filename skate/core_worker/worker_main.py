"""Entry point of a worker process (forked from the raylet's zygote)."""

from __future__ import annotations

import io
import logging
import os
import sys

from skate.core_worker.core import CoreWorker
from skate.core_worker.executor import Executor


class LogStream(io.TextIOBase):
    """stdout/stderr of a worker: written to its log file and forwarded to the driver by line."""

    def __init__(self, core: CoreWorker, stream: str, file):
        self._core = core
        self._stream = stream
        self._file = file
        self._partial = ""
        self._lines: list[str] = []
        self._name: str | None = None
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
        name = self._core.current_task_name
        if self._lines and name != self._name:
            self._send()
        self._name = name
        self._lines.extend(lines)
        if not self._scheduled:
            self._scheduled = True
            self._core.post(self._send)
        return len(text)

    def flush(self) -> None:
        self._file.flush()

    def _send(self) -> None:
        self._scheduled = False
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        core = self._core
        if core.raylet is not None and not core.raylet.closed and core.job_id:
            core.raylet.notify(
                "worker_log",
                {
                    "job": core.job_id,
                    "pid": os.getpid(),
                    "name": self._name,
                    "stream": self._stream,
                    "lines": lines,
                },
            )


def main(info: dict) -> None:
    logs = os.path.join(info["session_dir"], "logs")
    wid = info["worker_id"][:12]
    out = open(os.path.join(logs, f"worker-{wid}.out"), "a", buffering=1)
    err = open(os.path.join(logs, f"worker-{wid}.err"), "a", buffering=1)
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
