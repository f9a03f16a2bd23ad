"""FrameRelay passes whole frames on, undecoded, however the bytes were cut."""

from __future__ import annotations

import pytest

from skate.exceptions import ProtocolError
from skate.protocol.framing import FrameDecoder, pack_frame
from skate.protocol.relay import FrameRelay


def test_whole_frames_only_whatever_the_cuts():
    frames = [pack_frame([2, "m", i]) for i in range(5)] + [pack_frame([2, "big", b"x" * 100_000])]
    stream = b"".join(frames)
    for cut in (1, 3, 7, 4096, len(stream)):
        out: list[bytes] = []
        relay = FrameRelay(lambda data, out=out: out.append(bytes(data)))
        for i in range(0, len(stream), cut):
            relay.feed(stream[i : i + cut])
            assert relay.pending_bytes() < len(frames[-1])
        assert b"".join(out) == stream
        decoder = FrameDecoder()
        for piece in out:  # every write is whole frames: decodable on its own
            assert decoder.feed(piece) and decoder.pending_bytes() == 0


def test_whole_frames_pass_without_a_copy():
    data = pack_frame([2, "a", 1]) + pack_frame([2, "b", 2])
    seen: list = []
    FrameRelay(seen.append).feed(data)
    assert seen[0] is data


def test_an_oversized_frame_is_refused():
    relay = FrameRelay(lambda d: None, max_frame=10)
    with pytest.raises(ProtocolError, match="exceeds"):
        relay.feed((1000).to_bytes(4, "little") + b"x")
