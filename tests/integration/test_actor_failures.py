"""Actor failures: kill, constructor errors, crashes, restarts, task retries, exit_actor."""

from __future__ import annotations

import os
import time

import pytest

import skate
from skate.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from tests.integration._actor_helpers import pid_alive, wait_pid_gone
from tests.integration._helpers import read_counter, wait_for


@skate.remote
class Phoenix:
    def __init__(self, log=None):
        self.value = 0
        if log:
            with open(log, "a") as f:
                f.write("init\n")

    def pid(self):
        return os.getpid()

    def incr(self):
        self.value += 1
        return self.value

    def reconstructed(self):
        return skate.get_runtime_context().was_current_actor_reconstructed

    def die(self):
        os._exit(1)

    def die_once(self, marker):
        # The first attempt finds no marker: it writes one and dies; a retry succeeds.
        if not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write("died")
            os._exit(1)
        self.value += 1
        return ("retried", os.getpid(), self.value)

    def leave(self):
        skate.actor.exit_actor()
        return "not reached"


@skate.remote
class BadInit:
    def __init__(self, msg):
        raise RuntimeError(msg)

    def ping(self):
        return "pong"


@skate.remote
def exit_actor_in_task():
    try:
        skate.actor.exit_actor()
    except Exception as exc:
        return type(exc).__name__
    return "no error"


def test_kill_makes_later_calls_fail(cluster):
    a = Phoenix.remote()
    pid = skate.get(a.pid.remote(), timeout=30)
    skate.kill(a)
    with pytest.raises(ActorDiedError) as info:
        skate.get(a.incr.remote(), timeout=30)
    assert isinstance(info.value, RayActorError)
    assert wait_pid_gone(pid, timeout=10)
    with pytest.raises(RayActorError):
        skate.get(a.pid.remote(), timeout=30)
    # killing again is harmless
    skate.kill(a)


def test_no_call_submitted_after_kill_runs(cluster, tmp_path):
    # kill() has returned: whatever is submitted afterwards must fail, never run on the actor.
    # (a race: several actors make a slip visible)
    actors = [Phoenix.options(num_cpus=0).remote() for _ in range(12)]
    skate.get([a.pid.remote() for a in actors], timeout=30)
    ran = []
    for i, a in enumerate(actors):
        skate.kill(a)
        marker = str(tmp_path / f"ran-{i}")
        ref = a.die_once.remote(marker)  # creates `marker` if it runs
        with pytest.raises(RayActorError):
            skate.get(ref, timeout=30)
        if os.path.exists(marker):
            ran.append(i)
    assert ran == [], f"calls sent after kill() ran on actors {ran}"


def test_kill_rejects_non_handles(cluster):
    with pytest.raises(ValueError):  # Ray's type for a non-actor
        skate.kill("not an actor")


def test_kill_with_restart_allowed_restarts(cluster):
    a = Phoenix.options(max_restarts=1).remote()
    pid = skate.get(a.pid.remote(), timeout=30)
    assert skate.get(a.incr.remote(), timeout=30) == 1
    skate.kill(a, no_restart=False)
    assert wait_pid_gone(pid, timeout=10)
    new_pid = wait_for(lambda: _pid_or_none(a), timeout=15)
    assert new_pid is not None and new_pid != pid
    assert skate.get(a.incr.remote(), timeout=30) == 1  # state was reset
    assert skate.get(a.reconstructed.remote(), timeout=30) is True


def _pid_or_none(handle):
    try:
        return skate.get(handle.pid.remote(), timeout=30)
    except RayActorError:
        return None


def test_kill_no_restart_overrides_max_restarts(cluster):
    a = Phoenix.options(max_restarts=3).remote()
    pid = skate.get(a.pid.remote(), timeout=30)
    skate.kill(a)
    assert wait_pid_gone(pid, timeout=10)
    with pytest.raises(ActorDiedError):
        skate.get(a.pid.remote(), timeout=30)


def test_constructor_error_fails_every_call(cluster):
    a = BadInit.remote("constructor-broke-7781")
    for _ in range(2):
        with pytest.raises(ActorDiedError) as info:
            skate.get(a.ping.remote(), timeout=30)
        assert "constructor-broke-7781" in str(info.value)
    # no restart for a failed constructor
    b = BadInit.options(max_restarts=2).remote("again-8812")
    with pytest.raises(ActorDiedError, match="again-8812"):
        skate.get(b.ping.remote(), timeout=30)


def test_constructor_error_with_a_failed_argument(cluster):
    @skate.remote
    def broken():
        raise ValueError("arg-failed")

    a = Phoenix.remote(broken.remote())
    with pytest.raises(RayActorError):
        skate.get(a.pid.remote(), timeout=30)


