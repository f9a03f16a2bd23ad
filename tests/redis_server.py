"""A throwaway redis-server for tests: its own port, no persistence, stopped at the end.

Tests that need Redis skip (saying why) only when no redis-server binary is installed;
.ci/run installs one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

import pytest

NO_REDIS_REASON = "no redis-server binary on PATH (.ci/run installs Debian's redis-server)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, password: str | None = None):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip(NO_REDIS_REASON)
        self.port = _free_port()
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="skate-test-redis-")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", self.dir]
        if password:
            args += ["--requirepass", password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def flush(self) -> None:
        import redis

        redis.Redis(host="127.0.0.1", port=self.port, password=self.password).flushall()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
