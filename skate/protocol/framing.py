"""Frames: a 4-byte little-endian length, then one msgpack value.

Messages are msgpack arrays:
    [REQUEST, request_id, method, payload]
    [RESPONSE, request_id, error, payload]   error is None or [kind, message]
    [NOTIFY, method, payload]
"""

from __future__ import annotations

import struct

import msgpack

from skate._config import MAX_FRAME_BYTES
from skate.exceptions import ProtocolError

REQUEST = 0
RESPONSE = 1
NOTIFY = 2

_HEADER = struct.Struct("<I")
HEADER_SIZE = _HEADER.size

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def pack_frame(message: object) -> bytes:
    body = _packb(message)
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Turns a byte stream into messages; raises ProtocolError on a bad frame."""

    __slots__ = ("_buf", "_max")

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list:
        buf = self._buf
        buf += data
        out = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            (length,) = _HEADER.unpack_from(buf, pos)
            if length > self._max:
                raise ProtocolError(f"frame of {length} bytes exceeds the limit of {self._max}")
            if end - pos - HEADER_SIZE < length:
                break
            start = pos + HEADER_SIZE
            try:
                out.append(msgpack.unpackb(buf[start : start + length], raw=False, strict_map_key=False))
            except Exception as exc:
                raise ProtocolError(f"malformed frame: {exc}") from None
            pos = start + length
        if pos:
            del buf[:pos]
        return out

    def pending_bytes(self) -> int:
        return len(self._buf)