def call_until_available(make_call, timeout: float = 30):
    """The result of a call to an actor that may still be restarting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return skate.get(make_call(), timeout=timeout)
        except ActorUnavailableError:
            assert time.monotonic() < deadline, "the actor never came back"
            time.sleep(0.05)


def test_crash_restarts_the_actor(cluster, tmp_path):
    log = str(tmp_path / "inits")
    a = Phoenix.options(max_restarts=1).remote(log)
    pid = skate.get(a.pid.remote(), timeout=30)
    assert skate.get(a.incr.remote(), timeout=30) == 1
    assert skate.get(a.reconstructed.remote(), timeout=30) is False
    with pytest.raises(RayActorError):
        skate.get(a.die.options(max_task_retries=0).remote(), timeout=30)
    # While it restarts, calls without retries fail fast with ActorUnavailableError (as Ray).
    new_pid = call_until_available(lambda: a.pid.remote())
    assert new_pid != pid
    assert not pid_alive(pid)
    assert skate.get(a.incr.remote(), timeout=30) == 1  # the constructor ran again
    assert read_counter(log) == 2
    assert skate.get(a.reconstructed.remote(), timeout=30) is True
    # restarts are exhausted now
    with pytest.raises(RayActorError):
        skate.get(a.die.remote(), timeout=30)
    with pytest.raises(ActorDiedError):
        skate.get(a.incr.remote(), timeout=30)
    assert wait_pid_gone(new_pid, timeout=10)
    assert read_counter(log) == 2


def test_crash_without_restarts_is_final(cluster):
    a = Phoenix.remote()
    pid = skate.get(a.pid.remote(), timeout=30)
    with pytest.raises(ActorDiedError):
        skate.get(a.die.remote(), timeout=30)
    with pytest.raises(ActorDiedError):
        skate.get(a.incr.remote(), timeout=30)
    assert wait_pid_gone(pid, timeout=10)


def test_infinite_restarts(cluster):
    a = Phoenix.options(max_restarts=-1).remote()
    pids = {skate.get(a.pid.remote(), timeout=30)}
    for _ in range(3):
        with pytest.raises(RayActorError):
            skate.get(a.die.remote(), timeout=30)
        pids.add(call_until_available(lambda: a.pid.remote()))
    assert len(pids) == 4


def test_max_task_retries_retries_an_in_flight_call(cluster, tmp_path):
    marker = str(tmp_path / "died-once")
    a = Phoenix.options(max_restarts=1, max_task_retries=1).remote()
    pid = skate.get(a.pid.remote(), timeout=30)
    assert skate.get(a.incr.remote(), timeout=30) == 1
    tag, new_pid, value = skate.get(a.die_once.remote(marker), timeout=30)
    assert tag == "retried"
    assert new_pid != pid
    assert value == 1  # ran on the restarted actor, whose state was reset
    assert os.path.exists(marker)
    assert skate.get(a.reconstructed.remote(), timeout=30) is True


def test_method_level_max_task_retries(cluster, tmp_path):
    marker = str(tmp_path / "died-once")
    a = Phoenix.options(max_restarts=1).remote()  # max_task_retries defaults to 0
    skate.get(a.pid.remote(), timeout=30)
    tag, _, _ = skate.get(a.die_once.options(max_task_retries=1).remote(marker), timeout=30)
    assert tag == "retried"


def test_calls_queued_behind_a_crash_reach_the_restarted_actor(cluster):
    a = Phoenix.options(max_restarts=1, max_task_retries=-1).remote()
    pid = skate.get(a.pid.remote(), timeout=30)
    crash = a.die.options(max_task_retries=0).remote()
    after = [a.incr.remote() for _ in range(3)]
    with pytest.raises(RayActorError):
        skate.get(crash, timeout=30)
    assert skate.get(after, timeout=30) == [1, 2, 3]
    assert skate.get(a.pid.remote(), timeout=30) != pid


def test_exit_actor_ends_it_cleanly(cluster):
    a = Phoenix.options(max_restarts=2).remote()
    pid = skate.get(a.pid.remote(), timeout=30)
    with pytest.raises(ActorDiedError, match="exit_actor"):  # as Ray: the call that exited fails
        skate.get(a.leave.remote(), timeout=30)
    assert wait_pid_gone(pid, timeout=10)
    with pytest.raises(ActorDiedError):
        skate.get(a.incr.remote(), timeout=30)
    with pytest.raises(ActorDiedError):
        skate.get(a.pid.remote(), timeout=30)


def test_exit_actor_from_an_async_actor(cluster):
    @skate.remote
    class AsyncLeaver:
        async def leave(self):
            skate.actor.exit_actor()

        async def pid(self):
            return os.getpid()

    a = AsyncLeaver.options(max_restarts=1).remote()
    pid = skate.get(a.pid.remote(), timeout=30)
    with pytest.raises(ActorDiedError, match="exit_actor"):
        skate.get(a.leave.remote(), timeout=30)
    assert wait_pid_gone(pid, timeout=10)
    with pytest.raises(ActorDiedError):
        skate.get(a.pid.remote(), timeout=30)


def test_exit_actor_outside_an_actor_raises(cluster):
    with pytest.raises(TypeError):
        skate.actor.exit_actor()
    assert skate.get(exit_actor_in_task.remote(), timeout=30) == "TypeError"


def test_method_error_is_not_an_actor_death(cluster):
    @skate.remote
    class Grumpy:
        def bad(self):
            raise ZeroDivisionError("grumpy")

        def ok(self):
            return "fine"

    a = Grumpy.options(max_restarts=0).remote()
    with pytest.raises(RayTaskError) as info:
        skate.get(a.bad.remote(), timeout=30)
    assert isinstance(info.value, ZeroDivisionError)
    assert not isinstance(info.value, RayActorError)
    assert skate.get(a.ok.remote(), timeout=30) == "fine"


@skate.remote
class Parent:
    def __init__(self):
        self.child = Phoenix.remote()

    def child_pid(self):
        return skate.get(self.child.pid.remote(), timeout=30)

    def pid(self):
        return os.getpid()


def test_child_actors_die_with_their_owner(cluster):
    parent = Parent.remote()
    child_pid = skate.get(parent.child_pid.remote(), timeout=30)
    parent_pid = skate.get(parent.pid.remote(), timeout=30)
    skate.kill(parent)
    assert wait_pid_gone(parent_pid, timeout=10)
    assert wait_pid_gone(child_pid, timeout=10), "a child actor outlived its owner"


def test_in_flight_call_fails_fast_when_the_actor_is_killed(cluster, tmp_path):
    @skate.remote
    class Sleeper:
        def sleep(self, seconds, started):
            with open(started, "w") as f:
                f.write("x")
            time.sleep(seconds)
            return "woke"

        def ready(self):
            return True

    s = Sleeper.remote()
    assert skate.get(s.ready.remote(), timeout=30)
    started = tmp_path / "started"
    ref = s.sleep.remote(20, str(started))
    queued = s.ready.remote()
    assert wait_for(started.exists, timeout=30)  # the call runs; `queued` waits behind it
    t0 = time.monotonic()
    skate.kill(s)
    with pytest.raises(RayActorError):
        skate.get(ref, timeout=30)
    with pytest.raises(RayActorError):
        skate.get(queued, timeout=30)
    assert time.monotonic() - t0 < 10


def test_async_actor_restarts(cluster):
    @skate.remote
    class AsyncPhoenix:
        def __init__(self):
            self.n = 0

        async def incr(self):
            self.n += 1
            return self.n, os.getpid()

        async def die(self):
            os._exit(1)

        async def reconstructed(self):
            return skate.get_runtime_context().was_current_actor_reconstructed

    a = AsyncPhoenix.options(max_restarts=1).remote()
    n, pid = skate.get(a.incr.remote(), timeout=30)
    assert n == 1
    with pytest.raises(RayActorError):
        skate.get(a.die.remote(), timeout=30)
    n, new_pid = call_until_available(lambda: a.incr.remote())
    assert n == 1 and new_pid != pid
    assert skate.get(a.reconstructed.remote(), timeout=30) is True


def test_results_from_before_a_kill_stay_readable(cluster):
    a = Phoenix.remote()
    done = a.incr.remote()
    assert skate.get(done, timeout=30) == 1
    skate.kill(a)
    with pytest.raises(RayActorError):
        skate.get(a.incr.remote(), timeout=30)
    assert skate.get(done, timeout=30) == 1


def test_detached_named_actor_keeps_its_name_across_restarts(cluster):
    a = Phoenix.options(name="failures-detached", lifetime="detached", max_restarts=1).remote()
    pid = skate.get(a.pid.remote(), timeout=30)
    with pytest.raises(RayActorError):
        skate.get(a.die.remote(), timeout=30)
    again = skate.get_actor("failures-detached")
    new_pid = call_until_available(lambda: again.pid.remote())
    assert new_pid != pid
    assert skate.get(again.reconstructed.remote(), timeout=30) is True
    skate.kill(again)
    assert wait_pid_gone(new_pid, timeout=10)
