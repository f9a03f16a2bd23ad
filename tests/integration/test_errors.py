"""Task failures, retries and cancellation on a real cluster."""

from __future__ import annotations

import os
import time

import pytest

import skate
from skate.exceptions import RayTaskError, TaskCancelledError, WorkerCrashedError
from tests.integration._helpers import read_counter, wait_for


@skate.remote
def raises_value_error(msg):
    raise ValueError(msg)


@skate.remote
def passthrough(x):
    return x


@skate.remote
def sleeper(seconds, marker=None):
    if marker:
        with open(marker, "a") as f:
            f.write("started\n")
    time.sleep(seconds)
    return "slept"


def test_task_exception_is_both_ray_task_error_and_original(cluster):
    ref = raises_value_error.remote("boom-1234")
    with pytest.raises(RayTaskError) as info:
        skate.get(ref, timeout=30)
    err = info.value
    assert isinstance(err, ValueError)
    text = str(err)
    assert "boom-1234" in text
    assert "raises_value_error" in text
    assert "Traceback" in text
    assert isinstance(err.cause, ValueError) and err.cause.args == ("boom-1234",)
    with pytest.raises(ValueError, match="boom-1234"):
        skate.get(ref, timeout=30)
    # and caught as the base error class
    with pytest.raises(skate.exceptions.RayError):
        skate.get(ref, timeout=30)


def test_error_propagates_through_dependent_tasks(cluster):
    bad = raises_value_error.remote("root-cause")
    downstream = passthrough.remote(passthrough.remote(bad))
    with pytest.raises(ValueError, match="root-cause") as info:
        skate.get(downstream, timeout=30)
    assert isinstance(info.value, RayTaskError)
    # a get of a list raises the error too
    with pytest.raises(ValueError):
        skate.get([skate.put(1), downstream], timeout=30)


def test_error_through_a_nested_get(cluster):
    @skate.remote
    def outer():
        return skate.get(raises_value_error.remote("deep"), timeout=30)

    with pytest.raises(ValueError, match="deep") as info:
        skate.get(outer.remote(), timeout=30)
    assert isinstance(info.value, RayTaskError)


def test_user_exception_with_custom_init(cluster):
    class CustomError(Exception):
        def __init__(self, code, detail):
            super().__init__(code, detail)
            self.code = code
            self.detail = detail

        def __str__(self):
            return f"code={self.code} detail={self.detail}"

    @skate.remote
    def fail():
        raise CustomError(418, "teapot")

    with pytest.raises(CustomError) as info:
        skate.get(fail.remote(), timeout=30)
    err = info.value
    assert isinstance(err, RayTaskError)
    assert err.code == 418 and err.detail == "teapot"
    assert "teapot" in str(err) and "fail" in str(err)


def test_user_exception_whose_init_does_not_round_trip(cluster):
    # args == ("code=418 detail=teapot",) but __init__ needs two: pickle cannot rebuild it as is.
    # Ray reports such an error as a RayError carrying the remote message; it must never surface
    # as a bare TypeError raised while deserializing (which looks like the task raised TypeError).
    class FormattedError(Exception):
        def __init__(self, code, detail):
            super().__init__(f"code={code} detail={detail}")

    @skate.remote
    def fail_formatted():
        raise FormattedError(418, "teapot")

    with pytest.raises(skate.exceptions.RayError) as info:
        skate.get(fail_formatted.remote(), timeout=30)
    assert "teapot" in str(info.value)
    assert "fail_formatted" in str(info.value)
    assert skate.get(passthrough.remote(1), timeout=30) == 1


def test_unpicklable_exception_still_reports(cluster):
    import threading

    class HoldsLock(Exception):
        def __init__(self):
            super().__init__("holds a lock")
            self.lock = threading.Lock()

    @skate.remote
    def fail():
        raise HoldsLock()

    with pytest.raises(RayTaskError) as info:
        skate.get(fail.remote(), timeout=30)
    assert "holds a lock" in str(info.value)
    assert skate.get(passthrough.remote(1), timeout=30) == 1


