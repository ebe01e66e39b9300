"""Length-prefixed framing: every frame is a 4-byte big-endian length, then that many bytes.

Rules:
- a length of 0 or above ``max_frame_size`` is rejected with ``FrameTooLarge`` as soon as its
  4 header bytes arrive, before any buffer for the body exists, so a hostile length costs
  nothing;
- ``FrameDecoder.feed`` takes whatever a socket read returned (a partial frame, many frames,
  or both) and returns every complete frame body in order; leftovers wait for the next feed.
"""

from __future__ import annotations

import struct
from typing import Final

from zraft.transport.errors import FrameTooLarge

HEADER: Final = struct.Struct(">I")
HEADER_SIZE: Final = HEADER.size
DEFAULT_MAX_FRAME_SIZE: Final = 64 * 1024 * 1024
_ABSOLUTE_MAX: Final = 0xFFFFFFFF


def frame(body: bytes) -> bytes:
    """Prefix ``body`` with its length."""
    n = len(body)
    if n == 0 or n > _ABSOLUTE_MAX:
        raise ValueError(f"frame body of {n} bytes cannot be framed")
    return HEADER.pack(n) + body


class FrameDecoder:
    """Incremental decoder for one byte stream (one connection)."""

    __slots__ = ("_buf", "_max")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if not 0 < max_frame_size <= _ABSOLUTE_MAX:
            raise ValueError("max_frame_size must be in 1..2**32-1")
        self._max = max_frame_size
        self._buf = bytearray()

    @property
    def max_frame_size(self) -> int:
        return self._max

    def pending(self) -> int:
        """Bytes buffered that do not form a complete frame yet."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ``data``; return the bodies of every frame now complete."""
        buf = self._buf
        if buf:
            buf += data
            src: bytes | bytearray | memoryview = buf
        else:
            src = data  # fast path: parse straight from the read, copy only the leftover
        view = memoryview(src)
        out: list[bytes] = []
        pos = 0
        n = len(view)
        unpack = HEADER.unpack_from
        limit = self._max
        try:
            while n - pos >= HEADER_SIZE:
                (length,) = unpack(view, pos)
                if length == 0 or length > limit:
                    raise FrameTooLarge(f"frame length {length} outside 1..{limit}")
                end = pos + HEADER_SIZE + length
                if end > n:
                    break
                out.append(bytes(view[pos + HEADER_SIZE : end]))
                pos = end
        finally:
            view.release()
        if src is buf:
            if pos:
                del buf[:pos]
        elif pos < n:
            buf += data[pos:] if pos else data
        return out
