"""Identifiers: random prefixes plus counters, so minting one is cheap on the hot path."""

from __future__ import annotations

import itertools
import os

NIL_ID = b"\x00" * 16

# Lengths in bytes of the ids Skate mints (the public ID types in skate._id_types check them).
JOB_ID_BYTES = 4  # a GCS counter, little-endian
NODE_ID_BYTES = 14
WORKER_ID_BYTES = 14
ACTOR_ID_BYTES = 16
TASK_ID_BYTES = 16  # TaskIdFactory: 12 random bytes plus a counter
OBJECT_ID_BYTES = 20  # the task id plus a 4-byte index


def random_id(nbytes: int = 16) -> bytes:
    return os.urandom(nbytes)


class TaskIdFactory:
    """Mints task ids: 12 random bytes per process plus a 4-byte counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(12)
        self._counter = itertools.count(1)

    def next(self) -> bytes:
        return self._prefix + next(self._counter).to_bytes(4, "little")


def object_id_for_return(task_id: bytes, index: int) -> bytes:
    """The id of a task's index-th return value (index counts from 1)."""
    return task_id + index.to_bytes(4, "little")


def object_id_for_put(task_id: bytes, put_index: int) -> bytes:
    """The id of the put_index-th object put by a task (high bit set: never a return)."""
    return task_id + (put_index | 0x80000000).to_bytes(4, "little")


def task_id_of(object_id: bytes) -> bytes:
    return object_id[:16]
