"""CoreWorker.request's one-shot reply: a user thread waits on a lock the I/O thread releases."""

from __future__ import annotations

import asyncio
import threading

import pytest

from skate.core_worker.core import _Reply, _start_request


class _FakeConn:
    def __init__(self, loop: asyncio.AbstractEventLoop, behaviour: str):
        self.loop = loop
        self.behaviour = behaviour

    def call(self, method, payload=None):
        if self.behaviour == "raise":
            raise RuntimeError("cannot send")
        fut = self.loop.create_future()
        if self.behaviour == "ok":
            self.loop.call_soon(fut.set_result, {"method": method, "payload": payload})
        elif self.behaviour == "error":
            self.loop.call_soon(fut.set_exception, ValueError("refused"))
        elif self.behaviour == "cancel":
            self.loop.call_soon(fut.cancel)
        return fut


def _serve(behaviour: str, timeout: float | None = 5.0):
    """Send one request from this thread through a loop on another, as CoreWorker.request does."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        reply = _Reply()
        loop.call_soon_threadsafe(_start_request, _FakeConn(loop, behaviour), "m", 1, reply)
        return reply.wait(timeout)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.mark.timeout(10)
def test_the_reply_value_reaches_the_waiting_thread():
    assert _serve("ok") == {"method": "m", "payload": 1}


@pytest.mark.timeout(10)
def test_a_failed_request_raises_its_error():
    with pytest.raises(ValueError, match="refused"):
        _serve("error")


@pytest.mark.timeout(10)
def test_a_send_that_raises_does_not_leave_the_thread_hanging():
    with pytest.raises(RuntimeError, match="cannot send"):
        _serve("raise", timeout=None)


@pytest.mark.timeout(10)
def test_a_cancelled_request_raises_and_no_reply_times_out():
    import concurrent.futures

    with pytest.raises(concurrent.futures.CancelledError):
        _serve("cancel")
    with pytest.raises(TimeoutError):
        _serve("never", timeout=0.05)
