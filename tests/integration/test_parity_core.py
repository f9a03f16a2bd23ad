"""Ray's behaviour in the core worker: get fails fast, exit_actor, cancellation, runtime context."""

from __future__ import annotations

import os
import threading
import time

import pytest

import skate
from skate.exceptions import ActorDiedError, RayActorError, TaskCancelledError
from tests.integration._helpers import wait_for


@skate.remote
def fails():
    raise ValueError("early failure")


@skate.remote
def hangs(path):
    while not os.path.exists(path):
        time.sleep(0.01)
    return "released"


@pytest.mark.timeout(60)
def test_get_of_several_refs_raises_as_soon_as_one_failed(cluster, tmp_path):
    release = str(tmp_path / "release")
    slow = hangs.remote(release)
    try:
        with pytest.raises(ValueError, match="early failure"):
            skate.get([slow, fails.remote()], timeout=30)  # would wait 30 s for `slow` otherwise
    finally:
        open(release, "w").close()
    assert skate.get(slow, timeout=30) == "released"


@pytest.mark.timeout(60)
def test_get_of_an_error_and_a_ready_value_raises_the_error(cluster):
    with pytest.raises(ValueError):
        skate.get([skate.put(1), fails.remote()], timeout=30)


@skate.remote
class Quitter:
    def __init__(self, marker):
        import atexit

        atexit.register(lambda: open(marker, "w").write("atexit ran"))

    def ping(self):
        return os.getpid()

    def quit(self):
        skate.actor.exit_actor()


@pytest.mark.timeout(60)
def test_exit_actor_fails_its_call_and_runs_atexit(cluster, tmp_path):
    marker = str(tmp_path / "atexit")
    a = Quitter.remote(marker)
    pid = skate.get(a.ping.remote(), timeout=30)
    with pytest.raises(RayActorError) as info:
        skate.get(a.quit.remote(), timeout=30)
    assert isinstance(info.value, ActorDiedError)
    assert wait_for(lambda: os.path.exists(marker), timeout=20), "the actor's atexit handler did not run"
    assert wait_for(lambda: not _alive(pid), timeout=20)
    with pytest.raises(ActorDiedError):
        skate.get(a.ping.remote(), timeout=30)


@skate.remote
class AsyncQuitter:
    async def quit(self):
        skate.actor.exit_actor()

    async def ping(self):
        return 1


@pytest.mark.timeout(60)
def test_exit_actor_in_an_async_actor(cluster):
    a = AsyncQuitter.remote()
    assert skate.get(a.ping.remote(), timeout=30) == 1
    with pytest.raises(ActorDiedError):
        skate.get(a.quit.remote(), timeout=30)
    with pytest.raises(ActorDiedError):
        skate.get(a.ping.remote(), timeout=30)


@pytest.mark.timeout(60)
def test_ray_ready_and_ray_terminate(cluster, tmp_path):
    marker = str(tmp_path / "atexit")
    a = Quitter.remote(marker)
    assert skate.get(a.__ray_ready__.remote(), timeout=30) is True
    pid = skate.get(a.ping.remote(), timeout=30)
    a.__ray_terminate__.remote()
    assert wait_for(lambda: not _alive(pid), timeout=20)
    assert os.path.exists(marker)  # a graceful exit: atexit handlers ran


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@skate.remote
def catches_cancel(started):
    open(started, "w").close()
    try:
        time.sleep(60)
    except KeyboardInterrupt:
        return "caught", skate.get_runtime_context().is_canceled()
    return "not cancelled", False


@pytest.mark.timeout(60)
def test_cancel_raises_keyboard_interrupt_in_the_task(cluster, tmp_path):
    started = str(tmp_path / "started")
    ref = catches_cancel.remote(started)
    assert wait_for(lambda: os.path.exists(started), timeout=30)
    skate.cancel(ref)
    assert skate.get(ref, timeout=30) == ("caught", True)


@skate.remote
def sleeper(started):
    open(started, "w").close()
    time.sleep(60)


@skate.remote
def cancel_borrowed(refs):
    skate.cancel(refs[0])
    return True


@pytest.mark.timeout(60)
def test_cancel_of_a_borrowed_ref_reaches_its_owner(cluster, tmp_path):
    started = str(tmp_path / "started")
    ref = sleeper.remote(started)
    assert wait_for(lambda: os.path.exists(started), timeout=30)
    assert skate.get(cancel_borrowed.remote([ref]), timeout=30) is True
    with pytest.raises(TaskCancelledError):
        skate.get(ref, timeout=30)


@skate.remote
class Ids:
    async def task_id(self, gate):
        import asyncio

        mine = skate.get_runtime_context().get_task_id()
        await asyncio.sleep(0.05 if gate else 0)
        return mine, skate.get_runtime_context().get_task_id()

    def context(self):
        return skate.get_runtime_context().get()


