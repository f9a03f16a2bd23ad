"""skate.util.ActorPool against Ray 2.60's ray.util.ActorPool, method by method."""

from __future__ import annotations

import time

import pytest

import skate
from skate.exceptions import ActorDiedError
from skate.util import ActorPool

pytestmark = pytest.mark.timeout(60)


@skate.remote
class Worker:
    def double(self, x):
        return 2 * x

    def sleep_then(self, args):
        seconds, value = args
        time.sleep(seconds)
        return value

    def pair(self, x):
        return x, -x

    def die(self, _):
        import os

        os._exit(1)


@pytest.fixture(scope="module")
def actors(cluster):
    return [Worker.remote() for _ in range(2)]


def double(a, v):
    return a.double.remote(v)


def sleep_then(a, v):
    return a.sleep_then.remote(v)


def test_map_submits_at_call_and_yields_in_order(actors):
    pool = ActorPool(actors)
    gen = pool.map(double, [1, 2, 3])
    assert pool.has_next()  # submitted before the first result is read, as Ray
    assert list(gen) == [2, 4, 6]


def test_map_drops_unread_results_of_earlier_submissions(actors):
    pool = ActorPool(actors)
    pool.submit(double, 100)
    pool.submit(sleep_then, (0.3, "unread"))
    assert list(pool.map(double, [1, 2])) == [2, 4]
    assert not pool.has_next()


def test_map_unordered_waits_out_earlier_submissions(actors):
    pool = ActorPool(actors)
    pool.submit(sleep_then, (0.3, "earlier"))
    assert sorted(pool.map_unordered(double, [1, 2, 3])) == [2, 4, 6]
    assert not pool.has_next() and pool.has_free()


def test_submit_list_of_refs(actors):
    pool = ActorPool(actors)
    pool.submit(lambda a, v: [a.double.remote(v), a.double.remote(v + 1)], 1)
    assert pool.get_next(timeout=30) == [2, 4]
    pool.submit(lambda a, v: [a.double.remote(v)], 5)
    assert pool.get_next_unordered(timeout=30) == [10]


def test_submit_fn_error_keeps_the_actor(actors):
    pool = ActorPool(actors[:1])
    with pytest.raises(TypeError, match="ObjectRef"):
        pool.submit(lambda a, v: v, 1)
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda a, v: 1 / 0, 1)
    assert pool.has_free() and not pool.has_next()
    pool.submit(double, 4)
    assert pool.get_next() == 8


def test_has_next_and_has_free_with_waiting_values(actors):
    pool = ActorPool(actors)
    assert not pool.has_next() and pool.has_free()
    for v in range(3):
        pool.submit(double, v)
    assert pool.has_next() and not pool.has_free()  # a value waits for an actor
    assert [pool.get_next() for _ in range(3)] == [0, 2, 4]
    assert not pool.has_next() and pool.has_free()


def test_get_next_timeout_keeps_or_ignores_the_task(actors):
    pool = ActorPool(actors[:1])
    pool.submit(sleep_then, (0.4, "late"))
    with pytest.raises(TimeoutError, match="Timed out waiting for result"):
        pool.get_next(timeout=0.05)
    assert pool.has_next()  # kept: the same result comes next
    assert pool.get_next(timeout=30) == "late"

    pool.submit(sleep_then, (0.4, "ignored"))
    pool.submit(double, 3)
    with pytest.raises(TimeoutError, match="has been ignored"):
        pool.get_next(timeout=0.05, ignore_if_timedout=True)
    # the ignored task's actor went back to the pool and took the waiting value
    assert pool.get_next(timeout=30) == 6
    assert not pool.has_next()


def test_get_next_unordered_timeout_keeps_or_ignores(actors):
    pool = ActorPool(actors[:1])
    pool.submit(sleep_then, (0.4, "late"))
    with pytest.raises(TimeoutError):
        pool.get_next_unordered(timeout=0.05)
    assert pool.get_next_unordered(timeout=30) == "late"
    pool.submit(sleep_then, (0.4, "ignored"))
    with pytest.raises(TimeoutError, match="has been ignored"):
        pool.get_next_unordered(timeout=0.05, ignore_if_timedout=True)
    assert not pool.has_next() and pool.has_free()
    # the ignored call still runs on the actor; later calls queue behind it
    pool.submit(double, 1)
    assert pool.get_next(timeout=30) == 2


def test_get_next_after_get_next_unordered_is_an_error(actors):
    pool = ActorPool(actors)
    pool.submit(sleep_then, (0.4, "slow"))
    pool.submit(double, 1)
    assert pool.get_next_unordered(timeout=30) == 2  # the second submission
    assert pool.has_next()
    with pytest.raises(ValueError, match="get_next_unordered"):
        pool.get_next()
    assert pool.get_next_unordered(timeout=30) == "slow"
    with pytest.raises(StopIteration, match="No more results"):
        pool.get_next()
    with pytest.raises(StopIteration, match="No more results"):
        pool.get_next_unordered()


def test_get_next_unordered_returns_the_first_ready(actors):
    pool = ActorPool(actors)
    pool.submit(sleep_then, (0.4, "slow"))
    pool.submit(sleep_then, (0.0, "fast"))
    assert pool.get_next_unordered(timeout=30) == "fast"
    assert pool.get_next_unordered(timeout=30) == "slow"


def test_pop_idle_and_push(actors):
    a, b = actors
    pool = ActorPool([a])
    pool.submit(sleep_then, (0.2, "busy"))
    assert pool.pop_idle() is None
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(a)
    pool.push(b)
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(b)
    assert pool.pop_idle() == b
    assert pool.get_next() == "busy"
    assert pool.pop_idle() == a and pool.pop_idle() is None
    pool.submit(double, 5)  # no actor: the value waits
    assert not pool.has_next()
    pool.push(a)  # takes the waiting value at once
    assert pool.has_next() and pool.get_next() == 10


def test_dead_actor_leaves_the_pool(cluster):
    doomed, healthy = Worker.remote(), Worker.remote()
    pool = ActorPool([doomed])
    pool.submit(lambda a, v: a.die.remote(v), 0)
    with pytest.raises(ActorDiedError):
        pool.get_next(timeout=30)
    assert not pool.has_free()  # the dead actor was not returned to the idle set
    pool.push(healthy)
    assert list(pool.map(double, [1])) == [2]
