"""Mistakes at the call site fail at once, with a message naming the culprit, and lose nothing."""

from __future__ import annotations

import threading
import time

import pytest

import skate
from tests.integration._helpers import wait_for


@skate.remote
def echo(*args, **kwargs):
    return args, kwargs


def test_get_of_a_non_ref(cluster):
    with pytest.raises(TypeError) as info:
        skate.get(123)
    assert "int" in str(info.value)
    ref = skate.put(1)
    with pytest.raises(TypeError) as info:
        skate.get([ref, "oops"])
    msg = str(info.value)
    assert "str" in msg and ("1" in msg or "oops" in msg)
    with pytest.raises(TypeError):
        skate.get({"a": ref})
    assert skate.get(ref, timeout=30) == 1


def test_get_bad_timeout(cluster):
    ref = skate.put(1)
    with pytest.raises((TypeError, ValueError)):
        skate.get(ref, timeout=-1)
    with pytest.raises((TypeError, ValueError)):
        skate.get(ref, timeout="soon")


def test_wait_rejects_bad_input(cluster):
    a, b = skate.put(1), skate.put(2)
    with pytest.raises(ValueError):
        skate.wait([a, a])
    with pytest.raises(ValueError):
        skate.wait([a, b], num_returns=3)
    with pytest.raises(TypeError):
        skate.wait(a)
    with pytest.raises(TypeError):
        skate.wait([a, 5])
    with pytest.raises((TypeError, ValueError)):
        skate.wait([a], num_returns=0)
    with pytest.raises((TypeError, ValueError)):
        skate.wait([a], timeout=-1)
    assert skate.wait([a, b], num_returns=2, timeout=10) == ([a, b], [])


def test_put_of_a_ref(cluster):
    ref = skate.put(1)
    with pytest.raises(TypeError):
        skate.put(ref)
    # wrapped in a container it is fine
    outer = skate.put([ref])
    inner = skate.get(outer, timeout=30)[0]
    assert skate.get(inner, timeout=30) == 1


def test_unknown_option_is_named(cluster):
    with pytest.raises(ValueError, match="num_cpu"):
        echo.options(num_cpu=1)
    with pytest.raises(ValueError, match="num_cpu"):
        skate.remote(num_cpu=1)(lambda: None)
    with pytest.raises(ValueError, match="bogus_option"):

        @skate.remote(bogus_option=True)
        def f():
            pass


@pytest.mark.parametrize(
    "options, exc",
    [
        ({"num_cpus": -1}, ValueError),
        ({"num_gpus": -1}, ValueError),
        ({"resources": {"CPU": 1}}, ValueError),
        ({"resources": {"GPU": 1}}, ValueError),
        ({"resources": {"custom": -1}}, ValueError),
        ({"num_returns": -1}, ValueError),
        ({"max_retries": -2}, ValueError),
        ({"num_cpus": "two"}, TypeError),
        ({"max_calls": -1}, ValueError),
        ({"retry_exceptions": "yes"}, TypeError),
    ],
)
def test_bad_option_values(cluster, options, exc):
    with pytest.raises(exc):
        echo.options(**options)
    with pytest.raises(exc):
        skate.remote(**options)(lambda: None)


def test_unpicklable_positional_argument(cluster):
    with pytest.raises(TypeError) as info:
        echo.remote(1, threading.Lock())
    msg = str(info.value)
    assert "argument 1" in msg, msg
    assert "lock" in msg.lower(), msg
    assert "echo" in msg, msg


def test_unpicklable_keyword_argument(cluster):
    with pytest.raises(TypeError) as info:
        echo.remote(1, guard=threading.Lock())
    msg = str(info.value)
    assert "guard" in msg, msg
    assert "lock" in msg.lower(), msg


def test_unpicklable_argument_next_to_a_ref_loses_nothing(cluster):
    ref = skate.put("still here")
    big = skate.put(b"x" * 300_000)
    for _ in range(3):
        with pytest.raises(TypeError):
            echo.remote(ref, big, threading.Lock())
    assert skate.get(ref, timeout=30) == "still here"
    args, kwargs = skate.get(echo.remote(ref, k=big), timeout=30)
    assert args == ("still here",) and kwargs == {"k": b"x" * 300_000}


def test_nothing_is_lost_after_bad_calls(cluster):
    for bad in (
        lambda: skate.get(123),
        lambda: echo.remote(threading.Lock()),
        lambda: echo.options(num_cpu=1),
        lambda: skate.wait([]),
    ):
        try:
            bad()
        except (TypeError, ValueError):
            pass
    refs = [echo.remote(i) for i in range(20)]
    assert [a for a, _ in skate.get(refs, timeout=30)] == [(i,) for i in range(20)]

    # Every CPU comes back: nothing holds a lease or a resource.
    def all_free():
        return skate.available_resources().get("CPU") == 4

    assert wait_for(all_free, timeout=10), skate.available_resources()


def test_wait_on_empty_list(cluster):
    # As Ray: an empty list is ready at once, whatever num_returns says.
    start = time.monotonic()
    assert skate.wait([]) == ([], [])
    assert time.monotonic() - start < 1
