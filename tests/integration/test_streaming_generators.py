"""Generator tasks: num_returns="streaming" (ObjectRefGenerator) and "dynamic", as Ray 2.x has them.

Producers tell the test how far they got by appending a line per item to a file (read with
`read_counter`), so the tests wait on conditions, not on time.
"""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np
import pytest

import skate
from skate.exceptions import TaskCancelledError
from skate.util import state
from tests.integration import _cluster_helpers
from tests.integration._cluster_helpers import node_args
from tests.integration._helpers import read_counter, wait_for

multinode = _cluster_helpers.multinode  # the fixture

MIB = 1024 * 1024


@skate.remote
def count_to(n):
    yield from range(n)


@skate.remote
def logged(n, path, delay=0.0):
    """Yield n items, appending a line to `path` before each."""
    for i in range(n):
        with open(path, "a") as f:
            f.write(f"{i}\n")
        if delay:
            time.sleep(delay)
        yield i


@skate.remote
def big_items(n, done_path=None):
    for i in range(n):
        yield np.full(MIB // 8, i, dtype=np.int64)
    while done_path is not None and not os.path.exists(done_path):
        time.sleep(0.02)


@skate.remote
def fails_after(n):
    yield from range(n)
    raise ValueError(f"failed after {n} items")


def _store_objects() -> int:
    return sum(s["num_objects"] for s in state.object_store_stats())


# -- the basics ---------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_generator_function_streams_by_default(cluster):
    gen = count_to.remote(5)
    assert isinstance(gen, skate.ObjectRefGenerator)
    refs = list(gen)
    assert all(isinstance(r, skate.ObjectRef) for r in refs)
    assert skate.get(refs) == [0, 1, 2, 3, 4]
    with pytest.raises(StopIteration):
        next(gen)
    assert gen.is_finished()
    assert skate.get(gen.completed()) is None


@pytest.mark.timeout(60)
def test_explicit_streaming_and_options(cluster):
    gen = count_to.options(num_returns="streaming").remote(3)
    assert [skate.get(r) for r in gen] == [0, 1, 2]
    with pytest.raises(ValueError, match="num_returns"):
        count_to.options(num_returns="lots")


@pytest.mark.timeout(60)
def test_items_are_usable_before_the_task_finishes(cluster, tmp_path):
    done = str(tmp_path / "done")
    gen = big_items.remote(2, done)
    first = next(gen)
    assert skate.get(first)[0] == 0  # the task is still waiting for `done`
    assert not gen.is_finished()
    ready, _ = skate.wait([gen.completed()], timeout=0.2)
    assert ready == []
    assert int(skate.get(next(gen))[0]) == 1
    open(done, "w").close()
    with pytest.raises(StopIteration):
        next(gen)
    assert gen.is_finished()


@pytest.mark.timeout(60)
def test_error_mid_stream_surfaces_at_the_item_where_it_happened(cluster):
    gen = fails_after.remote(2)
    assert skate.get(next(gen)) == 0
    assert skate.get(next(gen)) == 1
    err_ref = next(gen)
    with pytest.raises(ValueError, match="failed after 2 items"):
        skate.get(err_ref)
    with pytest.raises(StopIteration):
        next(gen)
    assert gen.is_finished()
    with pytest.raises(ValueError):
        skate.get(gen.completed())


@pytest.mark.timeout(60)
def test_a_non_generator_with_streaming_fails_at_the_first_item(cluster):
    @skate.remote(num_returns="streaming")
    def plain():
        return 1

    gen = plain.remote()
    with pytest.raises(TypeError, match="not a generator"):
        skate.get(next(gen))


@pytest.mark.timeout(60)
def test_generator_cannot_be_passed_to_a_task(cluster):
    @skate.remote
    def take(g):
        return 1

    gen = count_to.remote(1)
    with pytest.raises(TypeError, match="cannot be serialized"):
        take.remote(gen)
    assert [skate.get(r) for r in gen] == [0]


@pytest.mark.timeout(60)
def test_async_iteration(cluster):
    async def consume():
        out = []
        async for ref in count_to.remote(4):
            out.append(await ref)
        return out

    assert asyncio.run(consume()) == [0, 1, 2, 3]


# -- actors ----------------------------------------------------------------------------------------
@skate.remote
class SyncProducer:
    def items(self, n):
        for i in range(n):
            yield i * 10

    def fails(self):
        yield "first"
        raise KeyError("actor failed")


@skate.remote
class AsyncProducer:
    async def items(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i * 100

    async def ping(self):
        return "pong"


@pytest.mark.timeout(60)
def test_sync_actor_method_generator(cluster):
    a = SyncProducer.remote()
    gen = a.items.remote(4)
    assert isinstance(gen, skate.ObjectRefGenerator)
    assert [skate.get(r) for r in gen] == [0, 10, 20, 30]
    gen = a.fails.remote()
    assert skate.get(next(gen)) == "first"
    with pytest.raises(KeyError):
        skate.get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)
    skate.kill(a)


@pytest.mark.timeout(60)
def test_async_actor_async_generator(cluster):
    a = AsyncProducer.remote()
    gen = a.items.remote(5)
    assert isinstance(gen, skate.ObjectRefGenerator)
    assert [skate.get(r) for r in gen] == [0, 100, 200, 300, 400]

    async def consume():
        return [await r async for r in a.items.remote(3)]

    assert asyncio.run(consume()) == [0, 100, 200]
    assert skate.get(a.ping.remote()) == "pong"
    skate.kill(a)


# -- cancellation and backpressure ------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_cancel_stops_the_producer(cluster, tmp_path):
    path = str(tmp_path / "progress")
    gen = logged.remote(100_000, path, 0.01)
    for _ in range(3):
        skate.get(next(gen))
    skate.cancel(gen)
    refs = list(gen)  # ends: the last ref holds the cancellation
    with pytest.raises(TaskCancelledError):
        skate.get(refs[-1])
    produced = read_counter(path)
    assert produced < 100_000
    time.sleep(0.3)  # a stopped producer writes no more lines
    assert read_counter(path) == produced


@pytest.mark.timeout(60)
def test_backpressure_bounds_the_producers_lead(cluster, tmp_path):
    path = str(tmp_path / "progress")
    threshold = 3
    gen = logged.options(_generator_backpressure_num_objects=threshold).remote(10, path)
    assert wait_for(lambda: read_counter(path) >= threshold)
    time.sleep(0.5)  # without backpressure all 10 would be made in well under this
    assert read_counter(path) == threshold
    values = []
    for consumed in range(1, 11):
        values.append(skate.get(next(gen)))
        expect = min(10, consumed + threshold)
        assert wait_for(lambda e=expect: read_counter(path) >= e)
        assert read_counter(path) <= expect
    assert values == list(range(10))
    with pytest.raises(StopIteration):
        next(gen)


@pytest.mark.timeout(60)
def test_cancel_reaches_a_producer_paused_by_backpressure(cluster, tmp_path):
    path = str(tmp_path / "progress")
    gen = logged.options(_generator_backpressure_num_objects=1).remote(10, path)
    assert wait_for(lambda: read_counter(path) == 1)
    skate.cancel(gen)
    refs = list(gen)
    with pytest.raises(TaskCancelledError):
        skate.get(refs[-1])
    assert read_counter(path) <= 2


@skate.remote
class PausedProducer:
    async def items(self, n, path):
        for i in range(n):
            with open(path, "a") as f:
                f.write(f"{i}\n")
            yield i


@pytest.mark.timeout(60)
def test_backpressure_in_an_async_actor(cluster, tmp_path):
    path = str(tmp_path / "progress")
    a = PausedProducer.remote()
    gen = a.items.options(_generator_backpressure_num_objects=2).remote(6, path)
    assert wait_for(lambda: read_counter(path) >= 2)
    time.sleep(0.3)
    assert read_counter(path) == 2
    assert [skate.get(r) for r in gen] == list(range(6))
    skate.kill(a)


# -- memory --------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_items_the_consumer_dropped_are_freed_while_the_task_runs(cluster, tmp_path):
    done = str(tmp_path / "done")
    assert wait_for(lambda: _store_objects() == 0)
    gen = big_items.remote(5, done)
    for i in range(5):
        ref = next(gen)
        assert int(skate.get(ref)[0]) == i
        del ref
    assert wait_for(lambda: _store_objects() == 0)
    assert not gen.is_finished()  # the task is still running
    open(done, "w").close()
    with pytest.raises(StopIteration):
        next(gen)


@pytest.mark.timeout(60)
def test_items_never_taken_are_freed_with_the_generator(cluster):
    assert wait_for(lambda: _store_objects() == 0)
    gen = big_items.remote(4)
    skate.get(gen.completed())
    assert wait_for(lambda: _store_objects() == 4)
    del gen
    assert wait_for(lambda: _store_objects() == 0)


# -- retries -------------------------------------------------------------------------------------------
@skate.remote
def flaky(n, path):
    """The first attempt fails after 3 items; each item says which attempt made it."""
    with open(path, "a") as f:
        f.write("attempt\n")
    attempt = read_counter_here(path)
    for i in range(n):
        if attempt == 1 and i == 3:
            raise RuntimeError("first attempt fails")
        yield (i, attempt)


def read_counter_here(path):
    with open(path) as f:
        return len(f.read().splitlines())


@skate.remote
def dies(n, path):
    """The first attempt's worker dies once the consumer took 3 items (backpressure 1)."""
    with open(path, "a") as f:
        f.write("attempt\n")
    attempt = read_counter_here(path)
    for i in range(n):
        if attempt == 1 and i == 3:
            os._exit(1)
        yield (i, attempt)


@pytest.mark.timeout(60)
def test_retried_exception_does_not_duplicate_items(cluster, tmp_path):
    path = str(tmp_path / "attempts")
    gen = flaky.options(max_retries=1, retry_exceptions=True).remote(5, path)
    values = [skate.get(r) for r in gen]
    assert [v[0] for v in values] == [0, 1, 2, 3, 4]
    assert [v[1] for v in values] == [1, 1, 1, 2, 2]  # items 0-2 from the first attempt, once
    assert read_counter(path) == 2


@pytest.mark.timeout(60)
def test_retry_after_worker_death_does_not_duplicate_items(cluster, tmp_path):
    path = str(tmp_path / "attempts")
    gen = dies.options(max_retries=1, _generator_backpressure_num_objects=1).remote(5, path)
    values = [skate.get(r) for r in gen]
    assert [v[0] for v in values] == [0, 1, 2, 3, 4]
    assert values[0][1] == 1 and values[-1][1] == 2
    assert read_counter(path) == 2


# -- across nodes --------------------------------------------------------------------------------------
@skate.remote
def where_and_what(n):
    node = skate.get_runtime_context().get_node_id()
    for i in range(n):
        yield (node, i, np.full(MIB // 8, i, dtype=np.int64) if i % 2 else i)


@skate.remote
class RemoteProducer:
    def items(self, n):
        for i in range(n):
            yield np.full(MIB // 8, i, dtype=np.int64)


@pytest.mark.timeout(120)
def test_producer_on_another_node(multinode):
    red = multinode.add_node(**node_args(num_cpus=1, resources={"red": 1}))
    skate.init(address=multinode.address)
    gen = where_and_what.options(resources={"red": 1}).remote(4)
    seen = []
    for ref in gen:
        node, i, value = skate.get(ref, timeout=30)
        assert node == red.node_id
        seen.append(int(value[0]) if i % 2 else value)
    assert seen == [0, 1, 2, 3]
    actor = RemoteProducer.options(resources={"red": 1}).remote()
    assert [int(skate.get(r, timeout=30)[0]) for r in actor.items.remote(3)] == [0, 1, 2]


# -- dynamic -------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_dynamic_returns_one_ref_to_a_dynamic_generator(cluster):
    ref = count_to.options(num_returns="dynamic").remote(4)
    assert isinstance(ref, skate.ObjectRef)
    dyn = skate.get(ref)
    assert isinstance(dyn, skate.DynamicObjectRefGenerator)
    assert len(dyn) == 4
    assert [skate.get(r) for r in dyn] == [0, 1, 2, 3]

    @skate.remote
    def total(g):
        return sum(skate.get(list(g)))

    assert skate.get(total.remote(ref)) == 6  # the generator travels inside a ref, refs and all


@pytest.mark.timeout(60)
def test_dynamic_error_is_one_more_ref_after_the_items(cluster):
    dyn = skate.get(fails_after.options(num_returns="dynamic").remote(2))
    refs = list(dyn)
    assert len(refs) == 3
    assert skate.get(refs[:2]) == [0, 1]
    with pytest.raises(ValueError, match="failed after 2 items"):
        skate.get(refs[2])
