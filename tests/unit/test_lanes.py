"""The worker main thread's inbox and its lanes (`core_worker.lanes`), over real socket pairs:
what the main thread gets, in which order, and what a bad frame on a lane closes."""

from __future__ import annotations

import os
import socket
import threading
import time

import msgspec
import pytest

from skate.core_worker import lanes as lanes_module
from skate.core_worker.lanes import MainThreadInbox
from skate.protocol.framing import NOTIFY, REQUEST, RESPONSE, FrameDecoder, pack_frame
from skate.protocol.messages import TaskReply, TaskSpec


def _spec(n: int) -> TaskSpec:
    return TaskSpec(n.to_bytes(16, "little"), "A.m", 1, ["w", "addr"], method="m", actor_id=b"a" * 16)


def _call(req_id: int, spec: TaskSpec) -> bytes:
    return pack_frame([REQUEST, req_id, "push_actor_task", msgspec.to_builtins(spec)])


def _reply(sock: socket.socket) -> list:
    decoder = FrameDecoder()
    while True:
        data = sock.recv(1 << 16)
        assert data, "the lane closed before its reply"
        got = decoder.feed(data)
        if got:
            return got[0]


class Fixture:
    def __init__(self) -> None:
        self.ran: list[bytes] = []
        self.inbox = MainThreadInbox(self.run)
        self.callers: list[socket.socket] = []

    def run(self, spec: TaskSpec) -> TaskReply:
        self.ran.append(spec.task_id)
        return TaskReply([[0, [0, b"x"]]], 0.0)

    def lane(self) -> socket.socket:
        """A lane as the executor accepts one: a slot first, then the socket."""
        assert self.inbox.reserve()
        caller, worker = socket.socketpair()
        self.callers.append(caller)
        self.inbox.add_lane(worker)
        return caller

    def serve(self, n: int) -> list:
        """Run the next n items as the main thread does: (run, spec, reply) in, reply out."""
        got = []
        for _ in range(n):
            run, spec, sink = self.inbox.get()
            got.append(spec)
            if run is not None:
                sink.send(run(spec))
        return got

    def close(self) -> None:
        self.inbox.close()
        for sock in self.callers:
            sock.close()


@pytest.fixture
def fx():
    f = Fixture()
    yield f
    f.close()


@pytest.mark.timeout(10)
def test_a_call_read_from_a_lane_runs_and_its_reply_goes_back_on_the_lane(fx):
    caller = fx.lane()
    caller.sendall(_call(7, _spec(1)))
    fx.serve(1)
    kind, req_id, error, payload = _reply(caller)
    assert (kind, req_id, error) == (RESPONSE, 7, None)
    assert TaskReply.from_wire(payload).returns == [[0, [0, b"x"]]]
    assert fx.ran == [_spec(1).task_id] and fx.inbox.lane_count == 1


@pytest.mark.timeout(10)
def test_queued_items_wake_a_main_thread_waiting_on_its_lanes(fx):
    caller = fx.lane()
    fx.inbox.put((None, "first", None))  # (as the I/O thread queues a call)
    assert fx.serve(1) == ["first"]  # also takes the lane in
    got: list = []
    waiting = threading.Thread(target=lambda: got.extend(fx.serve(2)))
    waiting.start()
    fx.inbox.put((None, "queued", None))  # from another thread, while the main thread polls
    caller.sendall(_call(1, _spec(2)))
    waiting.join(5)
    assert not waiting.is_alive()
    assert sorted(map(str, got)) == sorted(["queued", str(_spec(2))])


@pytest.mark.timeout(10)
def test_frames_read_at_once_run_in_order(fx):
    caller = fx.lane()
    caller.sendall(b"".join(_call(i, _spec(i)) for i in range(5)))
    fx.serve(5)
    assert fx.ran == [_spec(i).task_id for i in range(5)]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "bad",
    [
        b"\x05\x00\x00\x00\xc1\xc1\xc1\xc1\xc1",  # not msgpack
        pack_frame([NOTIFY, "push_actor_task", []]),  # not a request
        pack_frame([REQUEST, 1, "kill_actor", {}]),  # another method
        pack_frame([REQUEST, 1, "push_actor_task", ["not", "a", "spec"]]),  # a malformed spec
    ],
    ids=["garbage", "notify", "method", "spec"],
)
def test_a_bad_frame_closes_its_lane_only(fx, bad):
    bad_caller, good_caller = fx.lane(), fx.lane()
    _take_lanes_in(fx)
    assert fx.inbox.lane_count == 2
    bad_caller.sendall(bad)
    good_caller.sendall(_call(3, _spec(3)))
    fx.serve(1)
    assert fx.ran == [_spec(3).task_id] and _reply(good_caller)[1] == 3
    assert fx.inbox.lane_count == 1
    assert bad_caller.recv(10) == b""  # closed on the worker's side


def _put_when(fx: Fixture, condition, timeout: float = 5.0) -> None:
    """Queue an item once `condition` holds (from another thread, as the I/O thread would)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    fx.inbox.put((None, "woken", None))


def _take_lanes_in(fx: Fixture) -> None:
    fx.inbox.put((None, "take the lanes in", None))
    fx.serve(1)


@pytest.mark.timeout(10)
def test_a_streaming_call_is_refused_on_a_lane(fx):
    caller, other = fx.lane(), fx.lane()
    _take_lanes_in(fx)
    spec = _spec(4)
    spec.generator = ["streaming", 0, 0]
    caller.sendall(_call(1, spec))
    other.sendall(_call(2, _spec(5)))  # both readable when the main thread polls
    fx.serve(1)
    assert fx.ran == [_spec(5).task_id] and fx.inbox.lane_count == 1
    assert caller.recv(10) == b""


@pytest.mark.timeout(10)
def test_a_caller_closing_its_lane_drops_it(fx):
    caller, other = fx.lane(), fx.lane()
    _take_lanes_in(fx)
    caller.close()
    other.sendall(_call(2, _spec(5)))
    fx.serve(1)
    assert fx.inbox.lane_count == 1 and _reply(other)[1] == 2


@pytest.mark.timeout(10)
def test_no_lane_is_accepted_past_the_limit_and_a_dropped_one_frees_its_slot(fx, monkeypatch):
    monkeypatch.setattr(lanes_module, "MAX_LANES", 1)
    first = fx.lane()
    assert not fx.inbox.reserve()  # (the executor then answers the caller no)
    _take_lanes_in(fx)
    first.close()
    waker = threading.Thread(target=_put_when, args=(fx, lambda: fx.inbox.lane_count == 0))
    waker.start()
    fx.serve(1)  # polls: reads the close, drops the lane, then gets the waker's item
    waker.join(5)
    second = fx.lane()
    _take_lanes_in(fx)
    second.sendall(_call(1, _spec(1)))
    fx.serve(1)
    assert _reply(second)[1] == 1 and fx.inbox.lane_count == 1


@pytest.mark.timeout(10)
def test_close_leaves_no_descriptor_open():
    before = len(os.listdir("/proc/self/fd"))
    f = Fixture()
    f.lane()
    f.inbox.put((None, "in", None))
    f.serve(1)
    f.close()
    assert len(os.listdir("/proc/self/fd")) == before
