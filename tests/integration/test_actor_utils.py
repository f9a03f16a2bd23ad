"""skate.util.ActorPool and skate.util.queue.Queue on a real cluster."""

from __future__ import annotations

import os
import time

import pytest

import skate
from skate.exceptions import RayActorError
from skate.util import ActorPool
from skate.util.queue import Empty, Full, Queue


@skate.remote
class Worker:
    def double(self, x):
        return 2 * x

    def sleep_then(self, args):
        seconds, value = args
        time.sleep(seconds)
        return value

    def pid(self):
        return os.getpid()

    def slow_pid(self, seconds):
        time.sleep(seconds)
        return os.getpid()


def _workers(n):
    return [Worker.remote() for _ in range(n)]


# -- ActorPool ----------------------------------------------------------------------------


def test_pool_map_is_ordered(cluster):
    pool = ActorPool(_workers(2))
    assert list(pool.map(lambda a, v: a.double.remote(v), range(10))) == [2 * i for i in range(10)]
    # later values finish first, the order still follows the input
    values = [(0.4, "slow"), (0.0, "fast"), (0.1, "mid")]
    assert list(pool.map(lambda a, v: a.sleep_then.remote(v), values)) == ["slow", "fast", "mid"]
    assert not pool.has_next()


def test_pool_map_unordered_yields_as_ready(cluster):
    pool = ActorPool(_workers(3))
    values = [(0.8, "slow"), (0.0, "fast"), (0.2, "mid")]
    out = list(pool.map_unordered(lambda a, v: a.sleep_then.remote(v), values))
    assert sorted(out) == ["fast", "mid", "slow"]
    assert out[-1] == "slow" and out[0] == "fast"
    assert sorted(pool.map_unordered(lambda a, v: a.double.remote(v), range(7))) == [2 * i for i in range(7)]


def test_pool_uses_every_actor(cluster):
    actors = _workers(3)
    pids = {skate.get(a.pid.remote(), timeout=30) for a in actors}
    pool = ActorPool(actors)
    seen = set(pool.map(lambda a, v: a.slow_pid.remote(v), [0.2] * 6))
    assert seen == pids


def test_pool_submit_get_next_and_queueing(cluster):
    pool = ActorPool(_workers(2))
    assert pool.has_free() and not pool.has_next()
    for v in range(5):  # more values than actors: the rest wait in the pool
        pool.submit(lambda a, v: a.double.remote(v), v)
    assert pool.has_next()
    assert not pool.has_free()
    assert [pool.get_next() for _ in range(5)] == [0, 2, 4, 6, 8]
    assert not pool.has_next()
    assert pool.has_free()
    with pytest.raises(StopIteration):
        pool.get_next()


def test_pool_get_next_unordered(cluster):
    pool = ActorPool(_workers(2))
    pool.submit(lambda a, v: a.sleep_then.remote(v), (0.8, "slow"))
    pool.submit(lambda a, v: a.sleep_then.remote(v), (0.0, "fast"))
    assert pool.get_next_unordered(timeout=30) == "fast"
    assert pool.get_next_unordered(timeout=30) == "slow"
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next_unordered()


def test_pool_get_next_timeout(cluster):
    pool = ActorPool(_workers(1))
    pool.submit(lambda a, v: a.sleep_then.remote(v), (2.0, "late"))
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.2)
    assert time.monotonic() - t0 < 1.5
    assert pool.get_next(timeout=30) == "late"


def test_pool_pop_idle_and_push(cluster):
    a, b = _workers(2)
    pool = ActorPool([a])
    with pytest.raises(ValueError):
        pool.push(a)  # already idle in the pool
    pool.submit(lambda w, v: w.sleep_then.remote(v), (0.3, "busy"))
    with pytest.raises(ValueError):
        pool.push(a)  # already busy in the pool
    assert pool.pop_idle() is None  # the only actor is busy
    pool.push(b)
    assert pool.has_free()
    popped = pool.pop_idle()
    assert popped == b
    assert not pool.has_free()
    assert pool.get_next() == "busy"
    assert pool.pop_idle() == a
    assert pool.pop_idle() is None
    assert not pool.has_free()
    # an empty pool queues work until an actor is pushed
    pool.submit(lambda w, v: w.double.remote(v), 21)
    assert not pool.has_next()  # as Ray: queued work counts once an actor has taken it
    pool.push(b)
    assert pool.has_next()
    assert pool.get_next() == 42


