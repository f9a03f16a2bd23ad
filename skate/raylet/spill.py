"""Spilling objects to disk and restoring them: the I/O around ObjectStore's spill state.

When an allocation does not fit, the least recently used unpinned objects are written,
several to one file, straight from shared memory (no intermediate copy), and their memory
is given back. A read of a spilled object restores it, spilling others if needed. File
I/O runs on one thread so the raylet keeps serving; allocations that need room queue on
one lock so two of them never fight over the same freed bytes. A spill file is deleted
when the last object in it is freed.

Each raylet spills into a directory of its own (`make_spill_dir`), created 0700 and
exclusively, so raylets sharing a configured spill directory never see each other's files;
files are created 0600 with O_EXCL|O_NOFOLLOW, so a planted file or link is never written
through, and a spill path that is a symbolic link is refused.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor

from skate._secure_files import check_private
from skate.core_worker.plasma import ArenaMapping
from skate.exceptions import ObjectStoreFullError, UnsafePathError
from skate.raylet.object_store import ObjectStore

logger = logging.getLogger("skate.raylet.spill")

MIN_SPILL_BATCH = 64 * 1024 * 1024  # spill at least this much per round: fewer, larger files


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def make_spill_dir(base: str, name: str) -> str:
    """Create this raylet's own spill directory `base/name` (0700, and it must not exist yet).

    `base` may be shared by several raylets (a configured spill directory); it is created if
    missing but refused if it is a symbolic link or not a directory.
    """
    if os.path.islink(base):
        raise UnsafePathError(
            f"the spill directory {base} is a symbolic link; give its real path (Skate does not spill "
            "through links, which another user could point elsewhere)"
        )
    os.makedirs(base, mode=0o700, exist_ok=True)
    if not stat.S_ISDIR(os.lstat(base).st_mode):
        raise UnsafePathError(f"the spill directory {base} is not a directory")
    path = os.path.join(base, name)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        raise UnsafePathError(
            f"{path} already exists: another raylet (or user) is using this node's spill directory; refusing "
            "to share it"
        ) from None
    check_private(path, os.lstat(path))
    return path


class SpillManager:
    def __init__(self, store: ObjectStore, mapping: ArenaMapping, directory: str, limit_bytes: int | None):
        self.store = store
        self.mapping = mapping
        self.directory = directory
        self.limit_bytes = limit_bytes
        self.file_refs: dict[str, int] = {}
        self.file_sizes: dict[str, int] = {}
        self.disk_bytes = 0
        self._names = itertools.count(1)
        self._lock = asyncio.Lock()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skate-spill")
        self._restoring: dict[bytes, asyncio.Future] = {}

    async def create(self, object_id: bytes, size: int, owner: str) -> int:
        """Allocate an object, spilling others first when the store is full."""
        try:
            return self.store.create(object_id, size, owner)
        except ObjectStoreFullError:
            if size > self.store.capacity:
                raise
        async with self._lock:
            while True:
                try:
                    return self.store.create(object_id, size, owner)
                except ObjectStoreFullError:
                    await self._spill(size, exclude=None)

    async def ensure_in_memory(self, object_id: bytes) -> None:
        """Bring a spilled object back into memory (one restore per object at a time)."""
        if self.store.status(object_id) != "spilled":
            return
        fut = self._restoring.get(object_id)
        if fut is None:
            fut = asyncio.ensure_future(self._restore(object_id))
            self._restoring[object_id] = fut
            fut.add_done_callback(lambda _f: self._restoring.pop(object_id, None))
        await asyncio.shield(fut)

    async def _restore(self, object_id: bytes) -> None:
        async with self._lock:
            if self.store.status(object_id) != "spilled":
                return
            while True:
                try:
                    offset = self.store.restore_allocate(object_id)
                    break
                except ObjectStoreFullError:
                    await self._spill(self.store.objects[object_id].size, exclude=object_id)
            obj = self.store.objects[object_id]
            if obj.spilled is None:  # status "spilled" means it is on disk
                raise RuntimeError(f"object {object_id.hex()} is marked spilled but has no spill file")
            path, file_offset = obj.spilled
            view = self.mapping.writable(offset, obj.size)
            await asyncio.get_running_loop().run_in_executor(self._io, _read_into, path, file_offset, view)
            self.store.restored(object_id, offset)

    async def _spill(self, need: int, exclude: bytes | None) -> None:
        """Free at least some memory by spilling; raises ObjectStoreFullError if nothing can go."""
        store = self.store
        if store.evict_secondary(need):  # copies from other nodes go first: no write needed
            return
        victims = store.spill_candidates(max(need, MIN_SPILL_BATCH), exclude)
        if not victims:
            raise ObjectStoreFullError(
                f"the object store is full ({store.used_bytes} of {store.capacity} bytes in use) and every "
                f"object in it is in use, so nothing can be spilled to make room for {need} bytes"
            )
        to_write = []
        for oid in victims:
            on_disk = store.objects[oid].spilled
            if on_disk is None:
                to_write.append(oid)
            else:  # already on disk: only the memory goes
                self._release_files(store.spilled_to(oid, on_disk[0], 0, wrote=False))
        if not to_write:
            return
        total = sum(store.objects[oid].size for oid in to_write)
        self._check_disk(total)
        path = os.path.join(self.directory, f"spill-{next(self._names)}.bin")
        items = []
        for oid in to_write:
            offset, size = store.pin_for_spill(oid)
            items.append((oid, offset, size))
        try:
            offsets = await asyncio.get_running_loop().run_in_executor(
                self._io, _write_objects, path, [self.mapping.writable(o, s) for _, o, s in items]
            )
        except OSError as exc:
            for oid, _, _ in items:
                self._release_files(store.cancel_spill(oid))
            raise ObjectStoreFullError(f"spilling to {self.directory} failed: {exc}") from None
        self.file_refs[path] = len(items)
        self.file_sizes[path] = total
        self.disk_bytes += total
        logger.info("spilled %d objects (%d bytes) to %s", len(items), total, path)
        for (oid, _, _), file_offset in zip(items, offsets):
            self._release_files(store.spilled_to(oid, path, file_offset, wrote=True))

    def _check_disk(self, nbytes: int) -> None:
        if self.limit_bytes is not None and self.disk_bytes + nbytes > self.limit_bytes:
            raise ObjectStoreFullError(
                f"cannot spill {nbytes} more bytes: the spill limit of {self.limit_bytes} bytes is reached "
                f"({self.disk_bytes} bytes spilled in {self.directory})"
            )
        usage = shutil.disk_usage(self.directory)
        if usage.free - nbytes < 0.05 * usage.total:
            raise ObjectStoreFullError(
                f"cannot spill {nbytes} bytes: the disk holding {self.directory} would be over 95% full"
            )

    def release_files(self, paths: list[str]) -> None:
        self._release_files(paths)

    def _release_files(self, paths: list[str]) -> None:
        for path in paths:
            n = self.file_refs.get(path, 0) - 1
            if n > 0:
                self.file_refs[path] = n
                continue
            self.file_refs.pop(path, None)
            self.disk_bytes -= self.file_sizes.pop(path, 0)
            try:
                os.unlink(path)
            except OSError:
                pass

    def close(self) -> None:
        """Delete this raylet's spill files (and the directory, if nothing else is in it)."""
        self._io.shutdown(wait=False)
        for path in list(self.file_refs):
            try:
                os.unlink(path)
            except OSError:
                pass
        self.file_refs.clear()
        try:
            os.rmdir(self.directory)  # this raylet's own subdirectory; a shared base stays
        except OSError:
            pass


def _write_objects(path: str, views: list[memoryview]) -> list[int]:
    offsets = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        pos = 0
        for view in views:
            offsets.append(pos)
            f.write(view)
            pos += len(view)
    return offsets


def _read_into(path: str, file_offset: int, view: memoryview) -> None:
    with os.fdopen(os.open(path, os.O_RDONLY | _NOFOLLOW), "rb") as f:
        f.seek(file_offset)
        got = f.readinto(view)
    if got != len(view):
        raise OSError(f"spill file {path} is short: read {got} of {len(view)} bytes")
