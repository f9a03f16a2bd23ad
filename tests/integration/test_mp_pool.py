"""skate.util.multiprocessing.Pool: multiprocessing.Pool's interface on actors (Ray's Pool)."""

from __future__ import annotations

import os
import threading
import time

import pytest

import skate
from skate.util.multiprocessing import Pool, TimeoutError

pytestmark = pytest.mark.timeout(60)


def square(x):
    return x * x


def add(a, b):
    return a + b


def fail_on_three(x):
    if x == 3:
        raise KeyError(f"bad {x}")
    return x


def pid(_=None):
    return os.getpid()


def sleep_then(x, seconds=0.0):
    time.sleep(seconds)
    return x


def set_global(value):
    global _INIT_VALUE
    _INIT_VALUE = value


def read_global(_=None):
    return globals().get("_INIT_VALUE")


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("no pickling")


def raise_unpicklable(_):
    raise Unpicklable("local only")


@pytest.fixture(scope="module")
def pool(cluster):
    with Pool(processes=2) as p:
        yield p


def test_map_starmap_apply(pool):
    assert pool.map(square, range(20)) == [x * x for x in range(20)]
    assert pool.map(square, range(7), chunksize=3) == [x * x for x in range(7)]
    assert pool.map(square, iter(range(5))) == [0, 1, 4, 9, 16]  # an iterator without len()
    assert pool.map(square, []) == []
    assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
    assert pool.starmap_async(add, [(5, 5)]).get(10) == [10]
    assert pool.apply(add, (1,), {"b": 2}) == 3
    assert pool.apply(square, (4,)) == 16
    assert pool.apply(add, args=(1,), kwargs={"b": 5}) == 6  # Ray's keyword name
    assert pool.apply_async(add, (2,), kwargs={"b": 5}).get(10) == 7
    with pytest.raises(TypeError, match="not both"):
        pool.apply(add, (1,), {"b": 2}, kwargs={"b": 2})


def test_work_is_spread_over_the_actors(pool):
    pids = set(pool.map(pid, range(8), chunksize=1))
    assert len(pids) == 2 and os.getpid() not in pids


def test_error_keeps_its_type_and_remote_traceback(pool):
    with pytest.raises(KeyError, match="bad 3") as info:
        pool.map(fail_on_three, range(6))
    assert "fail_on_three" in str(info.value.__cause__)  # the remote traceback, as multiprocessing
    with pytest.raises(KeyError):
        pool.apply(fail_on_three, (3,))
    with pytest.raises(RuntimeError, match="Unpicklable: local only"):
        pool.apply(raise_unpicklable, (1,))
    assert pool.map(square, [2]) == [4]  # the pool still works


def test_apply_async_result_and_callbacks(pool):
    got: list = []
    done = threading.Event()
    r = pool.apply_async(square, (5,), callback=lambda v: (got.append(v), done.set()))
    assert r.get(timeout=10) == 25
    assert done.wait(10) and got == [25]
    assert r.ready() and r.successful()

    errors: list = []
    r = pool.apply_async(fail_on_three, (3,), error_callback=errors.append)
    r.wait(10)
    assert r.ready() and not r.successful()
    assert isinstance(errors[0], KeyError)
    with pytest.raises(KeyError):
        r.get()

    values: list = []
    r = pool.map_async(square, range(4), callback=values.append)
    assert r.get(10) == [0, 1, 4, 9]
    assert values == [[0, 1, 4, 9]]  # once, with the whole list


def test_get_timeout_and_not_ready(pool):
    r = pool.apply_async(sleep_then, (1, 0.5))
    assert not r.ready()
    with pytest.raises(ValueError, match="not ready"):
        r.successful()
    with pytest.raises(TimeoutError):
        r.get(timeout=0.05)
    r.wait(0.01)  # no error on timeout
    assert r.get(timeout=10) == 1


