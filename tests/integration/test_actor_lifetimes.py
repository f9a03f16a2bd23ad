"""Actor lifetimes: reference counting of handles, borrowers, detached actors."""

from __future__ import annotations

import gc
import os
import time

import pytest

import skate
from skate.exceptions import RayActorError
from tests.integration._actor_helpers import pid_alive, wait_pid_gone
from tests.integration._helpers import wait_for


@skate.remote
class Holder:
    def __init__(self, other=None):
        self.other = other
        self.value = 0

    def pid(self):
        return os.getpid()

    def incr(self):
        self.value += 1
        return self.value

    def slow_incr(self, seconds):
        time.sleep(seconds)
        self.value += 1
        return self.value

    def call_other(self):
        return skate.get(self.other.incr.remote(), timeout=30)

    def drop_other(self):
        self.other = None
        gc.collect()
        return True


@skate.remote
def use_later(handle, marker, seconds):
    with open(marker, "w") as f:
        f.write("started")
    time.sleep(seconds)
    return skate.get(handle.incr.remote(), timeout=30)


@skate.remote
def make_actor_and_return_pid():
    h = Holder.remote()
    return skate.get(h.pid.remote(), timeout=30)


@skate.remote
def make_actor_and_return_handle():
    h = Holder.remote()
    skate.get(h.incr.remote(), timeout=30)
    return [h]


@skate.remote
def make_detached(name):
    h = Holder.options(name=name, lifetime="detached").remote()
    return skate.get(h.pid.remote(), timeout=30)


def _gone(name):
    try:
        skate.get_actor(name)
    except ValueError:
        return True
    return False


def test_actor_dies_when_its_last_handle_is_deleted(cluster):
    h = Holder.remote()
    pid = skate.get(h.pid.remote(), timeout=30)
    assert pid_alive(pid)
    del h
    gc.collect()
    assert wait_pid_gone(pid, timeout=10), f"actor process {pid} outlived its handles"


def test_copies_of_a_handle_keep_the_actor(cluster):
    h = Holder.options(name="lifetimes-copies").remote()
    pid = skate.get(h.pid.remote(), timeout=30)
    again = skate.get_actor("lifetimes-copies")
    del h
    gc.collect()
    time.sleep(1.0)
    assert pid_alive(pid)
    assert skate.get(again.incr.remote(), timeout=30) == 1
    del again
    gc.collect()
    assert wait_pid_gone(pid, timeout=10)


def test_pending_calls_finish_after_the_handle_is_deleted(cluster):
    h = Holder.remote()
    pid = skate.get(h.pid.remote(), timeout=30)
    refs = [h.slow_incr.remote(0.2) for _ in range(3)]
    del h
    gc.collect()
    assert skate.get(refs, timeout=30) == [1, 2, 3]
    assert wait_pid_gone(pid, timeout=10)


def test_a_handle_in_a_running_task_keeps_the_actor(cluster, tmp_path):
    h = Holder.remote()
    pid = skate.get(h.pid.remote(), timeout=30)
    marker = tmp_path / "started"
    ref = use_later.remote(h, str(marker), 1.5)
    assert wait_for(marker.exists, timeout=30)
    del h
    gc.collect()
    assert skate.get(ref, timeout=30) == 1
    # once the task is done nobody holds the actor any more
    del ref
    assert wait_pid_gone(pid, timeout=10)


def test_a_handle_stored_in_another_actor_keeps_the_actor(cluster):
    target = Holder.remote()
    pid = skate.get(target.pid.remote(), timeout=30)
    keeper = Holder.remote(target)
    assert skate.get(keeper.call_other.remote(), timeout=30) == 1
    del target
    gc.collect()
    time.sleep(1.0)
    assert pid_alive(pid)
    assert skate.get(keeper.call_other.remote(), timeout=30) == 2
    # the borrower lets go: the actor goes
    assert skate.get(keeper.drop_other.remote(), timeout=30) is True
    assert wait_pid_gone(pid, timeout=10)


def test_borrower_dying_releases_the_actor(cluster):
    target = Holder.remote()
    pid = skate.get(target.pid.remote(), timeout=30)
    keeper = Holder.remote(target)
    assert skate.get(keeper.call_other.remote(), timeout=30) == 1
    del target
    gc.collect()
    skate.kill(keeper)
    assert wait_pid_gone(pid, timeout=10)


def test_an_actor_created_in_a_task_dies_with_its_handles(cluster):
    pid = skate.get(make_actor_and_return_pid.remote(), timeout=30)
    assert wait_pid_gone(pid, timeout=10)


def test_a_handle_returned_from_a_task_is_usable(cluster):
    [h] = skate.get(make_actor_and_return_handle.remote(), timeout=30)
    assert skate.get(h.incr.remote(), timeout=30) == 2
    time.sleep(0.5)
    assert skate.get(h.incr.remote(), timeout=30) == 3


def test_detached_actor_survives_its_handles_until_killed(cluster):
    h = Holder.options(name="lifetimes-detached", lifetime="detached").remote()
    pid = skate.get(h.pid.remote(), timeout=30)
    assert skate.get(h.incr.remote(), timeout=30) == 1
    del h
    gc.collect()
    time.sleep(1.0)
    assert pid_alive(pid)
    again = skate.get_actor("lifetimes-detached")
    assert skate.get(again.incr.remote(), timeout=30) == 2
    del again
    gc.collect()
    time.sleep(0.5)
    again = skate.get_actor("lifetimes-detached")
    assert skate.get(again.pid.remote(), timeout=30) == pid
    skate.kill(again)
    assert wait_pid_gone(pid, timeout=10)
    assert wait_for(lambda: _gone("lifetimes-detached"), timeout=10)
    with pytest.raises(RayActorError):
        skate.get(again.incr.remote(), timeout=30)


def test_detached_actor_created_in_a_task_outlives_the_task(cluster):
    pid = skate.get(make_detached.remote("lifetimes-from-task"), timeout=30)
    time.sleep(1.0)
    assert pid_alive(pid)
    h = skate.get_actor("lifetimes-from-task")
    assert skate.get(h.pid.remote(), timeout=30) == pid
    skate.kill(h)
    assert wait_pid_gone(pid, timeout=10)


@skate.remote
class Factory:
    def __init__(self):
        self.children = []

    def make(self):
        child = Holder.remote()
        self.children.append(child)
        return [child]

    def forget(self):
        self.children = []
        gc.collect()
        return True


def test_a_handle_returned_by_an_actor_is_usable_and_counted(cluster):
    factory = Factory.remote()
    [child] = skate.get(factory.make.remote(), timeout=30)
    pid = skate.get(child.pid.remote(), timeout=30)
    assert skate.get(child.incr.remote(), timeout=30) == 1
    # the factory lets go, the driver still holds it
    assert skate.get(factory.forget.remote(), timeout=30) is True
    time.sleep(1.0)
    assert skate.get(child.incr.remote(), timeout=30) == 2
    del child
    gc.collect()
    assert wait_pid_gone(pid, timeout=10)
