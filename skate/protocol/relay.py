"""Passing a framed byte stream on without decoding it (the client server's data path).

A FrameRelay is fed the bytes one connection receives and writes only whole frames on to
another, as they came: nothing is decoded or re-encoded. Whole frames only, so the output is
always at a frame boundary: the relaying process may write frames of its own between them,
switch the output to another connection, or lose the input mid-frame, and the output stream
stays well formed.
"""

from __future__ import annotations

from collections.abc import Callable

from skate._config import MAX_FRAME_BYTES
from skate.exceptions import ProtocolError
from skate.protocol.framing import HEADER_SIZE


class FrameRelay:
    """Splits received bytes at frame boundaries and hands whole frames to `write`."""

    __slots__ = ("_buf", "_max", "write")

    def __init__(self, write: Callable[[bytes], None], max_frame: int = MAX_FRAME_BYTES):
        self._buf = bytearray()
        self._max = max_frame
        self.write = write

    def feed(self, data: bytes) -> None:
        """Forward every whole frame now in hand; keep a partial one for later.

        Raises ProtocolError for a frame over the size limit (the caller closes the input).
        """
        if not self._buf:
            end = self._whole(data)
            if end == len(data):  # the common case: whole frames, forwarded without a copy
                self.write(data)
                return
            if end:
                self.write(data[:end])
            self._buf += memoryview(data)[end:]
            return
        self._buf += data
        end = self._whole(self._buf)
        if end:
            with memoryview(self._buf) as view:
                chunk = bytes(view[:end])  # one copy; the buffer is free to shrink after
            del self._buf[:end]
            self.write(chunk)

    def _whole(self, data: bytes | bytearray) -> int:
        """The length of the longest prefix of `data` made of whole frames."""
        pos, n = 0, len(data)
        while n - pos >= HEADER_SIZE:
            length = int.from_bytes(data[pos : pos + HEADER_SIZE], "little")
            if length > self._max:
                raise ProtocolError(f"frame of {length} bytes exceeds the limit of {self._max}")
            if n - pos - HEADER_SIZE < length:
                break
            pos += HEADER_SIZE + length
        return pos

    def pending_bytes(self) -> int:
        return len(self._buf)
