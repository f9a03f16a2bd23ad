"""How values cross the client's wire: small ones inline, large ones streamed in chunks.

A value is pickled once (protocol 5) into an in-band part and out-of-band buffers. Under
INLINE_BYTES in all it travels in the message itself as {"i": inband, "b": [buffers]};
otherwise the sender keeps the parts under a transfer id and the receiver moves them in
CHUNK_BYTES pieces (a few in flight at once), so no frame comes near the frame limit and
there is no size cap but the object store's.
"""

from __future__ import annotations

import pickle
from typing import Any

from skate._serialization import SerializedObject

INLINE_BYTES = 4 * 1024 * 1024
CHUNK_BYTES = 8 * 1024 * 1024
WINDOW = 4  # chunk requests in flight at once


def parts_of(sobj: SerializedObject) -> list[memoryview]:
    """The in-band part then every out-of-band buffer, as flat byte views."""
    out = [memoryview(sobj.inband)]
    for b in sobj.buffers:
        view = memoryview(b)
        out.append(view.cast("B") if view.format != "B" or view.ndim != 1 else view)
    return out


def inline_form(parts: list[memoryview]) -> dict:
    """The message form of a small value (copies: the parts may be views of shared memory)."""
    return {"i": bytes(parts[0]), "b": [bytes(p) for p in parts[1:]]}


def chunk_plan(sizes: list[int], chunk: int = CHUNK_BYTES) -> list[tuple[int, int, int]]:
    """(part, offset, length) of every chunk needed to move parts of these sizes."""
    plan = []
    for i, size in enumerate(sizes):
        for off in range(0, size, chunk):
            plan.append((i, off, min(chunk, size - off)))
    return plan


class Assembly:
    """Parts being received chunk by chunk, written into preallocated buffers."""

    def __init__(self, sizes: list[int], parts: list | None = None, put: bytes | None = None):
        self.sizes = list(sizes)
        # Views of the object store's room for a put (`put` is its id), or memory of our own.
        self.parts = parts if parts is not None else [bytearray(n) for n in sizes]
        self.put = put
        self.received = 0
        self.total = sum(sizes)

    def write(self, part: int, offset: int, data: bytes) -> None:
        if not 0 <= part < len(self.parts) or offset < 0 or offset + len(data) > self.sizes[part]:
            raise ValueError(f"chunk out of range: part {part}, offset {offset}, {len(data)} bytes")
        self.parts[part][offset : offset + len(data)] = data
        self.received += len(data)

    @property
    def complete(self) -> bool:
        return self.received >= self.total


def load(inband: Any, buffers: list) -> Any:
    """Unpickle a value from its parts (buffers are used in place, no copy)."""
    return pickle.loads(inband, buffers=buffers)
