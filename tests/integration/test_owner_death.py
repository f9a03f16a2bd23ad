"""A ref whose owner died raises OwnerDiedError at get: never a hang."""

from __future__ import annotations

import os
import time

import pytest

import skate
from tests.integration._actor_helpers import wait_pid_gone


@skate.remote
class Maker:
    def make(self, value):
        return [skate.put(value)]  # this actor owns the inner object

    def pid(self):
        return os.getpid()


def test_owner_died_error_after_the_owner_is_killed(cluster):
    maker = Maker.remote()
    (inner,) = skate.get(maker.make.remote("owned by the actor"), timeout=30)
    owner_pid = skate.get(maker.pid.remote(), timeout=30)
    skate.kill(maker)
    assert wait_pid_gone(owner_pid)
    start = time.monotonic()
    with pytest.raises(skate.exceptions.OwnerDiedError) as info:
        skate.get(inner, timeout=30)
    assert time.monotonic() - start < 10
    assert isinstance(info.value, skate.exceptions.ObjectLostError)
    assert inner.hex() in str(info.value)


def test_task_using_a_ref_of_a_dead_owner_fails_clearly(cluster):
    maker = Maker.remote()
    (inner,) = skate.get(maker.make.remote(41), timeout=30)
    owner_pid = skate.get(maker.pid.remote(), timeout=30)
    skate.kill(maker)
    assert wait_pid_gone(owner_pid)

    @skate.remote
    def add_one(x):
        return x + 1

    with pytest.raises(skate.exceptions.OwnerDiedError):
        skate.get(add_one.remote(inner), timeout=30)
