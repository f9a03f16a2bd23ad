"""The client pipelines: `.remote()` and `put` are one-way messages with ids the client mints.

They return at once (no round trip to the proxy), the proxy applies them in the order they
were sent, and anything that goes wrong on the cluster side surfaces at `get` of the refs
they returned, as with Ray's client.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import skate
from skate.core_worker import context
from tests.integration._client_helpers import Head, wait_until


@pytest.fixture(scope="module")
def head():
    if skate.is_initialized():
        skate.shutdown()
    h = Head(num_cpus=2)
    yield h
    h.stop()


@pytest.fixture
def client(head):
    if not (skate.is_initialized() and context.current.mode == "client"):
        if skate.is_initialized():
            skate.shutdown()
        skate.init(head.client_address)
    yield context.current


@pytest.fixture(scope="module", autouse=True)
def _disconnect_at_the_end(head):
    yield
    if skate.is_initialized():
        skate.shutdown()


class BreaksOnTheCluster:
    """Pickles fine on the client; unpickling it on the proxy raises."""

    def __reduce__(self):
        return (pickle.loads, (b"this is not a pickle",))


@skate.remote
def plus_one(x):
    return x + 1


@skate.remote
def first_element(arr):
    return int(arr[0])


@skate.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self, by=1):
        self.n += by
        return self.n


def _count_round_trips(core, monkeypatch) -> list:
    """Every call the client makes that waits for the proxy's answer, by method."""
    calls: list = []
    original_acall, original_call = core.acall, core.call

    async def counting_acall(method, payload=None):
        calls.append(method)
        return await original_acall(method, payload)

    def counting_call(method, payload=None):
        calls.append(method)
        return original_call(method, payload)

    monkeypatch.setattr(core, "acall", counting_acall)
    monkeypatch.setattr(core, "call", counting_call)
    return calls


@pytest.mark.timeout(60)
def test_remote_and_put_make_no_round_trip(client, monkeypatch):
    counter = Counter.remote()
    skate.get(counter.incr.remote(0))
    calls = _count_round_trips(client, monkeypatch)
    refs = [plus_one.remote(i) for i in range(50)]
    puts = [skate.put(i) for i in range(50)]
    calls_made = [counter.incr.remote() for _ in range(50)]
    assert calls == []  # nothing waited for the proxy
    assert skate.get(refs) == [i + 1 for i in range(50)]
    assert skate.get(puts) == list(range(50))
    assert skate.get(calls_made) == list(range(1, 51))
    assert calls.count("get") == 3


@pytest.mark.timeout(60)
def test_client_minted_ids_follow_the_core_worker_format(client):
    a, b = plus_one.remote(1), plus_one.remote(2)
    assert len(a.binary()) == len(b.binary()) == 20
    assert a.task_id()[:12] == b.task_id()[:12] and a.task_id() != b.task_id()
    assert a.binary()[16:] == (1).to_bytes(4, "little")  # the first return of its task
    p = skate.put(1)
    assert int.from_bytes(p.binary()[16:], "little") & 0x80000000  # a put, never a return
    assert skate.get([a, b, p]) == [2, 3, 1]


@pytest.mark.timeout(60)
def test_an_error_of_a_one_way_submission_surfaces_at_get(client):
    bad = plus_one.remote(BreaksOnTheCluster())  # returns at once: the proxy fails it later
    with pytest.raises(Exception, match="plus_one.*MARK"):
        skate.get(bad, timeout=30)
    bad_put = skate.put(BreaksOnTheCluster())
    with pytest.raises(Exception, match="MARK"):
        skate.get(bad_put, timeout=30)
    counter = Counter.remote()
    bad_call = counter.incr.remote(BreaksOnTheCluster())
    with pytest.raises(Exception, match="MARK"):
        skate.get(bad_call, timeout=30)
    # A task that depends on a failed ref fails too, and wait() counts the failed ref as ready.
    with pytest.raises(Exception, match="MARK"):
        skate.get(plus_one.remote(bad_put), timeout=30)
    ready, _ = skate.wait([bad], timeout=10)
    assert ready == [bad]
    # The session is fine afterwards, and the actor kept its state.
    assert skate.get(plus_one.remote(1)) == 2
    assert skate.get(counter.incr.remote()) == 1


@pytest.mark.timeout(90)
def test_put_then_submit_keeps_the_order(client):
    refs = [plus_one.remote(skate.put(i)) for i in range(200)]
    assert skate.get(refs) == [i + 1 for i in range(200)]
    big = np.full(3_000_000, 7, dtype=np.int64)  # 24 MB: uploaded in chunks first
    assert skate.get(first_element.remote(skate.put(big))) == 7
    chained = skate.put(0)
    for _ in range(20):
        chained = plus_one.remote(chained)
    assert skate.get(chained) == 20


@pytest.mark.timeout(90)
def test_many_pipelined_calls_keep_their_order(client):
    refs = [plus_one.remote(i) for i in range(2000)]
    assert skate.get(refs) == [i + 1 for i in range(2000)]
    counter = Counter.remote()
    calls = [counter.incr.remote() for _ in range(1000)]
    assert skate.get(calls) == list(range(1, 1001))


@pytest.mark.timeout(60)
def test_refs_dropped_right_after_submission_are_released(client):
    def held() -> int:
        return client.call("stats")["held"]

    before = held()
    for i in range(100):
        plus_one.remote(i)  # dropped at once: released after the proxy took its hold
        skate.put(i)
    kept = plus_one.remote(41)
    assert skate.get(kept) == 42
    assert wait_until(lambda: held() == before + 1, timeout=20), held()


@pytest.mark.timeout(90)
def test_a_long_burst_waits_for_the_proxy_instead_of_overrunning_it(client):
    from skate.client import core as client_core

    most_unanswered = 0
    refs = []
    for i in range(6 * client_core.SYNC_EVERY):
        refs.append(skate.put(i))
        most_unanswered = max(most_unanswered, sum(not s.done() for s in list(client._syncs)))
    assert 0 < most_unanswered <= client_core.SYNCS_IN_FLIGHT + 1
    assert skate.get(refs[-1]) == len(refs) - 1
    big = np.zeros(1_000_000, dtype=np.uint8)  # 1 MB each: counted by bytes, not messages
    before = client.syncs_sent
    puts = [skate.put(big) for _ in range(20)]
    assert client.syncs_sent - before >= 2
    assert all(int(v.sum()) == 0 for v in skate.get(puts))
