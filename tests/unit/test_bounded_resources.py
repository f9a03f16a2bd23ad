"""Bounded resources (issue 12, hole 9): log forwarding under a line budget with a count of
what was dropped, bounded KV waiters in the GCS, and write backpressure on connections."""

from __future__ import annotations

import asyncio
import io
import os
import struct

import pytest

from skate import _config
from skate.core_worker.log_budget import LogBudget
from skate.core_worker.worker_main import LogStream
from skate.exceptions import RaySystemError
from skate.gcs.kv_waiters import KvWaiters
from skate.protocol.connection import NONCE_BYTES, handshake_mac
from skate.protocol.framing import REQUEST, FrameDecoder, pack_frame
from skate.protocol.transport import connect, listen, parse_address

pytestmark = pytest.mark.timeout(30)
TOKEN = b"bounded-test-token"


# -- the line budget --------------------------------------------------------------------------


def test_log_budget_allows_a_burst_then_the_rate_and_counts_the_rest():
    budget = LogBudget(rate=100, burst=50, now=0.0)
    assert budget.admit(80, now=0.0) == 50
    assert budget.dropped == 30
    assert budget.admit(10, now=0.05) == 5  # 0.05 s refills 5 lines
    assert budget.admit(1000, now=100.0) == 50  # refill is capped at the burst
    assert budget.take_dropped() == 30 + 5 + 950
    assert budget.take_dropped() == 0


class FakeRaylet:
    def __init__(self):
        self.closed = False
        self.sent: list = []

    def notify(self, method, payload):
        self.sent.append((method, payload))


class FakeCore:
    def __init__(self, loop):
        self.loop = loop
        self.raylet = FakeRaylet()
        self.job_id = "job-1"

    def post(self, fn):
        self.loop.call_soon_threadsafe(fn)


def test_log_stream_forwards_within_budget_and_tells_the_driver_how_many_were_dropped(monkeypatch):
    monkeypatch.setattr(_config, "LOG_LINES_PER_SECOND", 100.0)
    monkeypatch.setattr(_config, "LOG_LINES_BURST", 200)
    now = [0.0]

    async def main():
        core = FakeCore(asyncio.get_running_loop())
        file = io.StringIO()
        stream = LogStream(core, "out", file, clock=lambda: now[0])
        for i in range(5000):  # one burst from a tight loop
            stream.write(f"line {i}\n")
        await asyncio.sleep(0.05)
        forwarded = [line for _, p in core.raylet.sent for line in p["lines"]]
        assert 0 < len(forwarded) <= 200
        assert forwarded[0] == "line 0"
        assert file.getvalue().count("\n") == 5000  # the log file keeps everything
        now[0] += 5.0  # later, budget again: the driver hears what it missed
        await asyncio.sleep(1.2)
        notices = [line for _, p in core.raylet.sent for line in p["lines"] if line.startswith("[skate]")]
        assert len(notices) == 1
        assert "4800 lines of output were not forwarded" in notices[0]

    asyncio.run(main())


def test_log_stream_cuts_huge_lines_and_bounds_a_line_without_newline(monkeypatch):
    monkeypatch.setattr(_config, "MAX_LOG_LINE_CHARS", 100)

    async def main():
        core = FakeCore(asyncio.get_running_loop())
        stream = LogStream(core, "err", io.StringIO())
        stream.write("x" * 10_000 + "\n")
        for _ in range(1000):
            stream.write("y" * 1000)  # never a newline
        assert len(stream._partial) <= 100
        stream.write("\n")
        await asyncio.sleep(0.05)
        lines = [line for _, p in core.raylet.sent for line in p["lines"]]
        assert lines[0] == "x" * 100 + " [line cut]"
        assert lines[1] == "y" * 100

    asyncio.run(main())


# -- KV waiters --------------------------------------------------------------------------------