def test_imap_ordered_and_unordered(pool):
    assert list(pool.imap(square, range(10))) == [x * x for x in range(10)]
    assert list(pool.imap(square, range(10), chunksize=3)) == [x * x for x in range(10)]
    assert sorted(pool.imap_unordered(square, range(10), chunksize=2)) == sorted(x * x for x in range(10))
    # unordered: the fast one first
    it = pool.imap_unordered(sleep_then, [1, 2], chunksize=1)
    assert sorted(it) == [1, 2]
    # a generator input is consumed lazily (one chunk per actor in flight)
    seen = []

    def gen():
        for i in range(100):
            seen.append(i)
            yield i

    it = pool.imap(square, gen())
    assert next(it) == 0
    assert len(seen) <= 4
    assert list(it)[-1] == 99 * 99


def test_imap_error_at_its_item_and_timeout(pool):
    it = pool.imap(fail_on_three, range(5))
    assert [next(it), next(it), next(it)] == [0, 1, 2]
    with pytest.raises(KeyError):
        next(it)
    assert next(it) == 4
    with pytest.raises(StopIteration):
        next(it)
    with pytest.raises(StopIteration):
        next(pool.imap(square, []))


def test_imap_next_timeout(pool):
    blocked = pool.apply_async(sleep_then, (0, 0.4))
    blocked2 = pool.apply_async(sleep_then, (0, 0.4))
    im = pool.imap(square, range(1))
    with pytest.raises(TimeoutError):
        im.next(timeout=0.05)
    assert im.next(timeout=10) == 0
    blocked.get(10), blocked2.get(10)


def test_bad_arguments(cluster):
    with pytest.raises(ValueError, match="processes"):
        Pool(processes=0)
    with pytest.raises(ValueError, match="processes"):
        Pool(processes=-2)
    with pytest.raises(ValueError, match="only 4 CPUs"):
        Pool(processes=5)
    with pytest.raises(ValueError, match="maxtasksperchild"):
        Pool(1, maxtasksperchild=0)
    with pytest.raises(TypeError, match="initializer"):
        Pool(1, initializer=3)
    p = Pool(1)
    with pytest.raises(ValueError, match="chunksize"):
        p.map(square, [1], chunksize=0)
    with pytest.raises(ValueError, match="chunksize"):
        p.imap(square, [1], chunksize=0)
    with pytest.raises(TypeError, match="func"):
        p.map(3, [1])
    with pytest.raises(ValueError, match="still running"):
        p.join()
    p.close()
    for call in (
        lambda: p.map(square, [1]),
        lambda: p.apply(square, (1,)),
        lambda: p.apply_async(square, (1,)),
        lambda: p.imap(square, [1]),
        lambda: p.imap_unordered(square, [1]),
        lambda: p.starmap(add, [(1, 2)]),
        lambda: p.__enter__(),
    ):
        with pytest.raises(ValueError, match="Pool not running"):
            call()
    p.join()


def test_close_lets_work_finish_and_join_waits(cluster):
    p = Pool(2)
    r = p.map_async(sleep_then, [0.3, 0.3])
    p.close()
    p.join()
    assert r.get(timeout=10) == [0.3, 0.3]


def test_terminate_fails_unfinished_work(cluster):
    p = Pool(1)
    r = p.apply_async(sleep_then, (1, 30))
    p.terminate()
    with pytest.raises(skate.exceptions.RayActorError):
        r.get(timeout=20)
    p.join()


def test_initializer_and_maxtasksperchild(cluster):
    with Pool(2, initializer=set_global, initargs=("ready",)) as p:
        assert p.map(read_global, range(4)) == ["ready"] * 4
    with Pool(1, maxtasksperchild=2) as p:
        pids = [p.apply(pid) for _ in range(6)]
        assert len(set(pids)) == 3  # a fresh actor after every 2 batches
        assert p.map(read_global, range(2)) == [None, None]


def test_defaults_to_cluster_cpus_and_ignores_context(cluster, caplog):
    with Pool(context=object()) as p:
        assert p._size() == 4
    assert "context" in caplog.text


def test_pool_cannot_be_pickled(pool):
    import pickle

    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(pool)


def test_starts_a_local_cluster_when_none_is_running(fresh):
    with Pool(processes=2) as p:
        assert skate.is_initialized()
        assert skate.cluster_resources()["CPU"] == 2  # sized by processes, as Ray's Pool
        assert p.map(square, [3]) == [9]
