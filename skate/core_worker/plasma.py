"""A process's view of its node's shared-memory store: the arena mapped once.

Reads hand out read-only views whose lifetime pins the object: when the last view
(and every numpy array built on it) is gone, a release is sent to the raylet.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import weakref
from collections.abc import Callable


class ArenaMapping:
    def __init__(self, path: str, capacity: int):
        self.path = path
        self.capacity = capacity
        fd = os.open(path, os.O_RDWR)
        try:
            self._mmap = mmap.mmap(fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._view = memoryview(self._mmap)

    def writable(self, offset: int, size: int) -> memoryview:
        return self._view[offset : offset + size]

    def pinned_view(self, offset: int, size: int, on_release: Callable[[], None]) -> memoryview:
        """A read-only view; `on_release` runs once nothing refers to the memory any more."""
        holder = (ctypes.c_char * size).from_buffer(self._mmap, offset)
        weakref.finalize(holder, on_release)
        return memoryview(holder).cast("B").toreadonly()

    def close(self) -> None:
        try:
            self._view.release()
            self._mmap.close()
        except (BufferError, ValueError):
            pass  # views still exported; the mapping goes with the process


def arena_path(session_dir: str, node_id: str) -> str:
    """The node's shared-memory file: /dev/shm/skate-<tag of the temp root>-<node>.

    The tag lets a test run (or an operator) find the files of its own clusters only.
    """
    root = os.path.dirname(os.path.abspath(session_dir))
    tag = hashlib.sha1(root.encode()).hexdigest()[:8]
    shm_dir = "/dev/shm" if os.path.isdir("/dev/shm") else session_dir
    return os.path.join(shm_dir, f"skate-{tag}-{node_id[:16]}")


def create_arena_file(path: str, capacity: int) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, capacity)
    finally:
        os.close(fd)