# -- Queue --------------------------------------------------------------------------------


def test_queue_put_get_and_sizes(cluster):
    q = Queue(maxsize=3)
    assert q.empty() and not q.full() and q.qsize() == 0 and len(q) == 0
    q.put(1)
    q.put("two")
    q.put_nowait({"three": 3})
    assert q.qsize() == 3 and q.full() and not q.empty()
    assert q.get() == 1
    assert q.get_nowait() == "two"
    assert q.get(block=True, timeout=5) == {"three": 3}
    assert q.empty()


def test_queue_empty_and_full_errors(cluster):
    q = Queue(maxsize=1)
    t0 = time.monotonic()
    with pytest.raises(Empty):
        q.get(timeout=0.2)
    assert time.monotonic() - t0 < 2.0
    with pytest.raises(Empty):
        q.get(block=False)
    with pytest.raises(Empty):
        q.get_nowait()
    q.put("only")
    with pytest.raises(Full):
        q.put("extra", block=False)
    with pytest.raises(Full):
        q.put_nowait("extra")
    t0 = time.monotonic()
    with pytest.raises(Full):
        q.put("extra", timeout=0.2)
    assert time.monotonic() - t0 < 2.0
    assert q.get() == "only"
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    with pytest.raises(ValueError):
        Queue(maxsize=-1)


def test_queue_batches(cluster):
    q = Queue(maxsize=4)
    q.put_nowait_batch([1, 2, 3])
    with pytest.raises(Full):
        q.put_nowait_batch([4, 5])
    assert q.qsize() == 3
    assert q.get_nowait_batch(2) == [1, 2]
    with pytest.raises(Empty):
        q.get_nowait_batch(2)
    assert q.get_nowait_batch(1) == [3]


@skate.remote
def producer(q, items):
    for item in items:
        q.put(item)
    return len(items)


@skate.remote
def consumer(q, n):
    return [q.get(timeout=30) for _ in range(n)]


def test_queue_shared_by_producer_and_consumer_tasks(cluster):
    q = Queue(maxsize=2)  # small: the producer must wait for the consumer
    items = list(range(8))
    got = consumer.remote(q, len(items))
    sent = producer.remote(q, items)
    assert skate.get(sent, timeout=30) == len(items)
    assert skate.get(got, timeout=30) == items
    assert q.empty()


def test_blocking_get_waits_for_a_put(cluster):
    q = Queue()
    pending = consumer.remote(q, 1)
    ready, _ = skate.wait([pending], timeout=0.5)
    assert ready == []
    q.put("late-item")
    assert skate.get(pending, timeout=30) == ["late-item"]


def test_queue_shutdown_kills_its_actor(cluster):
    q = Queue()
    q.put(1)
    actor = q.actor
    q.shutdown()
    with pytest.raises(RayActorError):
        skate.get(actor.qsize.remote(), timeout=30)


@skate.remote
class AsyncConsumer:
    async def drain(self, q, n):
        return [await q.get_async(timeout=30) for _ in range(n)]

    async def fill(self, q, items):
        for item in items:
            await q.put_async(item)
        return len(items)


def test_queue_async_api_from_async_actors(cluster):
    q = Queue(maxsize=2)
    consumer_actor, producer_actor = AsyncConsumer.remote(), AsyncConsumer.remote()
    got = consumer_actor.drain.remote(q, 5)
    assert skate.get(producer_actor.fill.remote(q, list("abcde")), timeout=30) == 5
    assert skate.get(got, timeout=30) == list("abcde")


@skate.remote
class Picky:
    def check(self, x):
        if x == 3:
            raise ValueError("three is bad")
        return x


def test_pool_errors_surface_and_the_pool_stays_usable(cluster):
    pool = ActorPool([Picky.remote(), Picky.remote()])
    for v in range(5):
        pool.submit(lambda a, v: a.check.remote(v), v)
    results = []
    for _ in range(5):
        try:
            results.append(pool.get_next(timeout=30))
        except ValueError as exc:
            results.append(f"error: {'three is bad' in str(exc)}")
    assert results == [0, 1, 2, "error: True", 4]
    assert list(pool.map(lambda a, v: a.check.remote(v), [5, 6])) == [5, 6]