@pytest.mark.timeout(60)
def test_each_async_actor_call_sees_its_own_task_id(cluster):
    a = Ids.remote()
    results = skate.get([a.task_id.remote(i % 2 == 0) for i in range(6)], timeout=30)
    ids = [r[0] for r in results]
    assert all(before == after for before, after in results)  # no mix-up across an await
    assert len(set(ids)) == 6


@pytest.mark.timeout(60)
def test_runtime_context_get_has_actor_id_in_actors_and_no_task_id_on_the_driver(cluster):
    a = Ids.remote()
    inside = skate.get(a.context.remote(), timeout=30)
    assert inside.get("actor_id") and inside.get("task_id")
    outside = skate.get_runtime_context().get()
    assert "task_id" not in outside and "job_id" in outside


@pytest.mark.timeout(60)
def test_threaded_actor_calls_keep_their_own_task_ids(cluster):
    @skate.remote(max_concurrency=4)
    class Threaded:
        def tid(self, barrier_path, n):
            mine = skate.get_runtime_context().get_task_id()
            open(f"{barrier_path}.{n}", "w").close()
            deadline = time.monotonic() + 10
            while sum(os.path.exists(f"{barrier_path}.{i}") for i in range(4)) < 4:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            return mine == skate.get_runtime_context().get_task_id(), mine

    t = Threaded.remote()
    base = f"/tmp/skate-barrier-{os.getpid()}-{threading.get_ident()}"
    out = skate.get([t.tid.remote(base, i) for i in range(4)], timeout=30)
    for i in range(4):
        os.unlink(f"{base}.{i}")
    assert all(same for same, _ in out) and len({tid for _, tid in out}) == 4


@pytest.mark.timeout(60)
def test_deprecated_runtime_context_properties_return_ids_and_warn(cluster):
    ctx = skate.get_runtime_context()
    with pytest.warns(DeprecationWarning, match="get_node_id"):
        node = ctx.node_id
    assert node.hex() == ctx.get_node_id()
    with pytest.warns(DeprecationWarning):
        assert ctx.job_id.hex() == ctx.get_job_id()
    with pytest.warns(DeprecationWarning):
        assert ctx.task_id is None  # the driver runs no task

    @skate.remote
    class Who:
        def ids(self):
            import warnings

            c = skate.get_runtime_context()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return c.actor_id.hex(), c.task_id.hex(), c.get_actor_id(), c.get_task_id()

    actor_hex, task_hex, actor_id, task_id = skate.get(Who.remote().ids.remote(), timeout=30)
    assert actor_hex == actor_id and task_hex == task_id


@skate.remote(max_restarts=1)
class SlowRestart:
    def __init__(self, gate):
        if skate.get_runtime_context().was_current_actor_reconstructed:
            deadline = time.monotonic() + 30
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.01)

    def die(self):
        os._exit(1)

    def ping(self):
        return "pong"


@pytest.mark.timeout(90)
def test_calls_to_a_restarting_actor_fail_fast_without_retries_and_wait_with_them(cluster, tmp_path):
    from skate.exceptions import ActorUnavailableError

    gate = str(tmp_path / "gate")
    a = SlowRestart.remote(gate)
    assert skate.get(a.ping.remote(), timeout=30) == "pong"
    with pytest.raises(RayActorError):
        skate.get(a.die.remote(), timeout=30)
    waiting = a.ping.options(max_task_retries=-1).remote()  # may be retried: waits for the restart
    start = time.monotonic()
    with pytest.raises(ActorUnavailableError):
        skate.get(a.ping.remote(), timeout=30)  # the restart is held at the gate: fails fast
    assert time.monotonic() - start < 20
    ready, _ = skate.wait([waiting], timeout=0)
    assert not ready
    open(gate, "w").close()
    assert skate.get(waiting, timeout=30) == "pong"
    assert skate.get(a.ping.remote(), timeout=30) == "pong"


@pytest.mark.timeout(60)
def test_a_handle_collected_while_its_count_lock_is_held_does_not_deadlock(cluster):
    """Regression: ActorHandle.__del__ run by the collector on a thread that held the handle
    counter's lock re-entered a plain Lock and hung the process."""
    import gc

    @skate.remote
    class Tiny:
        def ping(self):
            return 1

    core = skate._api._core()
    count_lock = core.actors._lock if hasattr(core, "actors") else core.refs._lock
    done = threading.Event()

    def body():
        class Cycle:
            pass

        holder = Cycle()
        holder.self = holder
        holder.handle = Tiny.remote()
        del holder
        gc.disable()
        try:
            with count_lock:
                gc.collect()  # runs ActorHandle.__del__ here, on this thread
        finally:
            gc.enable()
        done.set()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    assert done.wait(20), "releasing a collected handle deadlocked"
