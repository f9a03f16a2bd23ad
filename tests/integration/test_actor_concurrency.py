"""Concurrent actors: async actors, threaded actors, max_concurrency and concurrency groups."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import skate
from tests.integration._helpers import max_overlap


@skate.remote
def slow_value(value, seconds):
    time.sleep(seconds)
    return value


@skate.remote
class AsyncActor:
    def __init__(self):
        self.running = 0
        self.peak = 0

    async def nap(self, seconds, tag=None):
        start = time.time()
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(seconds)
        self.running -= 1
        return tag, start, time.time()

    async def await_ref(self, refs):
        # refs arrive nested in a list, so they stay refs
        return await refs[0]

    async def await_many(self, refs):
        return await asyncio.gather(*refs)

    async def peak_seen(self):
        return self.peak

    def sync_in_async_actor(self):
        return "sync-ok"

    async def raises(self):
        await asyncio.sleep(0)
        raise ValueError("async-boom")


def test_async_actor_runs_calls_concurrently(cluster):
    a = AsyncActor.remote()
    skate.get(a.peak_seen.remote(), timeout=30)  # started
    t0 = time.monotonic()
    results = skate.get([a.nap.remote(0.5, i) for i in range(10)], timeout=30)
    elapsed = time.monotonic() - t0
    assert [r[0] for r in results] == list(range(10))
    assert elapsed < 2.0, elapsed
    assert skate.get(a.peak_seen.remote(), timeout=30) >= 5
    assert skate.get(a.sync_in_async_actor.remote(), timeout=30) == "sync-ok"


def test_await_object_refs_inside_async_methods(cluster):
    a = AsyncActor.remote()
    slow = slow_value.remote("awaited", 0.5)
    assert skate.get(a.await_ref.remote([slow]), timeout=30) == "awaited"
    refs = [skate.put(1), slow_value.remote(2, 0.2), skate.put(3)]
    assert skate.get(a.await_many.remote(refs), timeout=30) == [1, 2, 3]
    # a call on another actor, awaited from an async method
    other = AsyncActor.remote()
    inner = other.nap.remote(0.1, "inner")
    tag, _, _ = skate.get(a.await_ref.remote([inner]), timeout=30)
    assert tag == "inner"


def test_async_method_error_keeps_the_actor(cluster):
    a = AsyncActor.remote()
    with pytest.raises(ValueError, match="async-boom"):
        skate.get(a.raises.remote(), timeout=30)
    assert skate.get(a.sync_in_async_actor.remote(), timeout=30) == "sync-ok"


def test_async_actor_max_concurrency_bounds_parallelism(cluster):
    a = AsyncActor.options(max_concurrency=2).remote()
    skate.get(a.peak_seen.remote(), timeout=30)
    t0 = time.monotonic()
    results = skate.get([a.nap.remote(0.5, i) for i in range(4)], timeout=30)
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.95, elapsed  # two rounds at least
    assert max_overlap([(s, e) for _, s, e in results]) <= 2
    assert skate.get(a.peak_seen.remote(), timeout=30) == 2


@skate.remote
class Threaded:
    def __init__(self):
        self.lock = threading.Lock()
        self.threads = set()

    def nap(self, seconds):
        start = time.time()
        with self.lock:
            self.threads.add(threading.get_ident())
        time.sleep(seconds)
        return start, time.time()

    def thread_count(self):
        return len(self.threads)

    @skate.method(concurrency_group="io")
    def io(self, seconds):
        start = time.time()
        time.sleep(seconds)
        return start, time.time()

    @skate.method(concurrency_group="compute")
    def compute(self, seconds):
        start = time.time()
        time.sleep(seconds)
        return start, time.time()


def test_threaded_actor_runs_sync_methods_in_parallel(cluster):
    a = Threaded.options(max_concurrency=4).remote()
    skate.get(a.thread_count.remote(), timeout=30)
    t0 = time.monotonic()
    spans = skate.get([a.nap.remote(0.5) for _ in range(4)], timeout=30)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.5, elapsed
    assert max_overlap(spans) >= 3
    assert skate.get(a.thread_count.remote(), timeout=30) >= 3


def test_default_sync_actor_runs_one_call_at_a_time(cluster):
    a = Threaded.remote()
    spans = skate.get([a.nap.remote(0.2) for _ in range(3)], timeout=30)
    assert max_overlap(spans) == 1
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(2))


def test_concurrency_groups_limit_separately(cluster):
    a = Threaded.options(concurrency_groups={"io": 2, "compute": 1}).remote()
    skate.get(a.thread_count.remote(), timeout=30)
    io_refs = [a.io.remote(0.5) for _ in range(4)]
    compute_refs = [a.compute.remote(0.3) for _ in range(3)]
    io_spans = skate.get(io_refs, timeout=30)
    compute_spans = skate.get(compute_refs, timeout=30)
    assert max_overlap(io_spans) == 2
    assert max_overlap(compute_spans) == 1
    # the groups do not wait for each other: compute ran while io calls were running
    assert max_overlap(io_spans + compute_spans) >= 3
    # a method can be moved to another group per call
    spans = skate.get([a.nap.options(concurrency_group="io").remote(0.3) for _ in range(2)], timeout=30)
    assert max_overlap(spans) == 2


@skate.remote(concurrency_groups={"io": 2, "compute": 1})
class AsyncGroups:
    @skate.method(concurrency_group="io")
    async def io(self, seconds):
        start = time.time()
        await asyncio.sleep(seconds)
        return start, time.time()

    @skate.method(concurrency_group="compute")
    async def compute(self, seconds):
        start = time.time()
        await asyncio.sleep(seconds)
        return start, time.time()

    async def default(self, seconds):
        start = time.time()
        await asyncio.sleep(seconds)
        return start, time.time()


def test_async_concurrency_groups(cluster):
    a = AsyncGroups.remote()
    io_refs = [a.io.remote(0.4) for _ in range(4)]
    compute_refs = [a.compute.remote(0.3) for _ in range(2)]
    default_refs = [a.default.remote(0.3) for _ in range(5)]
    io_spans = skate.get(io_refs, timeout=30)
    compute_spans = skate.get(compute_refs, timeout=30)
    default_spans = skate.get(default_refs, timeout=30)
    assert max_overlap(io_spans) == 2
    assert max_overlap(compute_spans) == 1
    assert max_overlap(default_spans) >= 4  # the default group keeps async concurrency


@skate.remote
class SelfCaller:
    def __init__(self):
        self.hits = 0

    async def hit(self):
        self.hits += 1
        return self.hits

    async def call_self(self, n):
        me = skate.get_runtime_context().current_actor
        return await asyncio.gather(*[me.hit.remote() for _ in range(n)])


def test_async_actor_can_await_calls_to_itself(cluster):
    a = SelfCaller.remote()
    assert sorted(skate.get(a.call_self.remote(3), timeout=30)) == [1, 2, 3]
    assert skate.get(a.hit.remote(), timeout=30) == 4
