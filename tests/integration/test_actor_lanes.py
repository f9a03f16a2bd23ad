"""Lanes (`core_worker.lanes`): a caller that waits on each call to a plain actor gets its own
connection, read by the actor's main thread. Order, failures, cancellation and exit behave as
on the usual path; actors that run calls elsewhere decline a lane."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

import skate
from skate._api import _core
from skate.core_worker import actor_submitter
from skate.exceptions import ActorDiedError, RayActorError, TaskCancelledError
from tests.integration._actor_helpers import wait_pid_gone
from tests.integration._helpers import in_threads, wait_for

WARM = actor_submitter.LANE_AFTER + 4  # sync calls after which the lane is open


def _lane_count() -> int:
    """In an actor: how many lanes its main thread reads."""
    from skate._api import _core

    return _core().handlers["open_lane"].__self__.inbox.lane_count


@skate.remote
class Log:
    def __init__(self):
        self.seen = []

    def add(self, x):
        self.seen.append(x)
        return x

    def lanes(self):
        return _lane_count()

    def log(self):
        return self.seen

    def stream(self, n):
        for i in range(n):
            self.seen.append(("stream", i))
            yield i

    def pid(self):
        return os.getpid()

    def die(self):
        os._exit(1)

    def sleep(self, seconds, marker):
        open(marker, "w").close()
        time.sleep(seconds)
        return "slept"

    def leave(self):
        skate.actor.exit_actor()


def _warm(actor) -> None:
    for _ in range(WARM):
        assert skate.get(actor.add.remote(-1)) == -1
    assert wait_for(lambda: skate.get(actor.lanes.remote()) == 1, 10)


@pytest.mark.timeout(60)
def test_sync_calls_move_to_a_lane_and_every_call_keeps_its_order(cluster):
    log = Log.remote()
    _warm(log)
    expected = []
    for round_ in range(5):
        first = log.add.remote((round_, "sync"))  # goes on the lane (the actor is idle)
        burst = [log.add.remote((round_, i)) for i in range(20)]  # queued behind it
        expected += [(round_, "sync"), *((round_, i) for i in range(20))]
        assert skate.get(first) == (round_, "sync")
        skate.get(burst)
    seen = [x for x in skate.get(log.log.remote()) if x != -1]
    assert [tuple(x) for x in seen] == expected
    assert skate.get(log.lanes.remote()) == 1  # one lane per caller, reused


@pytest.mark.timeout(60)
def test_a_streaming_call_between_lane_calls_keeps_its_place(cluster):
    log = Log.remote()
    _warm(log)
    before = [log.add.remote(("before", i)) for i in range(10)]  # on the lane
    stream = log.stream.options(num_returns="streaming").remote(3)  # on the connection
    after = [log.add.remote(("after", i)) for i in range(10)]  # on the lane again
    assert [skate.get(ref) for ref in stream] == [0, 1, 2]
    skate.get(before + after)
    seen = [tuple(x) for x in skate.get(log.log.remote()) if x != -1]
    assert seen == [
        *(("before", i) for i in range(10)),
        *(("stream", i) for i in range(3)),
        *(("after", i) for i in range(10)),
    ]


@pytest.mark.timeout(60)
def test_an_actor_dying_in_a_lane_call_fails_it_and_its_restart_gets_a_new_lane(cluster):
    log = Log.options(max_restarts=1).remote()
    _warm(log)
    first_pid = skate.get(log.pid.remote())
    with pytest.raises(RayActorError):
        skate.get(log.die.remote())
    assert wait_for(lambda: _pid_after_restart(log) not in (None, first_pid), 30)
    _warm(log)  # the new process takes a lane again


def _pid_after_restart(actor):
    try:
        return skate.get(actor.pid.remote(), timeout=5)
    except Exception:
        return None


@pytest.mark.timeout(60)
def test_a_running_lane_call_can_be_cancelled(cluster, tmp_path):
    log = Log.remote()
    _warm(log)
    marker = str(tmp_path / "started")
    ref = log.sleep.remote(60, marker)
    assert wait_for(lambda: os.path.exists(marker), 10)  # running (a queued call is another path)
    skate.cancel(ref)
    with pytest.raises(TaskCancelledError):
        skate.get(ref, timeout=30)
    assert skate.get(log.add.remote("after")) == "after"


@pytest.mark.timeout(60)
def test_exit_actor_in_a_lane_call_ends_the_actor(cluster):
    log = Log.remote()
    _warm(log)
    pid = skate.get(log.pid.remote())
    with pytest.raises(RayActorError):
        skate.get(log.leave.remote())
    with pytest.raises(ActorDiedError):
        skate.get(log.add.remote(1), timeout=30)
    assert wait_pid_gone(pid)


@skate.remote(max_concurrency=2)
class Threaded:
    def lanes(self):
        return _lane_count()


@skate.remote
class Async:
    async def lanes(self):
        return _lane_count()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cls", [Threaded, Async], ids=["threaded", "async"])
def test_actors_that_run_calls_elsewhere_decline_a_lane(cluster, cls):
    submitter = _core().actor_submitter
    declined = submitter.lanes_declined
    actor = cls.remote()
    for _ in range(WARM):
        assert skate.get(actor.lanes.remote()) == 0
    assert wait_for(lambda: submitter.lanes_declined == declined + 1, 10)
    assert skate.get(actor.lanes.remote()) == 0
    state = submitter.states[actor._actor_id]
    assert state.lane is None
    assert not [
        c for c in _core()._lanes if getattr(c, "name", "") == f"lane {state.address[-20:]}"
    ]  # closed


@pytest.mark.timeout(60)
def test_lanes_can_be_switched_off(cluster, monkeypatch):
    monkeypatch.setattr(actor_submitter, "LANES", False)
    log = Log.remote()
    for _ in range(WARM):
        skate.get(log.add.remote(0))
    state = _core().actor_submitter.states[log._actor_id]
    assert state.direct_calls == 0 and state.lane is None  # no lane was even asked for
    assert skate.get(log.lanes.remote()) == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bad", [b"\x00" * 16, "not bytes", None], ids=["other-actor", "str", "none"])
def test_a_lane_request_naming_another_actor_is_declined(cluster, bad):
    log = Log.remote()
    _warm(log)
    core = _core()
    address = core.actor_submitter.states[log._actor_id].address
    lane = asyncio.run_coroutine_threadsafe(core.lane(address, bad), core.loop).result(30)
    assert lane is None  # declined, and the connection it came on closed
    assert skate.get(log.lanes.remote()) == 1  # the caller's own lane is untouched


# -- the caller's end: user threads read their replies (core_worker.caller_lane) ------------
@skate.remote
def plus_one(x):
    return x + 1


def _lane_state(actor):
    return _core().actor_submitter.states[actor._actor_id]


@pytest.mark.timeout(60)
def test_sync_calls_are_answered_to_the_calling_thread(cluster):
    log = Log.remote()
    _warm(log)
    submitter = _core().actor_submitter
    reads = submitter.lane_reads
    for i in range(50):
        assert skate.get(log.add.remote(i)) == i
    assert submitter.lane_reads - reads >= 45  # read off the lane by this thread
    assert not submitter.lane_calls


@pytest.mark.timeout(60)
def test_a_lane_call_nobody_waits_for_still_ends(cluster):
    """Its reply is read by the loop's sweep: the call ends, and the next calls go on."""
    log = Log.remote()
    _warm(log)
    state = _lane_state(log)
    log.add.remote("unwaited")  # on the lane; its result is dropped at once
    assert wait_for(lambda: state.finished == state.next_seq and not state.lane_inflight, 10)
    assert "unwaited" in skate.get(log.log.remote())


