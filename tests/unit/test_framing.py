"""Frames: length-prefixed msgpack, decoded incrementally."""

from __future__ import annotations

import struct

import msgpack
import pytest

from skate.exceptions import ProtocolError
from skate.protocol.framing import HEADER_SIZE, NOTIFY, REQUEST, RESPONSE, FrameDecoder, pack_frame

MESSAGES = [
    [REQUEST, 1, "echo", {"x": 1, "y": [1, 2, 3]}],
    [RESPONSE, 1, None, b"\x00\x01binary"],
    [RESPONSE, 2, ["ValueError", "bad"], None],
    [NOTIFY, "event", "text payload"],
    [REQUEST, 2**40, "big-id", {1: "int key", "nested": {"deep": [None, True, 1.5]}}],
]


def test_header_is_little_endian_length_of_body():
    frame = pack_frame([NOTIFY, "m", None])
    (length,) = struct.unpack("<I", frame[:HEADER_SIZE])
    assert HEADER_SIZE == 4
    assert length == len(frame) - HEADER_SIZE
    assert msgpack.unpackb(frame[HEADER_SIZE:], raw=False) == [NOTIFY, "m", None]


def test_round_trip_each_message():
    for msg in MESSAGES:
        dec = FrameDecoder()
        assert dec.feed(pack_frame(msg)) == [msg]
        assert dec.pending_bytes() == 0


def test_bytes_and_str_stay_distinct():
    dec = FrameDecoder()
    [out] = dec.feed(pack_frame([b"raw", "text"]))
    assert out == [b"raw", "text"]
    assert isinstance(out[0], bytes) and isinstance(out[1], str)


def test_tuples_arrive_as_lists():
    dec = FrameDecoder()
    assert dec.feed(pack_frame((1, (2, 3)))) == [[1, [2, 3]]]


def test_split_byte_by_byte():
    stream = b"".join(pack_frame(m) for m in MESSAGES)
    dec = FrameDecoder()
    out = []
    for i in range(len(stream)):
        got = dec.feed(stream[i : i + 1])
        # A message appears exactly when its last byte arrives.
        out.extend(got)
    assert out == MESSAGES
    assert dec.pending_bytes() == 0


def test_partial_frame_is_kept_until_complete():
    frame = pack_frame([NOTIFY, "m", "x" * 100])
    dec = FrameDecoder()
    assert dec.feed(frame[:2]) == []  # not even a full header
    assert dec.pending_bytes() == 2
    assert dec.feed(frame[2:50]) == []
    assert dec.pending_bytes() == 50
    assert dec.feed(frame[50:]) == [[NOTIFY, "m", "x" * 100]]
    assert dec.pending_bytes() == 0


def test_many_frames_in_one_feed_plus_a_partial_tail():
    many = [[NOTIFY, "n", i] for i in range(500)]
    tail = pack_frame([NOTIFY, "tail", None])
    dec = FrameDecoder()
    out = dec.feed(b"".join(pack_frame(m) for m in many) + tail[:3])
    assert out == many
    assert dec.pending_bytes() == 3
    assert dec.feed(tail[3:]) == [[NOTIFY, "tail", None]]


def test_empty_feed():
    dec = FrameDecoder()
    assert dec.feed(b"") == []
    assert dec.pending_bytes() == 0


def test_frame_at_the_limit_is_accepted():
    msg = "x" * 50
    frame = pack_frame(msg)
    dec = FrameDecoder(max_frame=len(frame) - HEADER_SIZE)
    assert dec.feed(frame) == [msg]


def test_oversized_frame_raises_protocol_error():
    frame = pack_frame("x" * 100)
    dec = FrameDecoder(max_frame=64)
    with pytest.raises(ProtocolError, match="exceeds"):
        dec.feed(frame)


def test_oversized_header_alone_raises_before_the_body_arrives():
    dec = FrameDecoder(max_frame=1024)
    with pytest.raises(ProtocolError):
        dec.feed(struct.pack("<I", 1025))


def test_huge_length_header_with_default_limit():
    dec = FrameDecoder()
    with pytest.raises(ProtocolError):
        dec.feed(b"\xff\xff\xff\xff")


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",  # a byte msgpack never uses
        b"\x92\x01",  # an array of two holding one element
        b"\x01\x02",  # one value followed by extra data
        b"\xd9\x05ab",  # a str8 of 5 bytes with only 2 present
    ],
)
def test_malformed_body_raises_protocol_error(body):
    dec = FrameDecoder()
    with pytest.raises(ProtocolError, match="malformed"):
        dec.feed(struct.pack("<I", len(body)) + body)


def test_frames_after_a_malformed_one_are_not_delivered():
    dec = FrameDecoder()
    bad = struct.pack("<I", 1) + b"\xc1"
    with pytest.raises(ProtocolError):
        dec.feed(bad + pack_frame([NOTIFY, "after", None]))
