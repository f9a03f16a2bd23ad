"""Calls a user thread pushes itself, and replies the executing thread sends itself.

A call to an idle actor (every earlier call of this caller has ended, no ref among its
arguments, not a generator) is written to the actor's socket by the calling thread; so is a
task when a worker leased for its function is idle and no task of that function waits. The
worker's thread that ran a call writes its reply. These tests check that the short cut is
taken where it should be, and that it never breaks the order of an actor's calls or loses a
reply: behind a call still waiting for an argument, across threads, after a restart; and that
a task pushed this way is retried, cancelled and accounted for as any other.
"""

from __future__ import annotations

import time

import pytest

import skate
from skate.core_worker.caller_lane import CallerLane
from skate.core_worker.core import LAZY_BACKLOG
from skate.protocol.connection import Connection
from tests.integration._helpers import in_threads


@skate.remote
class Recorder:
    def __init__(self) -> None:
        self.seen: list = []

    def record(self, value):
        self.seen.append(value)
        return len(self.seen)

    def log(self):
        return list(self.seen)

    def pid(self):
        import os

        return os.getpid()


@skate.remote
def late(value, delay):
    time.sleep(delay)
    return value


@pytest.fixture
def pushes(monkeypatch):
    """Counts the calls the driver's user threads pushed themselves."""
    counted: list[str] = []
    real = Connection.call_threadsafe

    def spy(self, method, payload=None, on_done=None):
        fut = real(self, method, payload, on_done)
        if fut is not None:
            counted.append(method)
        return fut

    real_lane_push = CallerLane.push

    def lane_spy(self, spec, item):
        pushed = real_lane_push(self, spec, item)
        if pushed:
            counted.append("push_actor_task")
        return pushed

    monkeypatch.setattr(Connection, "call_threadsafe", spy)
    monkeypatch.setattr(CallerLane, "push", lane_spy)
    return counted


def test_sync_calls_to_an_idle_actor_are_pushed_by_the_calling_thread(cluster, pushes):
    a = Recorder.remote()
    skate.get(a.record.remote(-1))  # the first call finds the actor's address
    pushes.clear()
    for i in range(50):
        assert skate.get(a.record.remote(i)) == i + 2
    assert pushes.count("push_actor_task") >= 45  # each found the actor idle


def test_quiet_bookkeeping_does_not_pile_up(cluster):
    """Each direct push posts its bookkeeping without waking the loop; replies run what is
    left, and a caller reading its replies off a lane wakes the loop once LAZY_BACKLOG wait,
    so a driver that only makes sync calls keeps no more than that."""
    from skate._api import _core

    a = Recorder.remote()
    skate.get(a.record.remote(0))
    for i in range(300):
        skate.get(a.record.remote(i))
    assert len(_core()._posted) <= LAZY_BACKLOG + 1


def test_a_reply_handled_before_submit_returns_keeps_its_result(cluster, monkeypatch):
    """The reply may be handled on the I/O thread before the submitting thread has even
    returned (it was preempted right after its write): the result must still be there."""
    real = Connection.call_threadsafe

    def reply_first(self, method, payload=None, on_done=None):
        fut = real(self, method, payload, on_done)
        if fut is not None:
            deadline = time.monotonic() + 10
            while not fut.done() and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(0.05)  # and its callbacks have run
        return fut

    a = Recorder.remote()
    skate.get(a.record.remote(0))
    monkeypatch.setattr(Connection, "call_threadsafe", reply_first)
    for i in range(5):
        assert skate.get(a.record.remote(i), timeout=20) == i + 2
    assert skate.get([a.record.remote(i) for i in range(20)], timeout=20) == list(range(7, 27))


def test_a_call_never_overtakes_one_waiting_for_its_argument(cluster, pushes):
    """Call 0 waits for a task's result; calls 1..n have plain arguments. They must still
    run after it: the caller pushes itself only when every earlier call has ended."""
    a = Recorder.remote()
    skate.get(a.record.remote("start"))
    pushes.clear()
    first = a.record.remote(late.remote("waited", 0.5))
    later = [a.record.remote(f"plain-{i}") for i in range(5)]
    skate.get([first, *later])
    assert skate.get(a.log.remote()) == ["start", "waited", *[f"plain-{i}" for i in range(5)]]
    assert pushes.count("push_actor_task") <= 1  # only the log() call found it idle


def test_calls_from_many_threads_keep_each_threads_order(cluster):
    """Threads mixing sync and pipelined calls: every call runs once, each thread's in order."""
    a = Recorder.remote()
    skate.get(a.record.remote(("warm", 0)))

    def caller(k: int) -> None:
        for i in range(60):
            ref = a.record.remote((k, i))
            if i % 3 == 0:
                skate.get(ref)

    errors = in_threads(caller, 4)
    assert not errors
    seen = skate.get(a.log.remote())[1:]
    assert len(seen) == 240
    for k in range(4):
        mine = [i for who, i in seen if who == k]
        assert mine == list(range(60))


def test_refs_among_the_arguments_take_the_loop(cluster, pushes):
    """A call carrying refs is sent by the I/O thread after what the refs posted."""
    a = Recorder.remote()
    skate.get(a.record.remote(0))
    pushes.clear()
    inner = skate.put("inside")
    assert skate.get(a.record.remote([inner])) == 2
    assert pushes == []