def test_unpicklable_return_value_is_an_error_not_a_crash(cluster):
    import threading

    @skate.remote(max_retries=0)
    def returns_lock():
        return threading.Lock()

    with pytest.raises(skate.exceptions.RayError) as info:
        skate.get(returns_lock.remote(), timeout=30)
    assert not isinstance(info.value, WorkerCrashedError)
    assert "lock" in str(info.value).lower()


def test_worker_crash_without_retries(cluster):
    @skate.remote(max_retries=0)
    def crash():
        os._exit(1)

    start = time.monotonic()
    with pytest.raises(WorkerCrashedError):
        skate.get(crash.remote(), timeout=30)
    assert time.monotonic() - start < 15
    assert skate.get(passthrough.remote("alive"), timeout=30) == "alive"


def test_worker_crash_is_retried(cluster, tmp_path):
    counter = str(tmp_path / "attempts")

    @skate.remote(max_retries=2)
    def crash_once(path):
        with open(path, "a") as f:
            f.write("x\n")
        with open(path) as f:
            if len(f.readlines()) == 1:
                os._exit(1)
        return "recovered"

    assert skate.get(crash_once.remote(counter), timeout=60) == "recovered"
    assert read_counter(counter) == 2


def test_crash_retries_are_bounded(cluster, tmp_path):
    counter = str(tmp_path / "attempts")

    @skate.remote
    def always_crash(path):
        with open(path, "a") as f:
            f.write("x\n")
        os._exit(1)

    with pytest.raises(WorkerCrashedError):
        skate.get(always_crash.options(max_retries=2).remote(counter), timeout=60)
    assert read_counter(counter) == 3  # one try and two retries


def test_retry_exceptions_true(cluster, tmp_path):
    counter = str(tmp_path / "attempts")

    @skate.remote(max_retries=3, retry_exceptions=True)
    def flaky(path):
        with open(path, "a") as f:
            f.write("x\n")
        with open(path) as f:
            n = len(f.readlines())
        if n < 3:
            raise ValueError(f"attempt {n}")
        return n

    assert skate.get(flaky.remote(counter), timeout=60) == 3
    assert read_counter(counter) == 3


def test_exceptions_are_not_retried_by_default(cluster, tmp_path):
    counter = str(tmp_path / "attempts")

    @skate.remote(max_retries=3)
    def fails(path):
        with open(path, "a") as f:
            f.write("x\n")
        raise ValueError("no retry")

    with pytest.raises(ValueError):
        skate.get(fails.remote(counter), timeout=30)
    assert read_counter(counter) == 1


def test_retry_exceptions_list(cluster, tmp_path):
    value_counter = str(tmp_path / "value")
    key_counter = str(tmp_path / "key")

    @skate.remote(max_retries=2, retry_exceptions=[ValueError])
    def fails_with(path, kind):
        with open(path, "a") as f:
            f.write("x\n")
        raise kind("listed?")

    with pytest.raises(KeyError):
        skate.get(fails_with.remote(key_counter, KeyError), timeout=30)
    assert read_counter(key_counter) == 1  # KeyError is not listed: no retry
    with pytest.raises(ValueError):
        skate.get(fails_with.remote(value_counter, ValueError), timeout=30)
    assert read_counter(value_counter) == 3  # one try and max_retries=2 retries


def test_cancel_queued_task(cluster, tmp_path):
    blockers = [sleeper.remote(4, str(tmp_path / f"b{i}")) for i in range(4)]
    assert wait_for(lambda: all((tmp_path / f"b{i}").exists() for i in range(4)), timeout=30)
    queued = sleeper.remote(4, str(tmp_path / "queued"))
    time.sleep(0.2)
    start = time.monotonic()
    skate.cancel(queued)
    with pytest.raises(TaskCancelledError):
        skate.get(queued, timeout=30)
    assert time.monotonic() - start < 2.0
    for ref in blockers:
        skate.cancel(ref)
    for ref in blockers:
        with pytest.raises(TaskCancelledError):
            skate.get(ref, timeout=30)
    time.sleep(0.3)
    assert not (tmp_path / "queued").exists()  # it never ran


