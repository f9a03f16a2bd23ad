"""The first-fit arena allocator: pure bookkeeping."""

from __future__ import annotations

import random

from skate.raylet.arena import Arena


def _rounded(size: int, alignment: int = 64) -> int:
    return max(alignment, -(-size // alignment) * alignment)


def test_offsets_and_sizes_are_aligned():
    arena = Arena(4096, alignment=64)
    offsets = [arena.allocate(n) for n in (1, 63, 64, 65, 100, 0)]
    assert offsets == [0, 64, 128, 192, 320, 448]
    assert all(off % 64 == 0 for off in offsets)
    # 1, 63, 64 -> 64 each; 65 and 100 -> 128 each; 0 -> still one aligned unit
    assert arena.used_bytes == 64 * 3 + 128 * 2 + 64


def test_default_alignment_is_64():
    arena = Arena(1 << 16)
    a = arena.allocate(10)
    b = arena.allocate(10)
    assert b - a == 64


def test_used_bytes_tracks_allocations_and_frees():
    arena = Arena(1024, alignment=64)
    assert arena.used_bytes == 0
    a = arena.allocate(100)  # 128
    b = arena.allocate(64)  # 64
    assert arena.used_bytes == 192
    arena.free(a)
    assert arena.used_bytes == 64
    arena.free(b)
    assert arena.used_bytes == 0
    assert arena.largest_free() == 1024


def test_freed_block_is_reused_first_fit():
    arena = Arena(1024, alignment=64)
    a = arena.allocate(128)
    b = arena.allocate(128)
    arena.free(a)
    assert arena.allocate(128) == a
    # A smaller request also lands in the lowest free block.
    arena.free(a)
    assert arena.allocate(64) == a
    assert arena.allocate(64) == a + 64
    assert arena.allocate(64) == b + 128


def test_lowest_address_free_block_wins():
    arena = Arena(1024, alignment=64)
    blocks = [arena.allocate(64) for _ in range(6)]
    arena.free(blocks[4])
    arena.free(blocks[1])
    assert arena.allocate(64) == blocks[1]
    assert arena.allocate(64) == blocks[4]


def test_too_small_hole_is_skipped():
    arena = Arena(1024, alignment=64)
    a = arena.allocate(64)
    arena.allocate(64)
    arena.free(a)
    off = arena.allocate(128)
    assert off == 128  # the 64-byte hole at 0 cannot hold 128 bytes
    assert arena.allocate(64) == 0


def test_coalescing_free_middle_then_sides():
    arena = Arena(3 * 64, alignment=64)
    a, b, c = (arena.allocate(64) for _ in range(3))
    assert arena.largest_free() == 0
    arena.free(b)
    assert arena.largest_free() == 64
    arena.free(a)
    assert arena.largest_free() == 128
    arena.free(c)
    assert arena.largest_free() == 3 * 64
    assert arena.allocate(3 * 64) == 0


def test_coalescing_with_free_tail():
    arena = Arena(1024, alignment=64)
    a = arena.allocate(256)
    b = arena.allocate(256)
    arena.free(b)  # merges with the free tail
    assert arena.largest_free() == 1024 - 256
    arena.free(a)
    assert arena.largest_free() == 1024
    assert arena.allocate(1024) == 0


def test_coalescing_sides_then_middle():
    arena = Arena(5 * 64, alignment=64)
    blocks = [arena.allocate(64) for _ in range(5)]
    for i in (0, 2, 4):
        arena.free(blocks[i])
    assert arena.largest_free() == 64
    arena.free(blocks[1])
    assert arena.largest_free() == 3 * 64
    arena.free(blocks[3])
    assert arena.largest_free() == 5 * 64


def test_none_when_full():
    arena = Arena(256, alignment=64)
    assert [arena.allocate(64) for _ in range(4)] == [0, 64, 128, 192]
    assert arena.allocate(1) is None
    assert arena.used_bytes == 256
    assert arena.largest_free() == 0


def test_none_when_request_exceeds_capacity():
    arena = Arena(256, alignment=64)
    assert arena.allocate(257) is None
    assert arena.used_bytes == 0
    assert arena.largest_free() == 256


def test_none_when_fragmented():
    arena = Arena(256, alignment=64)
    blocks = [arena.allocate(64) for _ in range(4)]
    arena.free(blocks[0])
    arena.free(blocks[2])
    assert arena.used_bytes == 128
    assert arena.allocate(128) is None  # 128 bytes free, but not in one piece


def test_random_alloc_free_never_overlaps():
    rng = random.Random(1234)
    capacity = 64 * 1024
    arena = Arena(capacity, alignment=64)
    live: dict[int, int] = {}  # offset -> requested size
    for _ in range(3000):
        if live and (rng.random() < 0.45 or len(live) > 200):
            off = rng.choice(list(live))
            del live[off]
            arena.free(off)
        else:
            size = rng.choice([1, 63, 64, 65, 500, 4096, rng.randint(1, 3000)])
            off = arena.allocate(size)
            if off is None:
                assert arena.largest_free() < _rounded(size)
                continue
            assert off % 64 == 0
            assert off + size <= capacity
            live[off] = size
        spans = sorted((o, o + _rounded(s)) for o, s in live.items())
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end <= start, "live blocks overlap"
        assert arena.used_bytes == sum(_rounded(s) for s in live.values())
        assert arena.used_bytes + sum(arena._free_sizes.values()) == capacity
    for off in list(live):
        arena.free(off)
    assert arena.used_bytes == 0
    assert arena.largest_free() == capacity
