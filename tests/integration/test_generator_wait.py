"""`wait`, `get` and `cancel` on an ObjectRefGenerator, as Ray 2.60 has them.

A generator in `wait`'s list counts as ready when `next()` on it would not block: its next
item has arrived, or the task has ended (the error of a failed task, or the end itself, is
what `next()` gives then). `wait` returns the generator objects themselves, in input order.
`get(gen)` gives the generator back unchanged, as Ray does; a generator inside a list is a
TypeError that says to iterate it.

Producers here yield item `i` only once the test created the file `gate/i`, so the tests
order events by opening gates, not by time.
"""

from __future__ import annotations

import os
import time

import pytest

import skate
from skate.exceptions import TaskCancelledError
from skate.object_ref_generator import ObjectRefGenerator
from tests.integration._helpers import read_counter, wait_for


@skate.remote
def gated(n, gate_dir):
    """Yield item i once the file gate_dir/i exists."""
    for i in range(n):
        while not os.path.exists(os.path.join(gate_dir, str(i))):
            time.sleep(0.01)
        yield i


@skate.remote
def count_to(n):
    yield from range(n)


@skate.remote
def fails_after(n):
    yield from range(n)
    raise ValueError(f"failed after {n} items")


@skate.remote
def one():
    return 1


@skate.remote
def logged(n, path, delay):
    for i in range(n):
        with open(path, "a") as f:
            f.write(f"{i}\n")
        time.sleep(delay)
        yield i


def _open(gate_dir, i):
    with open(os.path.join(gate_dir, str(i)), "w"):
        pass


@pytest.fixture
def gate(tmp_path):
    d = tmp_path / "gate"
    d.mkdir()
    return str(d)


# -- readiness ------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_generator_is_ready_when_its_next_item_has_arrived(cluster, gate):
    gen = gated.remote(2, gate)
    assert skate.wait([gen], timeout=0) == ([], [gen])
    _open(gate, 0)
    ready, not_ready = skate.wait([gen], timeout=30)
    assert ready == [gen] and not_ready == []
    assert isinstance(ready[0], ObjectRefGenerator)
    # wait does not consume: still ready until next() takes the item
    assert skate.wait([gen], timeout=0) == ([gen], [])
    assert skate.get(next(gen)) == 0
    assert skate.wait([gen], timeout=0) == ([], [gen])
    _open(gate, 1)
    assert skate.wait([gen], timeout=30) == ([gen], [])
    assert skate.get(next(gen)) == 1


@pytest.mark.timeout(60)
def test_finished_generator_is_ready_even_when_exhausted(cluster):
    gen = count_to.remote(2)
    assert [skate.get(r) for r in gen] == [0, 1]
    assert skate.wait([gen], timeout=30) == ([gen], [])  # next() would stop at once
    with pytest.raises(StopIteration):
        next(gen)
    assert skate.wait([gen], timeout=0) == ([gen], [])


@pytest.mark.timeout(60)
def test_failed_generator_is_ready_with_its_error_next(cluster):
    gen = fails_after.remote(1)
    assert skate.get(next(gen)) == 0
    assert skate.wait([gen], timeout=30) == ([gen], [])
    with pytest.raises(ValueError, match="failed after 1 items"):
        skate.get(next(gen))
    assert skate.wait([gen], timeout=0) == ([gen], [])


@pytest.mark.timeout(60)
def test_mixed_list_counts_generators_and_refs_together(cluster, gate):
    gen = gated.remote(1, gate)
    ref = one.remote()
    ready, not_ready = skate.wait([gen, ref], num_returns=1, timeout=30)
    assert ready == [ref] and not_ready == [gen]
    ready, not_ready = skate.wait([gen, ref], num_returns=2, timeout=0.2)
    assert ready == [ref] and not_ready == [gen]
    _open(gate, 0)
    ready, not_ready = skate.wait([gen, ref], num_returns=2, timeout=30)
    assert ready == [gen, ref] and not_ready == []  # input order kept


@pytest.mark.timeout(60)
def test_wait_without_timeout_wakes_when_the_item_comes(cluster, gate):
    gen = gated.remote(1, gate)
    _open(gate, 0)
    ready, _ = skate.wait([gen])  # no timeout: must be woken by the report, not a poll
    assert ready == [gen]


@pytest.mark.timeout(60)
def test_fetch_local_false_and_a_timeout(cluster, gate):
    gen = gated.remote(1, gate)
    start = time.monotonic()
    assert skate.wait([gen], timeout=0.3, fetch_local=False) == ([], [gen])
    assert time.monotonic() - start >= 0.25
    _open(gate, 0)
    assert skate.wait([gen], timeout=30, fetch_local=False) == ([gen], [])


@pytest.mark.timeout(60)
def test_timed_out_waits_leave_no_callbacks_behind(cluster, gate):
    gen = gated.remote(1, gate)
    for _ in range(20):
        skate.wait([gen], timeout=0.01)
    assert gen._stream.waiters == []
    _open(gate, 0)
    assert skate.wait([gen], timeout=30) == ([gen], [])


@pytest.mark.timeout(60)
def test_large_items_count_as_ready(cluster):
    import numpy as np

    @skate.remote
    def big():
        yield np.ones(1 << 20, dtype=np.uint8)

    gen = big.remote()
    assert skate.wait([gen], timeout=30, fetch_local=True) == ([gen], [])
    assert int(skate.get(next(gen)).sum()) == 1 << 20


# -- argument checks, as Ray ------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_wait_argument_errors_with_generators(cluster):
    gen = count_to.remote(1)
    with pytest.raises(ValueError, match="unique"):
        skate.wait([gen, gen])
    with pytest.raises(TypeError, match="list"):
        skate.wait(gen)
    with pytest.raises(TypeError, match="ObjectRefGenerator"):
        skate.wait([gen, 3])
    with pytest.raises(ValueError, match="num_returns"):
        skate.wait([gen], num_returns=2)
    list(gen)


# -- get --------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_get_of_a_generator_gives_it_back_as_ray_does(cluster):
    gen = count_to.remote(2)
    assert skate.get(gen) is gen
    assert skate.get(gen, timeout=1) is gen
    with pytest.raises(TypeError, match="iterate"):
        skate.get([gen])
    assert [skate.get(r) for r in gen] == [0, 1]


# -- cancel -----------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_cancelled_generator_becomes_ready_with_the_cancellation(cluster, tmp_path):
    path = str(tmp_path / "progress")
    gen = logged.remote(100_000, path, 0.01)
    skate.get(next(gen))
    skate.cancel(gen)
    refs = []
    while True:  # wait reports readiness until the end; next never blocks after it
        ready, _ = skate.wait([gen], timeout=30)
        assert ready == [gen]
        try:
            refs.append(next(gen))
        except StopIteration:
            break
    with pytest.raises(TaskCancelledError):
        skate.get(refs[-1])
    with pytest.raises(TaskCancelledError):
        skate.get(gen.completed())
    assert wait_for(lambda: read_counter(path) < 100_000)


@pytest.mark.timeout(60)
def test_force_cancel_of_an_actor_generator_is_refused_as_ray(cluster):
    @skate.remote
    class Producer:
        def items(self, n):
            yield from range(n)

    p = Producer.remote()
    gen = p.items.remote(3)
    with pytest.raises(ValueError, match="force=True is not supported for actor"):
        skate.cancel(gen, force=True)
    assert [skate.get(r) for r in gen] == [0, 1, 2]
