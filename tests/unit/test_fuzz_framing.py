"""Property tests of the wire's parsers (issue 12): whatever bytes arrive, the frame decoder
yields frames or raises ProtocolError, nothing else, and never buffers more than one frame;
a Connection fed any bytes or any message never lets an exception escape into the event loop
and never authenticates a peer that did not prove the token."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skate.exceptions import ProtocolError
from skate.protocol.connection import Connection
from skate.protocol.framing import HEADER_SIZE, NOTIFY, REQUEST, RESPONSE, FrameDecoder, pack_frame

EXAMPLES = int(os.environ.get("SKATE_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
pytestmark = pytest.mark.timeout(120)

MAX_FRAME = 4096

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, prev = [], 0
    for p in points + [len(data)]:
        chunks.append(data[prev:p])
        prev = p
    return chunks


@FUZZ
@given(st.binary(max_size=3 * MAX_FRAME), st.lists(st.integers(0, 10**6), max_size=8))
def test_any_bytes_yield_frames_or_protocol_error_and_never_overbuffer(data, cuts):
    decoder = FrameDecoder(max_frame=MAX_FRAME)
    try:
        for chunk in _split(data, cuts):
            decoder.feed(chunk)
            assert decoder.pending_bytes() <= MAX_FRAME + HEADER_SIZE
    except ProtocolError:
        pass


@FUZZ
@given(st.binary(max_size=64), st.integers(MAX_FRAME + 1, 2**32 - 1))
def test_an_oversized_header_is_refused_before_its_body_arrives(prefix_body, length):
    decoder = FrameDecoder(max_frame=MAX_FRAME)
    with pytest.raises(ProtocolError, match="exceeds"):
        decoder.feed(length.to_bytes(4, "little") + prefix_body)


@FUZZ
@given(st.lists(values, min_size=1, max_size=6), st.lists(st.integers(0, 10**6), max_size=10))
def test_frames_split_anywhere_decode_to_what_was_sent(messages, cuts):
    data = b"".join(pack_frame(m) for m in messages)
    decoder = FrameDecoder()
    got = []
    for chunk in _split(data, cuts):
        got.extend(decoder.feed(chunk))
    assert got == [_normalized(m) for m in messages]
    assert decoder.pending_bytes() == 0


def _normalized(value):
    """msgpack has no tuples and NaN != NaN; compare what the wire can carry."""
    if isinstance(value, float) and value != value:
        return pytest.approx(value, nan_ok=True)
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    return value


class _Transport:
    def __init__(self):
        self.closed = False
        self.written: list[bytes] = []

    def write(self, data):
        self.written.append(bytes(data))

    def close(self):
        self.closed = True

    def abort(self):
        self.closed = True

    def get_extra_info(self, name, default=None):
        return default

    def set_write_buffer_limits(self, high, low):
        pass

    def get_write_buffer_size(self):
        return 0


def _connection(loop, *, authenticated: bool, calls: list) -> Connection:
    def handler(conn, payload):
        calls.append(payload)
        return payload

    conn = Connection(b"token", {"echo": handler, "note": handler}, server_side=True, handshake_timeout=0)
    conn.connection_made(_Transport())
    if authenticated:
        conn._authenticated()
    return conn


@FUZZ
@given(st.lists(st.binary(max_size=2 * 4096), max_size=6))
def test_unauthenticated_connection_survives_any_bytes_and_never_trusts_them(chunks):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        calls: list = []
        conn = _connection(loop, authenticated=False, calls=calls)
        for chunk in chunks:
            conn.data_received(chunk)  # must not raise
        loop.run_until_complete(asyncio.sleep(0))
        assert not conn.authenticated and calls == []
    finally:
        loop.close()
        asyncio.set_event_loop(None)


message_kinds = st.sampled_from([REQUEST, RESPONSE, NOTIFY, 3, -1, "x", None])
messages = st.one_of(
    values,
    st.lists(values, max_size=5).map(lambda rest: rest),
    st.tuples(message_kinds, values, values, values).map(list),
    st.tuples(message_kinds, st.sampled_from(["echo", "note", "missing"]), values).map(list),
    st.tuples(st.just(REQUEST), values, st.sampled_from(["echo", "missing"]) | values, values).map(list),
    st.tuples(st.just(RESPONSE), values, values, values).map(list),
)


@FUZZ
@given(st.lists(messages, max_size=8))
def test_authenticated_connection_survives_any_message(msgs):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        calls: list = []
        conn = _connection(loop, authenticated=True, calls=calls)
        conn.call("echo", 1)  # a pending request a forged response may hit
        for msg in msgs:
            try:
                frame = pack_frame(msg)
            except Exception:
                continue
            conn.data_received(frame)  # must not raise, whatever the shape
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
        asyncio.set_event_loop(None)