@pytest.mark.timeout(60)
def test_other_waiters_get_a_lane_calls_result(cluster):
    """Another thread's get, wait() and a task depending on it: the loop reads the reply."""
    import threading

    log = Log.remote()
    _warm(log)
    ref = log.sleep.remote(0.3, os.devnull)
    got: list = []
    other = threading.Thread(target=lambda: got.append(skate.get(ref, timeout=30)))
    other.start()
    ready, _ = skate.wait([ref], timeout=30)
    assert ready == [ref]
    other.join(30)
    assert got == ["slept"]
    ref2 = log.add.remote(41)
    assert skate.get(plus_one.remote(ref2), timeout=30) == 42  # a dependency of a task


@pytest.mark.timeout(60)
def test_a_get_of_a_lane_call_times_out_then_succeeds(cluster):
    log = Log.remote()
    _warm(log)
    ref = log.sleep.remote(1.0, os.devnull)
    with pytest.raises(skate.exceptions.GetTimeoutError):
        skate.get(ref, timeout=0.05)
    assert skate.get(ref, timeout=30) == "slept"


@pytest.mark.timeout(60)
def test_an_error_in_a_lane_call_is_raised(cluster):
    @skate.remote
    class Failing:
        def ok(self, x):
            return x

        def fail(self):
            raise ValueError("broken on purpose")

    actor = Failing.remote()
    for _ in range(WARM):
        skate.get(actor.ok.remote(1))
    assert wait_for(lambda: _lane_state(actor).lane is not None, 10)
    with pytest.raises(ValueError, match="broken on purpose"):
        skate.get(actor.fail.remote())
    assert skate.get(actor.ok.remote(2)) == 2


