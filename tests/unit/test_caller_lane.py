"""The caller's end of a lane (`core_worker.caller_lane`), over real socket pairs: what a
push writes, what a reader gets back (the reply, a timeout, a broken lane), and who may read."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from skate.core_worker.caller_lane import LOOP, USER, CallerLane
from skate.protocol.connection import ConnectionClosed
from skate.protocol.framing import NOTIFY, REQUEST, RESPONSE, FrameDecoder, pack_frame
from skate.protocol.messages import TaskSpec


class Item:
    pass


@pytest.fixture
def pair():
    caller, actor = socket.socketpair()
    lane = CallerLane(caller)
    yield lane, actor
    lane.close()
    actor.close()


def _spec() -> TaskSpec:
    return TaskSpec(b"t" * 16, "A.m", 1, ["w", "addr"], method="m", actor_id=b"a" * 16)


def _read_request(actor: socket.socket) -> list:
    decoder = FrameDecoder()
    while True:
        got = decoder.feed(actor.recv(1 << 16))
        if got:
            return got[0]


def test_a_push_writes_one_request_and_its_reply_comes_back(pair):
    lane, actor = pair
    item = Item()
    assert lane.push(_spec(), item)
    kind, req_id, method, spec = _read_request(actor)
    assert (kind, method, spec[0]) == (REQUEST, "push_actor_task", b"t" * 16)
    assert lane.pending == (req_id, item)
    assert not lane.push(_spec(), Item())  # one call at a time
    assert lane.take_reader(USER, item)
    actor.sendall(pack_frame([RESPONSE, req_id, None, [[[0, [0, b"ok"]]]]]))
    message = lane.read_reply(5)
    assert message[:3] == [RESPONSE, req_id, None]
    assert lane.release_reader(True) is item
    assert lane.pending is None and lane.reader is None


def test_a_reply_in_pieces_is_put_together(pair):
    lane, actor = pair
    lane.push(_spec(), Item())
    req_id = _read_request(actor)[1]
    frame = pack_frame([RESPONSE, req_id, None, [[[0, [0, b"x" * 1000]]]]])
    lane.take_reader(LOOP)
    actor.sendall(frame[:7])
    assert lane.read_nowait() is None  # (a socket pair: the piece is there at once)
    actor.sendall(frame[7:])
    assert lane.read_reply(5)[1] == req_id


def test_a_read_times_out_and_the_reply_is_read_later(pair):
    lane, actor = pair
    item = Item()
    lane.push(_spec(), item)
    req_id = _read_request(actor)[1]
    lane.take_reader(USER, item)
    started = time.monotonic()
    assert lane.read_reply(0.05) is None
    assert time.monotonic() - started < 2
    assert lane.release_reader(False) is None
    assert lane.pending[1] is item  # still in flight
    actor.sendall(pack_frame([RESPONSE, req_id, None, []]))
    assert lane.take_reader(USER, item)
    assert lane.read_reply(5)[1] == req_id


@pytest.mark.parametrize(
    "sent",
    [b"", b"\xff\xff\xff\x7f" + b"x" * 8, "other-id", "notify"],
    ids=["closed", "garbage", "another-reply", "notify"],
)
def test_a_broken_lane_is_reported_as_closed(pair, sent):
    lane, actor = pair
    lane.push(_spec(), Item())
    req_id = _read_request(actor)[1]
    if sent == "other-id":
        actor.sendall(pack_frame([RESPONSE, req_id + 7, None, []]))
    elif sent == "notify":
        actor.sendall(pack_frame([NOTIFY, "cancel_task", {}]))
    elif sent:
        actor.sendall(sent)
    else:
        actor.shutdown(socket.SHUT_RDWR)
    lane.take_reader(USER)
    assert isinstance(lane.read_reply(5), ConnectionClosed)


def test_one_reader_at_a_time_and_only_of_the_call_in_flight(pair):
    lane, actor = pair
    assert not lane.take_reader(USER)  # nothing in flight
    item = Item()
    lane.push(_spec(), item)
    assert not lane.take_reader(USER, Item())  # another call's
    assert lane.take_reader(LOOP)
    assert not lane.take_reader(USER, item)  # the loop reads it
    lane.release_reader(False)
    assert lane.take_reader(USER, item)


def test_closing_wakes_a_user_thread_reading_and_it_closes_the_socket(pair):
    lane, actor = pair
    item = Item()
    lane.push(_spec(), item)
    _read_request(actor)
    lane.take_reader(USER, item)
    got: list = []
    reader = threading.Thread(target=lambda: got.append(lane.read_reply(None)))
    reader.start()
    lane.close("test")  # (whether it waits in poll yet or not)
    reader.join(5)
    assert not reader.is_alive() and isinstance(got[0], ConnectionClosed)
    assert lane.sock.fileno() != -1  # the reader still holds it...
    lane.release_reader(True)
    assert lane.sock.fileno() == -1  # ...and closes it as it stops
    assert not lane.push(_spec(), Item())  # a closed lane takes nothing


def test_a_push_on_a_broken_socket_closes_the_lane(pair):
    lane, actor = pair
    actor.close()
    assert not lane.push(_spec(), Item())
    assert lane.closed and lane.pending is None


@pytest.fixture
def loop():
    from skate._event_loop import new_event_loop

    loop = new_event_loop()  # uvloop where installed, as Skate's own threads run
    yield loop
    loop.close()


def _run_until(loop, event: threading.Event, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not event.is_set() and time.monotonic() < deadline:
        loop.run_until_complete(_tick())
    return event.is_set()


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.01)


def test_a_lane_the_loop_watches_keeps_its_descriptor_until_the_loop_lets_go(loop, pair):
    """Closed by a user thread (a push that found the actor gone) while the loop polls it: the
    descriptor stays open, the loop hears the end of stream, and it closes once unwatched."""
    lane, actor = pair
    woke = threading.Event()

    def readable() -> None:
        assert isinstance(lane.read_all()[1], ConnectionClosed)
        lane.unwatch(loop)
        woke.set()

    assert lane.take_for_loop() and lane.watch(loop, readable)
    threading.Thread(target=lane.close, args=("a push failed",)).start()
    assert _run_until(loop, woke)
    assert lane.sock.fileno() == -1 and not lane.watched


def test_a_closed_lanes_number_goes_to_a_new_lane_only_once_unwatched(loop):
    """The hang this guards against: a lane closed while the loop still polled its
    descriptor left the loop a stale watch on that number, inherited by the next lane to get
    it, whose replies were then never read."""
    first, first_peer = socket.socketpair()
    old = CallerLane(first)
    assert old.watch(loop, lambda: None)
    old.close("the actor restarted")  # (the loop has not unwatched it yet)
    number = old.fd
    assert old.sock.fileno() == number  # not free: a new socket cannot get this number yet
    old.unwatch(loop)
    assert old.sock.fileno() == -1
    second, second_peer = socket.socketpair()
    new = CallerLane(second)
    heard = threading.Event()
    assert new.watch(loop, heard.set)
    second_peer.sendall(b"x")
    assert _run_until(loop, heard)  # the new lane is heard, whatever number it got
    new.close_on_loop(loop)
    assert new.sock.fileno() == -1
    for sock in (first_peer, second_peer):
        sock.close()


def test_the_loops_writer_callback_also_keeps_the_descriptor(loop, pair):
    lane, actor = pair
    assert lane.want_write(loop, lambda: None)
    lane.close("test")
    assert lane.sock.fileno() != -1
    lane.done_writing(loop)
    assert lane.sock.fileno() == -1
    assert not lane.want_write(loop, lambda: None)  # a closed lane takes no callbacks
    assert not lane.watch(loop, lambda: None)


def test_the_loop_reads_the_replies_and_the_reset_of_an_actor_that_died_in_one_go(loop, pair):
    """An actor killed with calls unread resets the lane: uvloop then polls the socket no more
    (after running the reader callback once), so that one read must also report the reset
    that lies behind the replies the actor wrote before it died."""
    lane, actor = pair
    items = {}
    assert lane.take_for_loop()
    for _ in range(3):
        item = Item()
        lane.send_from_loop(_spec(), item)
        items[len(items) + 1] = item
    actor.sendall(pack_frame([RESPONSE, 1, None, [[[0, [0, b"ok"]]]]]))  # it answers one...
    actor.close()  # ...and dies with the calls unread in its socket: a reset
    heard: list = []
    woke = threading.Event()

    def readable() -> None:
        heard.append(lane.read_all())
        lane.unwatch(loop)
        woke.set()

    assert lane.watch(loop, readable)
    assert _run_until(loop, woke)
    ((got, broke),) = heard
    assert [entry for entry, _ in got] == [items[1]]
    assert isinstance(broke, ConnectionClosed) and "reset" in str(broke).lower()
