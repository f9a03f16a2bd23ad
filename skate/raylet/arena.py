"""First-fit allocator over one shared-memory region; pure bookkeeping, no I/O.

Freed blocks are coalesced and reused lowest-address first, so a process that writes
objects of similar size keeps landing on pages it has already faulted in (DESIGN.md §5).
"""

from __future__ import annotations

import bisect

from skate._config import ARENA_ALIGNMENT


class Arena:
    def __init__(self, capacity: int, alignment: int = ARENA_ALIGNMENT):
        self.capacity = capacity
        self.alignment = alignment
        self._free_offsets: list[int] = [0]  # sorted offsets of free blocks
        self._free_sizes: dict[int, int] = {0: capacity}
        self._used: dict[int, int] = {}
        self.used_bytes = 0

    def _round(self, size: int) -> int:
        a = self.alignment
        return max(a, (size + a - 1) // a * a)

    def allocate(self, size: int) -> int | None:
        """Offset of a new block of at least `size` bytes, or None if nothing fits."""
        need = self._round(size)
        for i, off in enumerate(self._free_offsets):
            block = self._free_sizes[off]
            if block >= need:
                del self._free_sizes[off]
                if block == need:
                    del self._free_offsets[i]
                else:
                    self._free_offsets[i] = off + need
                    self._free_sizes[off + need] = block - need
                self._used[off] = need
                self.used_bytes += need
                return off
        return None

    def free(self, offset: int) -> None:
        size = self._used.pop(offset)
        self.used_bytes -= size
        i = bisect.bisect_left(self._free_offsets, offset)
        # merge with the following block
        if i < len(self._free_offsets) and self._free_offsets[i] == offset + size:
            nxt = self._free_offsets.pop(i)
            size += self._free_sizes.pop(nxt)
        # merge with the preceding block
        if i > 0:
            prev = self._free_offsets[i - 1]
            if prev + self._free_sizes[prev] == offset:
                self._free_sizes[prev] += size
                return
        self._free_offsets.insert(i, offset)
        self._free_sizes[offset] = size

    def largest_free(self) -> int:
        return max(self._free_sizes.values(), default=0)
