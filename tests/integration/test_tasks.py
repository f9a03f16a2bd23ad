"""Remote functions on a real cluster: decorators, options, arguments, returns."""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np
import psutil
import pytest

import skate
from tests.integration._helpers import wait_for


@skate.remote
def plain(x):
    return x * 2


@skate.remote(num_returns=2)
def pair(x):
    return x, x + 1


@skate.remote
def getpid():
    return os.getpid()


def test_decorator_forms(cluster):
    assert skate.get(plain.remote(21), timeout=30) == 42

    a, b = pair.remote(10)
    assert isinstance(a, skate.ObjectRef) and isinstance(b, skate.ObjectRef)
    assert skate.get([a, b], timeout=30) == [10, 11]

    def triple(x):
        return 3 * x

    remote_triple = skate.remote(triple)
    assert isinstance(remote_triple, skate.RemoteFunction)
    assert skate.get(remote_triple.remote(5), timeout=30) == 15
    assert triple(2) == 6  # the original function is untouched


def test_options_chaining(cluster):
    def three():
        return 1, 2, 3

    f = skate.remote(three)
    refs = f.options(num_returns=3).options(num_cpus=0.5).options(name="renamed").remote()
    assert isinstance(refs, list) and len(refs) == 3
    assert skate.get(refs, timeout=30) == [1, 2, 3]
    # options() returned copies: the function itself is unchanged.
    single = f.remote()
    assert isinstance(single, skate.ObjectRef)
    assert skate.get(single, timeout=30) == (1, 2, 3)


def test_calling_a_remote_function_directly_raises(cluster):
    with pytest.raises(TypeError, match=r"remote"):
        plain(1)
    with pytest.raises(TypeError):
        pair(1)


@skate.remote
def fib(n):
    if n < 2:
        return n
    return sum(skate.get([fib.remote(n - 1), fib.remote(n - 2)], timeout=60))


def test_tasks_submitting_tasks(cluster):
    assert skate.get(fib.remote(6), timeout=60) == 8


@skate.remote
def inner_value(x):
    return x + 100


@skate.remote
def returns_refs():
    # Refs owned by this worker, handed back inside a list: the driver borrows them.
    return [inner_value.remote(1), skate.put("worker-put")]


def test_refs_created_in_a_task_can_be_returned(cluster):
    refs = skate.get(returns_refs.remote(), timeout=30)
    assert all(isinstance(r, skate.ObjectRef) for r in refs)
    ready, not_ready = skate.wait(refs, num_returns=2, timeout=30)
    assert ready == refs and not_ready == []
    assert skate.get(refs, timeout=30) == [101, "worker-put"]


@skate.remote
def add(a, b):
    return a + b


def test_object_ref_args_are_resolved(cluster):
    x = skate.put(5)
    y = plain.remote(10)
    assert skate.get(add.remote(x, y), timeout=30) == 25
    # A chain: each task waits for the one before.
    ref = skate.put(0)
    for _ in range(5):
        ref = add.remote(ref, 1)
    assert skate.get(ref, timeout=30) == 5


@skate.remote
def describe(lst, dct):
    return (
        type(lst[0]).__name__,
        type(dct["k"]).__name__,
        skate.get(lst[0], timeout=30),
        skate.get(dct["k"], timeout=30),
        lst[1],
    )


def test_nested_refs_arrive_as_refs(cluster):
    a = skate.put("alpha")
    b = plain.remote(4)
    assert skate.get(describe.remote([a, 7], {"k": b}), timeout=30) == (
        "ObjectRef",
        "ObjectRef",
        "alpha",
        8,
        7,
    )


@skate.remote
def kw(a, *, b, c=3):
    return (a, b, c)


def test_kwargs_with_refs(cluster):
    ra, rb = skate.put("A"), plain.remote(5)
    assert skate.get(kw.remote(ra, b=rb), timeout=30) == ("A", 10, 3)
    assert skate.get(kw.remote(a=1, b=rb, c=ra), timeout=30) == (1, 10, "A")