def test_cancel_running_task(cluster, tmp_path):
    marker = tmp_path / "running"
    ref = sleeper.remote(60, str(marker))
    assert wait_for(marker.exists, timeout=30)
    start = time.monotonic()
    skate.cancel(ref)
    with pytest.raises(TaskCancelledError):
        skate.get(ref, timeout=30)
    assert time.monotonic() - start < 5.0
    assert skate.get(passthrough.remote("after"), timeout=30) == "after"


def test_cancel_running_task_force(cluster, tmp_path):
    marker = tmp_path / "running"

    @skate.remote
    def ignores_interrupts(path):
        with open(path, "w") as f:
            f.write(str(os.getpid()))
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                time.sleep(0.05)
            except BaseException:  # noqa: S110  (deliberately eats the soft cancel)
                pass
        return "finished"

    ref = ignores_interrupts.remote(str(marker))
    assert wait_for(lambda: marker.exists() and marker.read_text(), timeout=30)
    pid = int(marker.read_text())
    start = time.monotonic()
    skate.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        skate.get(ref, timeout=30)
    assert time.monotonic() - start < 5.0
    assert wait_for(lambda: not _alive(pid), timeout=10), "force-cancel did not kill the worker"
    assert skate.get(passthrough.remote("after"), timeout=30) == "after"


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_cancel_finished_task_keeps_value(cluster):
    ref = passthrough.remote("kept")
    assert skate.get(ref, timeout=30) == "kept"
    skate.cancel(ref)
    skate.cancel(ref, force=True)
    time.sleep(0.2)
    assert skate.get(ref, timeout=30) == "kept"


def test_cancel_is_not_retried(cluster, tmp_path):
    counter = str(tmp_path / "attempts")

    @skate.remote(max_retries=3, retry_exceptions=True)
    def slow(path):
        with open(path, "a") as f:
            f.write("x\n")
        time.sleep(60)

    ref = slow.remote(counter)
    assert wait_for(lambda: read_counter(counter) == 1, timeout=30)
    skate.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        skate.get(ref, timeout=30)
    time.sleep(0.5)
    assert read_counter(counter) == 1


def test_cancel_is_recursive(cluster, tmp_path):
    child_marker = tmp_path / "child-started"
    child_done = tmp_path / "child-done"

    @skate.remote
    def child(started, done):
        with open(started, "w") as f:
            f.write("x")
        time.sleep(3)
        with open(done, "w") as f:
            f.write("x")

    @skate.remote
    def parent(started, done):
        return skate.get(child.remote(started, done), timeout=60)

    ref = parent.remote(str(child_marker), str(child_done))
    assert wait_for(child_marker.exists, timeout=30)
    skate.cancel(ref)
    with pytest.raises(TaskCancelledError):
        skate.get(ref, timeout=30)
    time.sleep(3.5)
    assert not child_done.exists(), "the child task kept running after its parent was cancelled"


def test_cancel_task_waiting_for_a_dependency(cluster, tmp_path):
    marker = tmp_path / "dependent-ran"

    @skate.remote
    def dependent(value, path):
        with open(path, "w") as f:
            f.write(str(value))
        return value

    upstream = sleeper.remote(2)
    ref = dependent.remote(upstream, str(marker))
    time.sleep(0.2)
    start = time.monotonic()
    skate.cancel(ref)
    with pytest.raises(TaskCancelledError):
        skate.get(ref, timeout=30)
    assert time.monotonic() - start < 1.5
    assert skate.get(upstream, timeout=30) == "slept"  # the dependency itself is untouched
    time.sleep(0.3)
    assert not marker.exists()


def test_cancel_multi_return_task_cancels_every_return(cluster, tmp_path):
    marker = tmp_path / "started"

    @skate.remote(num_returns=2)
    def two(path):
        with open(path, "w") as f:
            f.write("x")
        time.sleep(60)
        return 1, 2

    a, b = two.remote(str(marker))
    assert wait_for(marker.exists, timeout=30)
    skate.cancel(b)  # either ref names the task
    for ref in (a, b):
        with pytest.raises(TaskCancelledError):
            skate.get(ref, timeout=30)
