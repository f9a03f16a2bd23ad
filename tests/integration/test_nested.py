"""Nested tasks on a 1-CPU cluster: a task blocked in get lends its CPU to its children."""

from __future__ import annotations

import pytest

from tests.integration._helpers import wait_for


@pytest.fixture
def one_cpu(fresh):
    skate = fresh
    skate.init(num_cpus=1)
    yield skate
    skate.shutdown()


def test_outer_task_blocking_in_get_does_not_deadlock(one_cpu):
    skate = one_cpu

    @skate.remote
    def inner(i):
        return i * i

    @skate.remote
    def outer(n):
        return sum(skate.get([inner.remote(i) for i in range(n)], timeout=60))

    assert skate.get(outer.remote(4), timeout=60) == 0 + 1 + 4 + 9


def test_three_levels_deep(one_cpu):
    skate = one_cpu

    @skate.remote
    def level(depth):
        if depth == 0:
            return "leaf"
        return [skate.get(level.remote(depth - 1), timeout=60)]

    assert skate.get(level.remote(3), timeout=60) == [[["leaf"]]]


def test_blocking_in_wait_also_lends_the_cpu(one_cpu):
    skate = one_cpu

    @skate.remote
    def inner():
        return 1

    @skate.remote
    def outer():
        refs = [inner.remote() for _ in range(3)]
        ready, not_ready = skate.wait(refs, num_returns=3, timeout=60)
        return len(ready), len(not_ready)

    assert skate.get(outer.remote(), timeout=60) == (3, 0)


def test_cpu_is_taken_back_after_nested_work(one_cpu):
    skate = one_cpu

    @skate.remote
    def inner():
        return 1

    @skate.remote
    def outer():
        return skate.get(inner.remote(), timeout=60)

    assert skate.get([outer.remote() for _ in range(3)], timeout=60) == [1, 1, 1]
    assert wait_for(lambda: skate.available_resources().get("CPU") == 1, timeout=5), (
        skate.available_resources()
    )