def test_num_returns_zero_returns_none_and_runs(cluster, tmp_path):
    marker = tmp_path / "ran"

    @skate.remote(num_returns=0)
    def side_effect(path):
        with open(path, "w") as f:
            f.write("yes")

    assert side_effect.remote(str(marker)) is None
    assert wait_for(marker.exists, timeout=30)
    assert wait_for(lambda: marker.read_text() == "yes", timeout=5)


def test_num_returns_mismatch_raises_at_get(cluster):
    @skate.remote(num_returns=2)
    def wrong():
        return 1, 2, 3

    @skate.remote(num_returns=2)
    def not_a_sequence():
        return 7

    for refs in (wrong.remote(), not_a_sequence.remote()):
        assert len(refs) == 2
        for ref in refs:
            with pytest.raises(ValueError) as info:
                skate.get(ref, timeout=30)
            assert isinstance(info.value, skate.exceptions.RayTaskError)


def test_max_calls_one_uses_a_new_worker_each_time(cluster):
    once = getpid.options(max_calls=1)
    pids = [skate.get(once.remote(), timeout=30) for _ in range(3)]
    assert len(set(pids)) == 3, pids
    # A worker that reached max_calls exits.
    assert wait_for(lambda: not any(psutil.pid_exists(p) and _alive(p) for p in pids[:2]), timeout=10)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_without_max_calls_workers_are_reused(cluster):
    pids = {skate.get(getpid.remote(), timeout=30) for _ in range(6)}
    assert len(pids) <= 4  # sequential calls on a 4-CPU node reuse the pool
    assert os.getpid() not in pids


def test_closure_and_lambda(cluster):
    factor = 7
    table = {"a": 1}

    def closure(x):
        return x * factor + table["a"]

    assert skate.get(skate.remote(closure).remote(3), timeout=30) == 22
    square = skate.remote(lambda x: x * x)
    assert skate.get([square.remote(i) for i in range(5)], timeout=30) == [0, 1, 4, 9, 16]

    def make_adder(n):
        @skate.remote
        def adder(x):
            return x + n

        return adder

    assert skate.get([make_adder(1).remote(1), make_adder(10).remote(1)], timeout=30) == [2, 11]


@skate.remote
def digest(data):
    return len(data), hashlib.sha256(bytes(data)).hexdigest()


@skate.remote
def make_bytes(n, seed):
    return bytes((i * seed) % 251 for i in range(n))


@skate.remote
def array_stats(arr):
    return arr.shape, arr.dtype.str, float(arr.sum())


@skate.remote
def make_array(n):
    return np.arange(n, dtype=np.float64)


def test_large_bytes_argument_and_return(cluster):
    data = os.urandom(2 * 1024 * 1024)
    assert skate.get(digest.remote(data), timeout=30) == (len(data), hashlib.sha256(data).hexdigest())
    # as a keyword argument too
    assert skate.get(digest.remote(data=data), timeout=30)[0] == len(data)
    out = skate.get(make_bytes.remote(2 * 1024 * 1024, 7), timeout=30)
    assert isinstance(out, bytes) and len(out) == 2 * 1024 * 1024
    assert out == bytes((i * 7) % 251 for i in range(2 * 1024 * 1024))


def test_large_numpy_argument_and_return(cluster):
    arr = np.arange(1_000_000, dtype=np.float64)
    shape, dtype, total = skate.get(array_stats.remote(arr), timeout=30)
    assert tuple(shape) == (1_000_000,) and dtype == arr.dtype.str and total == float(arr.sum())
    out = skate.get(make_array.remote(1_000_000), timeout=30)
    assert np.array_equal(out, arr)
    # a large object produced by one task, consumed by another
    shape, _, total = skate.get(array_stats.remote(make_array.remote(1_000_000)), timeout=30)
    assert tuple(shape) == (1_000_000,) and total == float(arr.sum())
    # a large put ref as an argument, and nested in a list
    ref = skate.put(arr)
    assert skate.get(array_stats.remote(ref), timeout=30)[2] == float(arr.sum())


