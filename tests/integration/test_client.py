"""The core API through the Skate Client; many tests run both as a local driver and a client.

One head (started with the CLI) serves the module. The `api` fixture connects this process
either as an ordinary driver of that cluster ("local") or through its client server
("client"), so the same test shows the client behaves as a driver does.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

import skate
from skate.core_worker import context
from skate.exceptions import GetTimeoutError, RayTaskError, TaskCancelledError
from tests.integration._client_helpers import Head, wait_until


@pytest.fixture(scope="module")
def head():
    if skate.is_initialized():
        skate.shutdown()
    h = Head()
    yield h
    h.stop()


@pytest.fixture(scope="module", params=["local", "client"])
def api(request, head):
    if skate.is_initialized():
        skate.shutdown()
    if request.param == "local":
        skate.init(address=head.gcs_address)
    else:
        skate.init(head.client_address)
    yield request.param
    skate.shutdown()


@pytest.fixture
def client(head):
    """This process as a client, for the client-only tests."""
    if not (skate.is_initialized() and context.current.mode == "client"):
        if skate.is_initialized():
            skate.shutdown()
        skate.init(head.client_address)
    return context.current


@skate.remote
def square(x):
    return x * x


@skate.remote
def fail(msg):
    raise ValueError(msg)


@skate.remote
def sleeper(seconds):
    time.sleep(seconds)
    return seconds


@skate.remote
def total(refs):
    return sum(skate.get(refs))


@skate.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def incr(self, by=1):
        self.n += by
        return self.n

    def resources(self):
        return skate.get_runtime_context().get_assigned_resources()


@skate.remote
class AsyncActor:
    async def echo(self, x):
        await asyncio.sleep(0.01)
        return x


@pytest.mark.timeout(60)
def test_tasks_and_options(api):
    assert skate.get([square.remote(i) for i in range(10)]) == [i * i for i in range(10)]
    assert skate.get(square.options(num_cpus=0.5, resources={"custom": 1}).remote(7)) == 49
    a, b = skate.remote(num_returns=2)(lambda: (1, 2)).remote()
    assert skate.get([a, b]) == [1, 2]


@pytest.mark.timeout(60)
def test_actor_with_options(api):
    c = Counter.options(num_cpus=0, resources={"custom": 1}, max_concurrency=2).remote(10)
    assert skate.get([c.incr.remote() for _ in range(3)]) == [11, 12, 13]
    assert skate.get(c.incr.remote(by=5)) == 18
    assert skate.get(c.resources.remote()).get("custom") == 1.0
    a = AsyncActor.remote()
    assert skate.get([a.echo.remote(i) for i in range(5)]) == list(range(5))


@pytest.mark.timeout(60)
def test_enable_task_events_false_goes_through(api):
    from skate.util import state

    unseen = f"square_unseen_{api}"
    assert skate.get(square.options(enable_task_events=False, name=unseen).remote(3)) == 9
    quiet = Counter.options(enable_task_events=False).remote(1)
    assert skate.get([quiet.incr.remote(), quiet.incr.options(enable_task_events=False).remote()]) == [2, 3]
    seen = f"square_seen_{api}"  # a later call of the same driver, with events on
    assert skate.get(square.options(name=seen).remote(4)) == 16
    skate.kill(quiet)
    if api == "client":  # (the state API is not served through the client; the driver's is)
        return
    assert wait_until(lambda: state.list_tasks(filters=[("name", "=", seen)]), timeout=15)
    assert not state.list_tasks(filters=[("name", "=", unseen)])


@pytest.mark.timeout(60)
def test_put_get_wait_with_timeouts(api):
    ref = skate.put({"a": [1, 2, 3]})
    assert skate.get(ref) == {"a": [1, 2, 3]}
    slow = sleeper.remote(30)
    with pytest.raises(GetTimeoutError):
        skate.get(slow, timeout=0.2)
    fast = sleeper.remote(0)
    ready, not_ready = skate.wait([slow, fast], num_returns=1, timeout=20)
    assert ready == [fast] and not_ready == [slow]
    ready, not_ready = skate.wait([slow], timeout=0.1)
    assert ready == [] and not_ready == [slow]
    skate.cancel(slow, force=True)


@pytest.mark.timeout(60)
def test_cancel_and_kill(api):
    ref = sleeper.remote(60)
    time.sleep(0.5)
    skate.cancel(ref)
    with pytest.raises((TaskCancelledError, skate.exceptions.WorkerCrashedError)):
        skate.get(ref, timeout=30)
    c = Counter.remote()
    assert skate.get(c.incr.remote()) == 1
    skate.kill(c)
    with pytest.raises(skate.exceptions.RayActorError):
        skate.get(c.incr.remote(), timeout=30)


@pytest.mark.timeout(60)
def test_named_detached_actors_and_namespaces(api):
    name = f"named-{api}"
    c = Counter.options(name=name, namespace="client-ns", lifetime="detached").remote()
    assert skate.get(c.incr.remote()) == 1
    same = skate.get_actor(name, namespace="client-ns")
    assert skate.get(same.incr.remote()) == 2
    with pytest.raises(ValueError):
        skate.get_actor(name)  # another namespace
    skate.kill(same)


@pytest.mark.timeout(60)
def test_nested_refs(api):
    inner = [skate.put(i) for i in range(5)]
    assert skate.get(total.remote(inner)) == 10
    outer = skate.put(inner)
    back = skate.get(outer)
    assert skate.get(back) == list(range(5))

    @skate.remote
    def make_refs():
        return [skate.put("x"), skate.put("y")]

    refs = skate.get(make_refs.remote())
    assert skate.get(refs) == ["x", "y"]


@pytest.mark.timeout(60)
def test_errors_carry_the_remote_traceback(api):
    with pytest.raises(ValueError, match="boom") as info:
        skate.get(fail.remote("boom"))
    assert isinstance(info.value, RayTaskError)
    assert "fail" in str(info.value) and "Traceback" in str(info.value)


@pytest.mark.timeout(90)
def test_large_object(api):
    big = np.arange(5_000_000, dtype=np.int64)  # 40 MB: streamed in chunks through the client
    ref = skate.put(big)
    assert np.array_equal(skate.get(ref), big)
    assert int(skate.get(square.remote(ref))[-1]) == 4_999_999**2

    @skate.remote
    def make(n):
        return np.ones(n, dtype=np.uint8)

    assert skate.get(make.remote(30_000_000)).sum() == 30_000_000


@pytest.mark.timeout(60)
def test_await_ref_and_runtime_context(api):
    async def main():
        return await square.remote(6)

    assert asyncio.run(main()) == 36
    ctx = skate.get_runtime_context()
    assert ctx.get_job_id() and ctx.get_node_id() and ctx.namespace
    assert any(n["Alive"] for n in skate.nodes())
    assert skate.cluster_resources()["CPU"] == 4


# -- client only --------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_init_returns_a_context_and_shutdown_disconnects(head):
    if skate.is_initialized():
        skate.shutdown()
    with skate.init(f"ray://127.0.0.1:{head.client_port}", namespace="ctx-ns") as ctx:
        assert skate.is_initialized()
        assert ctx["namespace"] == "ctx-ns" == skate.get_runtime_context().namespace
        assert skate.get(square.remote(3)) == 9
    assert not skate.is_initialized()
    ctx = skate.client(head.client_address).namespace("built").connect()
    assert skate.get_runtime_context().namespace == "built"
    ctx.disconnect()
    assert not skate.is_initialized()
    skate.init(head.client_address)  # the module's head stays in use (see conftest's no_leftovers)


@pytest.mark.timeout(60)
def test_dropped_refs_are_released_on_the_proxy(client):
    def proxy_holds() -> int:
        return client.call("stats")["held"]

    before = proxy_holds()
    refs = [skate.put(i) for i in range(50)]
    kept = refs[7]
    assert proxy_holds() == before + 50
    del refs
    assert wait_until(lambda: proxy_holds() == before + 1, timeout=10)
    assert skate.get(kept) == 7  # what the client still holds is not freed


@pytest.mark.timeout(60)
def test_unserializable_argument_is_named(client):
    import threading

    with pytest.raises(TypeError, match="lock"):
        square.remote(threading.Lock())
    assert skate.get(square.remote(2)) == 4  # the session is fine afterwards
