"""put / get / wait and ObjectRef behaviour on a real cluster."""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import datetime
import decimal
import fractions
import pickle
import time
import uuid

import numpy as np
import pytest

import skate
from skate.exceptions import GetTimeoutError


@dataclasses.dataclass
class Point:
    x: int
    y: float


Pair = collections.namedtuple("Pair", "left right")


@skate.remote
def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


@skate.remote
def identity(x):
    return x


VALUES = [
    None,
    True,
    0,
    -(2**70),
    3.5,
    float("inf"),
    complex(1, -2),
    "",
    "unicode ✓ текст",
    b"",
    b"\x00\xff" * 10,
    bytearray(b"abc"),
    [1, [2, [3]]],
    (1, "two", 3.0),
    {"a": 1, 2: [3], (4, 5): {"nested": None}},
    {1, 2, 3},
    frozenset({"x"}),
    range(3, 9),
    Point(1, 2.5),
    Pair(1, "r"),
    collections.OrderedDict(b=1, a=2),
    decimal.Decimal("1.25"),
    fractions.Fraction(3, 7),
    datetime.datetime(2024, 1, 2, 3, 4, 5),
    uuid.UUID(int=12345),
    np.int64(7),
    np.arange(12, dtype=np.int32).reshape(3, 4),
    np.array(["a", "bc"]),
    ValueError("an exception as a value"),
    "x" * 200_000,
    list(range(50_000)),
]


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, BaseException):
        return type(a) is type(b) and a.args == b.args
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("value", VALUES, ids=[type(v).__name__ + str(i) for i, v in enumerate(VALUES)])
def test_put_get_round_trip(cluster, value):
    ref = skate.put(value)
    assert isinstance(ref, skate.ObjectRef)
    assert _equal(value, skate.get(ref, timeout=30))
    # and through a task
    assert _equal(value, skate.get(identity.remote(ref), timeout=30))


def test_get_of_a_list_keeps_order(cluster):
    refs = [skate.put(i) for i in range(10)] + [identity.remote(i) for i in range(10, 20)]
    assert skate.get(refs, timeout=30) == list(range(20))
    assert skate.get(tuple(refs[:3]), timeout=30) == [0, 1, 2]
    assert skate.get([], timeout=30) == []
    # the same ref twice
    r = skate.put("dup")
    assert skate.get([r, r], timeout=30) == ["dup", "dup"]


def test_get_timeout_raises_quickly(cluster):
    slow = sleep_then.remote(3, "late")
    start = time.monotonic()
    with pytest.raises(GetTimeoutError) as info:
        skate.get(slow, timeout=0.3)
    elapsed = time.monotonic() - start
    assert isinstance(info.value, TimeoutError)
    assert 0.25 <= elapsed < 2.0, elapsed
    with pytest.raises(TimeoutError):
        skate.get([skate.put(1), slow], timeout=0)
    # the object is still obtainable afterwards
    assert skate.get(slow, timeout=30) == "late"
    # timeout=0 on ready objects returns them
    assert skate.get([skate.put(1), slow], timeout=0) == [1, "late"]


def test_wait_num_returns_and_order(cluster):
    refs = [skate.put(i) for i in range(5)]
    ready, not_ready = skate.wait(refs, num_returns=3, timeout=10)
    assert ready == refs[:3] and not_ready == refs[3:]
    ready, not_ready = skate.wait(refs, num_returns=5)
    assert ready == refs and not_ready == []
    ready, not_ready = skate.wait(refs)
    assert ready == refs[:1] and not_ready == refs[1:]


def test_wait_ready_list_follows_input_order(cluster):
    slow1 = sleep_then.remote(2, 1)
    fast = [skate.put("a"), identity.remote("b")]
    slow2 = sleep_then.remote(2, 2)
    refs = [slow1, fast[0], slow2, fast[1]]
    ready, not_ready = skate.wait(refs, num_returns=2, timeout=20)
    assert ready == fast
    assert not_ready == [slow1, slow2]
    ready, not_ready = skate.wait(refs, num_returns=4, timeout=30)
    assert ready == refs and not_ready == []