def test_a_restarted_actor_gets_the_calls_made_after_it_died(cluster):
    """The connection to a killed actor closes: calls go back through the I/O thread, which
    finds the restarted actor; later idle calls are pushed directly again."""
    a = Recorder.options(max_restarts=1, max_task_retries=-1).remote()
    pid = skate.get(a.pid.remote())
    skate.kill(a, no_restart=False)
    deadline = time.monotonic() + 30
    new_pid = pid
    while new_pid == pid and time.monotonic() < deadline:
        try:
            new_pid = skate.get(a.pid.remote(), timeout=30)
        except skate.exceptions.RayActorError:
            time.sleep(0.1)
    assert new_pid != pid
    for i in range(20):
        assert skate.get(a.record.remote(i)) == i + 1
    skate.kill(a)


def test_replies_of_threaded_and_async_actors_all_arrive(cluster):
    """Replies sent by pool threads and by an async actor's loop thread."""

    @skate.remote(max_concurrency=4)
    class Threaded:
        def work(self, i):
            time.sleep(0.001)
            return i

    @skate.remote
    class Async:
        async def work(self, i):
            return i

    for cls in (Threaded, Async):
        actor = cls.remote()
        assert skate.get([actor.work.remote(i) for i in range(300)]) == list(range(300))
        assert [skate.get(actor.work.remote(i)) for i in range(30)] == list(range(30))
        skate.kill(actor)


# -- tasks -------------------------------------------------------------------------------
@skate.remote
def square(x):
    return x * x


@skate.remote
def die_if_marked(path):
    """Exits its worker the first time `path` exists (removing it), else returns its pid."""
    import os

    if os.path.exists(path):
        os.remove(path)
        os._exit(1)
    return os.getpid()


@skate.remote
def nap(seconds):
    time.sleep(seconds)
    return seconds


def test_sync_tasks_are_pushed_by_the_calling_thread(cluster, pushes):
    skate.get(square.remote(0))  # leases a worker for the function
    pushes.clear()
    for i in range(50):
        assert skate.get(square.remote(i)) == i * i
    assert pushes.count("push_task") >= 45  # each found the leased worker idle


def test_tasks_with_refs_among_the_arguments_take_the_loop(cluster, pushes):
    skate.get(square.remote(1))
    pushes.clear()
    arg = skate.put(7)
    assert skate.get(square.remote(arg)) == 49
    assert pushes == []


def test_a_burst_after_a_direct_push_runs_every_task_once(cluster, pushes):
    """The first of a burst takes the idle lease; the rest queue on the loop behind it."""
    skate.get(square.remote(2))
    pushes.clear()
    assert skate.get([square.remote(i) for i in range(300)]) == [i * i for i in range(300)]
    assert 1 <= pushes.count("push_task") < 300


def test_tasks_from_many_threads_all_run_once(cluster):
    from skate._api import _core

    skate.get(square.remote(3))
    results: dict[int, list] = {}

    def caller(k: int) -> None:
        mine = []
        for i in range(60):
            ref = square.remote(k * 1000 + i)
            mine.append(ref if i % 3 else skate.get(ref))
        results[k] = [x if isinstance(x, int) else skate.get(x) for x in mine]

    errors = in_threads(caller, 4)
    assert not errors
    for k in range(4):
        assert results[k] == [(k * 1000 + i) ** 2 for i in range(60)]
    for i in range(100):
        skate.get(square.remote(i))
    assert len(_core()._posted) <= 2  # the quiet bookkeeping of direct pushes did not pile up


def test_a_direct_task_whose_worker_dies_is_retried(cluster, tmp_path, pushes):
    marker = tmp_path / "die"
    first = skate.get(die_if_marked.options(max_retries=1).remote(str(marker)))
    marker.touch()
    pushes.clear()
    second = skate.get(die_if_marked.options(max_retries=1).remote(str(marker)), timeout=60)
    assert pushes.count("push_task") >= 1  # the attempt that died was pushed directly
    assert second != first and not marker.exists()  # a new worker ran the retry


def test_a_direct_task_whose_worker_dies_without_retries_fails(cluster, tmp_path):
    marker = tmp_path / "die"
    skate.get(die_if_marked.options(max_retries=0).remote(str(marker)))
    marker.touch()
    with pytest.raises(skate.exceptions.WorkerCrashedError):
        skate.get(die_if_marked.options(max_retries=0).remote(str(marker)), timeout=60)
    assert skate.get(die_if_marked.options(max_retries=0).remote(str(marker))) > 0  # leases anew


def test_a_direct_task_can_be_cancelled(cluster, pushes):
    skate.get(nap.remote(0))
    pushes.clear()
    ref = nap.remote(60)
    assert pushes.count("push_task") == 1
    skate.cancel(ref)  # (its cancel follows its push on the worker's connection)
    started = time.monotonic()
    with pytest.raises((skate.exceptions.TaskCancelledError, skate.exceptions.RayTaskError)):
        skate.get(ref, timeout=30)
    assert time.monotonic() - started < 20