@pytest.mark.timeout(60)
def test_a_call_retried_after_the_actor_died_in_it_on_the_lane(cluster, tmp_path):
    """The user thread reading the lane sees it break: the call is resent to the restart."""

    @skate.remote(max_restarts=1, max_task_retries=1)
    class Once:
        def ok(self):
            return os.getpid()

        def die_once(self, marker):
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            return "survived"

    actor = Once.remote()
    for _ in range(WARM):
        skate.get(actor.ok.remote())
    assert wait_for(lambda: _lane_state(actor).lane is not None, 10)
    assert skate.get(actor.die_once.remote(str(tmp_path / "died")), timeout=30) == "survived"


@pytest.mark.timeout(60)
def test_an_actor_whose_handle_is_dropped_after_a_lane_call_goes_away(cluster):
    log = Log.remote()
    _warm(log)
    pid = skate.get(log.pid.remote())
    log.add.remote("last")  # never waited for: the sweep ends it, and the handle with it
    del log
    assert wait_pid_gone(pid, 20)


@pytest.mark.timeout(60)
def test_an_actor_whose_handle_is_dropped_after_read_lane_calls_goes_away(cluster):
    """Replies read by the caller leave their bookkeeping for the loop, which must still
    run it (and let the handle go) though nothing else wakes the loop."""
    log = Log.remote()
    _warm(log)
    pid = skate.get(log.pid.remote())
    for i in range(5):
        skate.get(log.add.remote(i))
    del log
    assert wait_pid_gone(pid, 20)


@pytest.mark.timeout(120)
def test_threads_mixing_sync_calls_bursts_and_waits_on_a_lane(cluster):
    """Four threads share one lane: sync gets (read off the lane by whichever thread pushed),
    bursts queued behind them, wait() and gets of other threads' refs. Every call runs once,
    each thread's calls in order, and nothing is left in flight."""
    log = Log.remote()
    _warm(log)
    shared: list = []

    def caller(k: int) -> None:
        for i in range(40):
            ref = log.add.remote((k, i))
            if i % 4 == 0:
                assert skate.get(ref, timeout=60) == (k, i)
            elif i % 4 == 1:
                ready, _ = skate.wait([ref], timeout=60)
                assert ready == [ref]
            elif i % 4 == 2:
                shared.append(ref)
                if len(shared) > 3:
                    skate.get(shared[-3], timeout=60)  # often another thread's call

    errors = in_threads(caller, 4, timeout=90)
    assert not errors, errors
    seen = [tuple(x) for x in skate.get(log.log.remote()) if x != -1]
    assert len(seen) == 160
    for k in range(4):
        assert [i for who, i in seen if who == k] == list(range(40))
    state = _lane_state(log)
    assert wait_for(lambda: state.finished == state.next_seq, 10)
    assert not _core().actor_submitter.lane_calls


@pytest.mark.timeout(60)
def test_a_burst_goes_on_the_lane_behind_a_pushed_call(cluster):
    """The loop sends queued calls on the lane too (it reads every reply meanwhile), then
    hands the lane back to the caller's next sync call."""
    log = Log.remote()
    _warm(log)
    submitter = _core().actor_submitter
    sends, reads = submitter.lane_sends, submitter.lane_reads
    assert skate.get([log.add.remote(i) for i in range(200)]) == list(range(200))
    assert submitter.lane_sends - sends >= 150
    lane = _lane_state(log).lane
    assert wait_for(lambda: lane.reader is None and not lane.loop_calls and not lane.watched, 10)
    for i in range(20):
        assert skate.get(log.add.remote(i)) == i
    assert submitter.lane_reads - reads >= 15  # sync calls read by this thread again