def test_wait_timeout_zero_returns_immediately(cluster):
    slow = sleep_then.remote(2, "x")
    done = skate.put(1)
    start = time.monotonic()
    ready, not_ready = skate.wait([slow, done], num_returns=2, timeout=0)
    assert time.monotonic() - start < 0.5
    assert ready == [done] and not_ready == [slow]
    start = time.monotonic()
    ready, not_ready = skate.wait([slow], timeout=0.2)
    assert 0.15 <= time.monotonic() - start < 1.5
    assert ready == [] and not_ready == [slow]
    ready, not_ready = skate.wait([slow], timeout=30, fetch_local=False)
    assert ready == [slow] and not_ready == []
    ready, _ = skate.wait([done], fetch_local=True)
    assert ready == [done]


def test_wait_counts_failed_tasks_as_ready(cluster):
    @skate.remote
    def boom():
        raise ValueError("x")

    ref = boom.remote()
    ready, not_ready = skate.wait([ref], timeout=30)
    assert ready == [ref] and not_ready == []


def test_object_ref_identity_semantics(cluster):
    a = skate.put(1)
    b = skate.put(1)
    a2 = copy.copy(a)
    assert a == a2 and hash(a) == hash(a2)
    assert a != b
    assert a != "not a ref"
    d = {a: "first", b: "second"}
    assert d[a2] == "first"
    assert len({a, a2, b}) == 2
    assert isinstance(a.hex(), str) and len(a.hex()) > 0
    assert a.hex() in repr(a)
    assert bytes.fromhex(a.hex()) == a.binary()


def test_object_ref_pickles_within_the_driver(cluster):
    ref = skate.put({"payload": 42})
    clone = pickle.loads(pickle.dumps(ref))
    assert clone == ref and hash(clone) == hash(ref)
    assert skate.get(clone, timeout=30) == {"payload": 42}
    task_ref = identity.remote("via-task")
    clone = pickle.loads(pickle.dumps([task_ref]))[0]
    assert skate.get(clone, timeout=30) == "via-task"
    # the clone keeps the object alive on its own
    del ref, task_ref
    assert skate.get(clone, timeout=30) == "via-task"


def test_await_ref_and_future(cluster):
    async def main():
        one = await identity.remote(1)
        many = await asyncio.gather(*[identity.remote(i) for i in range(5)])
        big = await identity.remote(np.ones(300_000))
        return one, many, big

    one, many, big = asyncio.run(main())
    assert one == 1 and many == [0, 1, 2, 3, 4]
    assert big.shape == (300_000,) and big.sum() == 300_000

    fut = sleep_then.remote(0.2, "fut").future()
    assert fut.result(timeout=30) == "fut"
    assert skate.put("ready").future().result(timeout=30) == "ready"


def test_await_failing_ref_raises(cluster):
    @skate.remote
    def fails():
        raise KeyError("gone")

    async def main():
        return await fails.remote()

    with pytest.raises(KeyError):
        asyncio.run(main())
    with pytest.raises(skate.exceptions.RayTaskError):
        fails.remote().future().result(timeout=30)


def test_large_numpy_get_is_read_only_and_equal(cluster):
    arr = np.random.default_rng(0).random(1_000_000)
    ref = skate.put(arr)
    out = skate.get(ref, timeout=30)
    assert np.array_equal(out, arr)
    assert not out.flags.writeable
    with pytest.raises(ValueError):
        out[0] = 1.0
    from_task = skate.get(identity.remote(ref), timeout=30)
    assert np.array_equal(from_task, arr)
    assert not from_task.flags.writeable
    # a writable copy is the user's to make
    copy_ = out.copy()
    copy_[0] = 5.0
    assert skate.get(ref, timeout=30)[0] == arr[0]


def test_put_value_is_a_snapshot(cluster):
    value = [1, 2, 3]
    ref = skate.put(value)
    value.append(4)
    assert skate.get(ref, timeout=30) == [1, 2, 3]
    arr = np.zeros(200_000)
    ref = skate.put(arr)
    arr[:] = 1
    assert skate.get(ref, timeout=30).sum() == 0
