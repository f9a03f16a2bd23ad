"""Distributed reference counting: borrowers keep objects alive, and let go."""

from __future__ import annotations

import time

import numpy as np

import skate
from tests.integration._helpers import wait_for


@skate.remote
class Keeper:
    def __init__(self):
        self.kept = []

    def keep(self, box):
        self.kept.append(box[0])
        return len(self.kept)

    def read_all(self):
        return skate.get(self.kept)

    def drop(self):
        self.kept.clear()
        return True


def test_actor_keeps_a_ref_the_driver_dropped(cluster):
    keeper = Keeper.remote()
    small = skate.put("precious")
    large = skate.put(np.arange(1_000_000))
    assert skate.get(keeper.keep.remote([small]), timeout=30) == 1
    assert skate.get(keeper.keep.remote([large]), timeout=30) == 2
    del small, large
    skate.core_worker.context.current.flush()  # any release of ours has run and its frames left
    value, arr = skate.get(keeper.read_all.remote(), timeout=30)
    assert value == "precious" and int(arr[-1]) == 999_999


def test_object_freed_once_the_borrower_lets_go(cluster):
    core = skate.core_worker.context.current
    keeper = Keeper.remote()
    ref = skate.put(np.zeros(1_000_000))  # in the shared store
    oid = ref.binary()
    skate.get(keeper.keep.remote([ref]), timeout=30)
    del ref
    core.flush()  # any release of ours has run
    assert core.refs.has(oid) and core.refs.borrowers(oid) == 1
    skate.get(keeper.drop.remote(), timeout=30)
    assert wait_for(lambda: not core.refs.has(oid))


def test_dead_borrower_releases_its_borrows(cluster):
    core = skate.core_worker.context.current
    keeper = Keeper.remote()
    ref = skate.put("held by an actor that dies")
    oid = ref.binary()
    skate.get(keeper.keep.remote([ref]), timeout=30)
    del ref
    skate.kill(keeper)
    assert wait_for(lambda: not core.refs.has(oid))


def test_refs_returned_inside_a_value_stay_readable(cluster):
    @skate.remote
    def make(n):
        return [skate.put(i * 10) for i in range(n)]

    inner = skate.get(make.remote(5), timeout=30)
    time.sleep(0.3)
    assert skate.get(inner, timeout=30) == [0, 10, 20, 30, 40]


def test_nested_ref_in_argument_survives_the_callers_drop(cluster):
    @skate.remote
    def slow_read(box):
        time.sleep(0.5)
        return skate.get(box["ref"])

    ref = skate.put("inner value")
    out = slow_read.remote({"ref": ref})
    del ref
    assert skate.get(out, timeout=30) == "inner value"