@skate.remote
def sum_nested(items):
    return sum(float(skate.get(r, timeout=30).sum()) for r in items)


def test_large_refs_nested_in_args(cluster):
    arrs = [np.full(200_000, i, dtype=np.float64) for i in range(3)]
    refs = [skate.put(a) for a in arrs]
    assert skate.get(sum_nested.remote(refs), timeout=30) == sum(float(a.sum()) for a in arrs)


def test_many_small_tasks(cluster):
    start = time.monotonic()
    refs = [plain.remote(i) for i in range(500)]
    assert skate.get(refs, timeout=60) == [2 * i for i in range(500)]
    assert time.monotonic() - start < 30


@skate.remote
def get_nested_later(items, delay):
    time.sleep(delay)
    return float(skate.get(items[0], timeout=30).sum())


def test_nested_ref_outlives_the_drivers_handle(cluster):
    big = skate.put(np.ones(200_000))
    small = skate.put(np.ones(10))
    r_big = get_nested_later.remote([big], 0.5)
    r_small = get_nested_later.remote([small], 0.5)
    del big, small  # the tasks' arguments keep the objects alive
    assert skate.get([r_big, r_small], timeout=30) == [200_000.0, 10.0]


def test_top_level_ref_argument_outlives_the_drivers_handle(cluster):
    ref = skate.put(np.full(300_000, 2.0))
    out = array_stats.remote(ref)
    del ref
    assert skate.get(out, timeout=30)[2] == 600_000.0


def test_submitting_from_many_driver_threads(cluster):
    import threading

    errors: list = []
    results: dict = {}

    def work(t):
        try:
            refs = [plain.remote(t * 1000 + i) for i in range(50)]
            results[t] = skate.get(refs, timeout=60)
            ref = skate.put(t)
            assert skate.get(ref, timeout=30) == t
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(90)
    assert not errors, errors
    assert all(results[t] == [2 * (t * 1000 + i) for i in range(50)] for t in range(8))


def test_object_owned_by_an_exited_worker(cluster):
    @skate.remote(max_calls=1)
    def make_owned():
        return [skate.put("owned by a short-lived worker"), os.getpid()]

    inner, pid = skate.get(make_owned.remote(), timeout=30)
    assert wait_for(lambda: not _alive(pid), timeout=10)
    # The owner is gone: Ray raises OwnerDiedError (an ObjectLostError). It must never hang.
    start = time.monotonic()
    with pytest.raises(skate.exceptions.ObjectLostError):
        skate.get(inner, timeout=20)
    assert time.monotonic() - start < 10


def test_same_ref_passed_twice(cluster):
    r = skate.put(21)
    big = skate.put(np.ones(200_000))
    assert skate.get(add.remote(r, r), timeout=30) == 42
    assert skate.get(add.remote(big, big), timeout=30).sum() == 400_000


def test_returning_a_ref_returns_the_ref(cluster):
    @skate.remote
    def outer():
        return inner_value.remote(1)

    result = skate.get(outer.remote(), timeout=30)
    assert isinstance(result, skate.ObjectRef)
    assert skate.get(result, timeout=30) == 101


def test_large_object_put_in_a_task_is_readable_by_the_driver(cluster):
    @skate.remote
    def put_big():
        return [skate.put(np.arange(500_000, dtype=np.int64))]

    (ref,) = skate.get(put_big.remote(), timeout=30)
    out = skate.get(ref, timeout=30)
    assert out.shape == (500_000,) and int(out[-1]) == 499_999


def test_multiple_returns_mixing_large_and_small(cluster):
    @skate.remote(num_returns=3)
    def mixed():
        return "small", np.full(300_000, 3.0), b"y" * 200_000

    small, big, blob = mixed.remote()
    assert skate.get(small, timeout=30) == "small"
    assert skate.get(big, timeout=30).sum() == 900_000.0
    assert skate.get(blob, timeout=30) == b"y" * 200_000
