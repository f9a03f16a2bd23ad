"""The raylet's end of its zygote (`skate.raylet.zygote`): the process that forks workers.

Commands go down its stdin as lines (`fork <worker id> [layout]`, `kill <pid>`), written
without ever blocking the raylet's event loop; its stdout brings back a line per event
(`forked <worker id> <pid>`, `exit <pid> <code>`), which `on_forked` and `on_exit` take.
When the zygote goes away (its pipe breaks, or it exits), `on_gone` is told why: a node
cannot start or stop workers without it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable

from skate._secure_files import open_private_append


class ZygoteLink:
    """Starts the zygote, sends it commands and reads its events (the raylet's I/O loop)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_forked: Callable[[str, int], None],
        on_exit: Callable[[int, str], None],
        on_gone: Callable[[str], None],
    ):
        self.loop = loop
        self.process: subprocess.Popen | None = None
        self._on_forked, self._on_exit, self._on_gone = on_forked, on_exit, on_gone
        self._stdin_fd = -1  # its pipes, once it runs
        self._stdout_fd = -1
        self._in = b""  # a partial line read
        self._out = bytearray()  # commands not written yet
        self._writer = False  # waiting for its stdin to take more

    def start(self, session_dir: str, node_id: str, info: dict) -> None:
        """Start the zygote with the session's details (`info`, in its environment: argv,
        which every user sees in `ps`, keeps only the session directory, by which
        `skate stop` and tests find processes)."""
        log = os.fdopen(
            open_private_append(os.path.join(session_dir, "logs", f"zygote-{node_id[:8]}.err")),
            "ab",
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "skate.raylet.zygote", "--session-dir", session_dir],
            env={**os.environ, "SKATE_ZYGOTE_INFO": json.dumps(info)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        log.close()
        stdin, stdout = self.process.stdin, self.process.stdout
        if stdin is None or stdout is None:
            raise RuntimeError("the zygote was started without its command and reply pipes")
        self._stdin_fd, self._stdout_fd = stdin.fileno(), stdout.fileno()
        os.set_blocking(self._stdout_fd, False)
        os.set_blocking(self._stdin_fd, False)
        self.loop.add_reader(self._stdout_fd, self._on_output)

    def send(self, line: str) -> None:
        """Queue a command; written as the pipe takes it."""
        self._out += line.encode() + b"\n"
        self._flush()

    def stop(self) -> None:
        """Close its stdin (it then stops its workers and exits); kill it past 5 s."""
        if self.process is None:
            return
        if self._writer:
            self._writer = False
            self.loop.remove_writer(self._stdin_fd)
        self._stdin_fd = -1  # closed below: its number may be reused
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def _flush(self) -> None:
        fd = self._stdin_fd
        if fd < 0:  # not started yet, or stopped
            return
        try:
            n = os.write(fd, self._out)
        except BlockingIOError:
            n = 0
        except OSError:
            self._on_gone("the zygote is gone")
            return
        del self._out[:n]
        if self._out and not self._writer:
            self._writer = True
            self.loop.add_writer(fd, self._flush)
        elif not self._out and self._writer:
            self._writer = False
            self.loop.remove_writer(fd)

    def _on_output(self) -> None:
        try:
            chunk = os.read(self._stdout_fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self.loop.remove_reader(self._stdout_fd)
            self._on_gone("the zygote exited")
            return
        self._in += chunk
        *lines, self._in = self._in.split(b"\n")
        for line in lines:
            parts = line.decode().split()
            if parts[:1] == ["forked"]:
                self._on_forked(parts[1], int(parts[2]))
            elif parts[:1] == ["exit"]:
                self._on_exit(int(parts[1]), parts[2])