def test_kv_waiters_are_bounded_and_forgotten_on_timeout_or_close():
    async def main():
        waiters = KvWaiters(max_total=5, max_per_connection=3)
        a, b = object(), object()
        futs = [waiters.wait(("ns", b"k"), a, 10) for _ in range(3)]
        with pytest.raises(RaySystemError, match="too many callers"):
            waiters.wait(("ns", b"k"), a, 10)  # this connection's limit
        short = waiters.wait(("ns", b"other"), b, 0.05)
        waiters.wait(("ns", b"k"), b, 10)
        with pytest.raises(RaySystemError, match="too many callers"):
            waiters.wait(("ns", b"k2"), b, 10)  # the total limit
        with pytest.raises(asyncio.TimeoutError):
            await short
        await asyncio.sleep(0)
        assert len(waiters) == 4  # the timed-out waiter is gone, not parked until the key appears
        waiters.wake(("ns", b"k"), b"value")
        assert [await f for f in futs] == [b"value"] * 3
        await asyncio.sleep(0)
        assert len(waiters) == 0
        pending = [waiters.wait(("ns", b"never"), a, 60) for _ in range(3)]
        waiters.connection_closed(a)
        await asyncio.sleep(0)
        assert all(f.cancelled() for f in pending) and len(waiters) == 0
        assert waiters._by_key == {} and waiters._by_conn == {}

    asyncio.run(main())


# -- write backpressure ------------------------------------------------------------------------


async def _read_frame(reader) -> list:
    (n,) = struct.unpack("<I", await reader.readexactly(4))
    return FrameDecoder().feed(struct.pack("<I", n) + await reader.readexactly(n))[0]


def test_server_stops_reading_a_peer_that_does_not_read_its_replies(monkeypatch):
    monkeypatch.setattr(_config, "WRITE_HIGH_WATER_BYTES", 1024 * 1024)
    monkeypatch.setattr(_config, "WRITE_LOW_WATER_BYTES", 256 * 1024)
    reply = b"r" * (1024 * 1024)

    async def main():
        handled = []
        conns = []

        def big(conn, payload):
            handled.append(payload)
            conns.append(conn)
            return reply

        listener = await listen("tcp://127.0.0.1:0", TOKEN, {"big": big})
        host, port = parse_address(listener.address)[1].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port), limit=64 * 1024)
        hello = await _read_frame(reader)
        nonce = os.urandom(NONCE_BYTES)
        writer.write(pack_frame(["skate-auth", nonce, handshake_mac(TOKEN, "client", hello[1], nonce)]))
        assert (await _read_frame(reader))[0] == "skate-ok"
        n = 300
        for i in range(n):  # 300 MiB of replies asked for, none read yet
            writer.write(pack_frame([REQUEST, i + 1, "big", i]))
        deadline = asyncio.get_running_loop().time() + 20
        while not (conns and conns[0]._reading_paused):  # the server stops taking requests ...
            assert asyncio.get_running_loop().time() < deadline, "the server never paused reading"
            await asyncio.sleep(0.01)
        stalled = len(handled)
        assert stalled < n / 3, stalled  # ... long before it has taken them all ...
        await asyncio.sleep(0.3)
        assert len(handled) == stalled  # ... and stays stopped while we do not read
        for _ in range(n):  # reading lets it go on, to the end
            frame = await asyncio.wait_for(_read_frame(reader), 10)
            assert frame[3] == reply
        assert len(handled) == n
        writer.close()
        listener.close()

    asyncio.run(main())


def test_a_connection_whose_peer_never_reads_is_closed_at_the_buffer_limit(monkeypatch):
    monkeypatch.setattr(_config, "WRITE_HIGH_WATER_BYTES", 512 * 1024)
    monkeypatch.setattr(_config, "WRITE_LOW_WATER_BYTES", 128 * 1024)
    monkeypatch.setattr(_config, "MAX_WRITE_BUFFER_BYTES", 8 * 1024 * 1024)

    async def main():
        stop_reading = asyncio.Event()

        async def peer(reader, writer):  # authenticates, then never reads again
            server_nonce = os.urandom(NONCE_BYTES)
            writer.write(pack_frame(["skate-hello", server_nonce]))
            auth = await _read_frame(reader)
            writer.write(pack_frame(["skate-ok", handshake_mac(TOKEN, "server", server_nonce, auth[1])]))
            writer.transport.pause_reading()
            await stop_reading.wait()
            writer.close()

        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = await connect(f"tcp://127.0.0.1:{port}", TOKEN)
        chunk = b"n" * (1024 * 1024)
        for _ in range(200):
            if conn.closed:
                break
            conn.notify("flood", chunk)
            await asyncio.sleep(0)
        assert conn.closed, "the connection kept buffering for a peer that does not read"
        assert "not reading" in conn.close_reason
        stop_reading.set()
        server.close()

    asyncio.run(main())
