"""Actors on clusters a test starts itself: resource accounting, namespaces of init, shutdown."""

from __future__ import annotations

import os
import time

import pytest

import skate
from skate.exceptions import ActorDiedError
from tests.integration._actor_helpers import free, pid_alive, wait_pid_gone
from tests.integration._helpers import wait_for


@skate.remote
class Counter:
    def __init__(self, start=0):
        self.value = start

    def incr(self):
        self.value += 1
        return self.value

    def pid(self):
        return os.getpid()

    def namespace(self):
        return skate.get_runtime_context().namespace


@skate.remote
def slow_value(value, seconds):
    time.sleep(seconds)
    return value


def test_default_actor_needs_a_cpu_to_place_but_holds_none(fresh):
    fresh.init(num_cpus=1)
    actors = [Counter.remote(i) for i in range(3)]
    assert skate.get([a.incr.remote() for a in actors], timeout=30) == [1, 2, 3]
    pids = skate.get([a.pid.remote() for a in actors], timeout=30)
    assert len(set(pids)) == 3
    assert wait_for(lambda: free("CPU") == 1.0, timeout=10), skate.available_resources()
    # A task can still use the only CPU while three actors are alive.
    assert skate.get(slow_value.remote("task-ran", 0), timeout=30) == "task-ran"


def test_explicit_num_cpus_is_held_while_alive(fresh):
    fresh.init(num_cpus=1)
    first = Counter.options(num_cpus=1).remote()
    assert skate.get(first.incr.remote(), timeout=30) == 1
    assert wait_for(lambda: free("CPU") == 0.0, timeout=10), skate.available_resources()
    second = Counter.options(num_cpus=1).remote()
    pending = second.incr.remote()
    ready, not_ready = skate.wait([pending], timeout=1)
    assert ready == [] and not_ready == [pending]
    # Freeing the CPU lets the pending actor start; its call then runs.
    skate.kill(first)
    assert skate.get(pending, timeout=30) == 1


def test_init_namespace_applies_to_actors(fresh):
    fresh.init(num_cpus=2, namespace="team-x")
    assert skate.get_runtime_context().namespace == "team-x"
    a = Counter.options(name="in-x").remote()
    assert skate.get(a.namespace.remote(), timeout=30) == "team-x"
    b = Counter.options(name="in-y", namespace="team-y").remote()
    assert skate.get(b.incr.remote(), timeout=30) == 1
    assert skate.get_actor("in-x")._actor_id == a._actor_id
    assert skate.get_actor("in-x", namespace="team-x")._actor_id == a._actor_id
    assert skate.get_actor("in-y", namespace="team-y")._actor_id == b._actor_id
    assert skate.util.list_named_actors() == ["in-x"]
    listed = skate.util.list_named_actors(all_namespaces=True)
    assert {"name": "in-x", "namespace": "team-x"} in listed
    assert {"name": "in-y", "namespace": "team-y"} in listed


def test_anonymous_namespace_is_unique_per_driver(fresh):
    fresh.init(num_cpus=1)
    first = skate.get_runtime_context().namespace
    assert isinstance(first, str) and first
    skate.shutdown()
    fresh.init(num_cpus=1)
    second = skate.get_runtime_context().namespace
    assert isinstance(second, str) and second and second != first


def test_shutdown_ends_every_actor_process(fresh):
    fresh.init(num_cpus=2)
    plain = Counter.remote()
    detached = Counter.options(name="survivor", lifetime="detached").remote()
    held = Counter.options(num_cpus=1).remote()
    pids = skate.get([h.pid.remote() for h in (plain, detached, held)], timeout=30)
    assert all(pid_alive(p) for p in pids)
    skate.shutdown()
    for pid in pids:
        assert wait_pid_gone(pid, timeout=10), pid


def test_killing_a_pending_actor_leaks_nothing(fresh):
    fresh.init(num_cpus=1)
    holder = Counter.options(num_cpus=1).remote()
    assert skate.get(holder.incr.remote(), timeout=30) == 1
    waiting = Counter.options(num_cpus=1).remote()
    pending = waiting.incr.remote()
    ready, _ = skate.wait([pending], timeout=0.5)
    assert ready == []
    skate.kill(waiting)
    t0 = time.monotonic()
    with pytest.raises(ActorDiedError):
        skate.get(pending, timeout=30)
    assert time.monotonic() - t0 < 10
    skate.kill(holder)
    assert wait_for(lambda: free("CPU") == 1.0, timeout=10), skate.available_resources()
    # the CPU is usable again, and stays free afterwards
    assert skate.get(slow_value.remote("ok", 0), timeout=30) == "ok"
    replacement = Counter.options(num_cpus=1).remote()
    assert skate.get(replacement.incr.remote(), timeout=30) == 1
