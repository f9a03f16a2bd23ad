"""The node's runtime-env cache state machine, decision by decision (no I/O, fake clock)."""

from __future__ import annotations

from skate.raylet.runtime_env_cache import HIT, INSTALL, READY, WAIT, RuntimeEnvCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_first_use_installs_then_hits():
    cache = RuntimeEnvCache(budget_bytes=1000, clock=Clock())
    assert cache.acquire("pip:a") == INSTALL
    assert cache.installed("pip:a", 10) == []
    assert cache.acquire("pip:a") == HIT
    assert cache.installs == 1
    assert cache.resources["pip:a"].refs == 2 and cache.resources["pip:a"].state == READY


def test_concurrent_first_use_installs_once():
    cache = RuntimeEnvCache(budget_bytes=1000, clock=Clock())
    assert [cache.acquire("pkg:x") for _ in range(3)] == [INSTALL, WAIT, WAIT]
    assert cache.installs == 1
    cache.installed("pkg:x", 5)
    assert cache.resources["pkg:x"].refs == 3


def test_failure_is_forgotten_so_the_next_use_tries_again():
    cache = RuntimeEnvCache(budget_bytes=1000, clock=Clock())
    assert cache.acquire("pip:bad") == INSTALL
    assert cache.acquire("pip:bad") == WAIT
    cache.failed("pip:bad")
    assert "pip:bad" not in cache.resources
    assert cache.release("pip:bad") == []  # a failed holder's release is harmless
    assert cache.acquire("pip:bad") == INSTALL
    assert cache.installs == 2


def test_unused_resources_stay_cached_within_budget():
    cache = RuntimeEnvCache(budget_bytes=100, clock=Clock())
    cache.acquire("a")
    cache.installed("a", 60)
    assert cache.release("a") == []
    assert cache.acquire("a") == HIT


def test_gc_collects_least_recently_used_unheld_past_budget():
    clock = Clock()
    cache = RuntimeEnvCache(budget_bytes=100, clock=clock)
    for key in ("a", "b", "c"):
        clock.now += 1
        cache.acquire(key)
        cache.installed(key, 40)  # c brings it to 120: nothing unheld yet
    clock.now = 10
    assert cache.release("b") == ["b"]  # b is the only unheld one; 80 left
    clock.now = 11
    assert cache.release("a") == []  # within budget again
    clock.now = 12
    cache.acquire("d")
    assert cache.installed("d", 50) == ["a"]  # 130: a (unheld, oldest) goes
    assert sorted(cache.resources) == ["c", "d"]
    assert cache.used_bytes() == 90


def test_gc_never_takes_held_or_installing_resources():
    cache = RuntimeEnvCache(budget_bytes=10, clock=Clock())
    cache.acquire("held")
    cache.installed("held", 50)
    cache.acquire("busy")  # still installing
    assert cache.collect() == []
    assert cache.release("held") == ["held"]
    assert list(cache.resources) == ["busy"]


def test_gc_order_ties_broken_by_key():
    cache = RuntimeEnvCache(budget_bytes=0, clock=Clock())
    for key in ("b", "a"):
        cache.acquire(key)
        cache.installed(key, 1)
    assert cache.release("b") == ["b"]
    assert cache.release("a") == ["a"]
