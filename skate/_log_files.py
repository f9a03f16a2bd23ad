"""Log files that cannot fill the disk: rotated by size, a bounded number kept.

Every process of a session writes its logs under `<session>/logs`. A file that passes
`SKATE_LOG_MAX_BYTES` (default 256 MiB) is renamed to `<name>.1` (older ones shift to `.2`, ...,
and beyond `SKATE_LOG_BACKUP_COUNT`, default 3, are deleted) and a fresh 0600 file takes its
place. For a worker's stdout and stderr the new file is also put under file descriptors 1 and 2,
so output written below Python (C extensions, subprocesses) follows it.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import threading

from skate._config import _env_int
from skate._secure_files import open_private_append

LOG_MAX_BYTES = _env_int("SKATE_LOG_MAX_BYTES", 256 * 1024 * 1024)
LOG_BACKUP_COUNT = _env_int("SKATE_LOG_BACKUP_COUNT", 3)


def shift_backups(path: str, backups: int) -> None:
    """path.N-1 -> path.N ... path -> path.1; the oldest beyond `backups` is removed."""
    if backups <= 0:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    for i in range(backups - 1, 0, -1):
        src = f"{path}.{i}"
        if os.path.exists(src):
            os.replace(src, f"{path}.{i + 1}")
    if os.path.exists(path):
        os.replace(path, f"{path}.1")


class RotatingTextFile:
    """A line-buffered text file that rotates itself once it holds `max_bytes`."""

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int = LOG_MAX_BYTES,
        backups: int = LOG_BACKUP_COUNT,
        fd_targets: tuple[int, ...] = (),
    ):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.fd_targets = fd_targets
        self._lock = threading.RLock()  # reentrant: a write can come from a __del__ mid-write
        self._file = self._open()
        self._size = os.fstat(self._file.fileno()).st_size

    def _open(self):
        f = os.fdopen(open_private_append(self.path), "a", buffering=1)
        for fd in self.fd_targets:
            os.dup2(f.fileno(), fd)
        return f

    def write(self, text: str) -> int:
        with self._lock:
            n = self._file.write(text)
            self._size += len(text)
            if self._size >= self.max_bytes:
                self.rotate()
            return n

    def rotate(self) -> None:
        with self._lock:
            self._file.flush()
            shift_backups(self.path, self.backups)
            old = self._file
            self._file = self._open()
            old.close()
            self._size = 0

    def flush(self) -> None:
        self._file.flush()

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler whose files, the first and every rotated one, are 0600."""

    def _open(self):
        return os.fdopen(
            open_private_append(self.baseFilename), "a", encoding=self.encoding, errors=self.errors
        )


def log_to_rotating_file(path: str, level: int) -> None:
    """Send this process's `logging` records to `path`, rotated by size (created 0600)."""
    handler = _PrivateRotatingFileHandler(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUP_COUNT)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
