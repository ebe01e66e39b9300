"""Length-prefixed framing: every frame is a 4-byte big-endian length, then that many bytes.

Rules:
- a length of 0 or above ``max_frame_size`` is rejected with ``FrameTooLarge`` as soon as its
  4 header bytes arrive, before any buffer for the body exists, so a hostile length costs
  nothing;
- ``FrameDecoder.feed`` takes whatever a socket read returned (a partial frame, many frames,
  or both) and returns every complete frame body in order; leftovers wait for the next feed;
- memory held for partial frames is capped node-wide: each decoder may hold ``allowance``
  bytes of incomplete frames for free, and every byte beyond it is charged to one shared
  ``BufferBudget``. A feed that would take the budget past its limit raises
  ``BufferLimitExceeded`` (the connection is closed, its charge given back). The check
  runs only while a decoder holds more than its allowance: small frames never pay for it;
- a decoder that held a large partial frame gives the memory back once it completes (and
  calls ``on_shrink``, e.g. to ask malloc to return freed pages to the OS).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from typing import Final

from zraft.transport.errors import BufferLimitExceeded, FrameTooLarge

HEADER: Final = struct.Struct(">I")
HEADER_SIZE: Final = HEADER.size
DEFAULT_MAX_FRAME_SIZE: Final = 64 * 1024 * 1024
_ABSOLUTE_MAX: Final = 0xFFFFFFFF
DEFAULT_ALLOWANCE: Final = 1024 * 1024  # partial-frame bytes a connection holds uncharged
DEFAULT_MAX_BUFFERED: Final = 256 * 1024 * 1024  # node-wide charged partial-frame bytes


class BufferBudget:
    """Bytes of partial frames held beyond the per-connection allowances, node-wide."""

    def __init__(self, limit: int = DEFAULT_MAX_BUFFERED) -> None:
        if limit < 0:
            raise ValueError("the buffer budget must be >= 0")
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.refused = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                self.refused += 1
                return False
            self.used += n
            self.peak = max(self.peak, self.used)
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used = max(0, self.used - n)


def frame(body: bytes) -> bytes:
    """Prefix ``body`` with its length."""
    n = len(body)
    if n == 0 or n > _ABSOLUTE_MAX:
        raise ValueError(f"frame body of {n} bytes cannot be framed")
    return HEADER.pack(n) + body


class FrameDecoder:
    """Incremental decoder for one byte stream (one connection)."""

    __slots__ = ("_allowance", "_budget", "_buf", "_charged", "_max", "_on_shrink")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 budget: BufferBudget | None = None, allowance: int = DEFAULT_ALLOWANCE,
                 on_shrink: Callable[[], object] | None = None) -> None:
        if not 0 < max_frame_size <= _ABSOLUTE_MAX:
            raise ValueError("max_frame_size must be in 1..2**32-1")
        self._max = max_frame_size
        self._buf = bytearray()
        self._budget = budget
        self._allowance = allowance
        self._charged = 0
        self._on_shrink = on_shrink

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
        if self._charged or (self._budget is not None and len(buf) > self._allowance):
            self._recharge()
        return out

    def _recharge(self) -> None:
        """Charge the budget for what is held beyond the allowance (or give it back)."""
        buf = self._buf
        want = max(0, len(buf) - self._allowance)
        delta = want - self._charged
        budget = self._budget
        if delta > 0 and budget is not None and not budget.take(delta):
            raise BufferLimitExceeded(
                f"{len(buf)} bytes of partial frames on this connection and "
                f"{budget.used} of {budget.limit} buffered node-wide")
        if delta < 0:
            if budget is not None:
                budget.give(-delta)
            if buf.__alloc__() > 2 * len(buf) + self._allowance:
                self._buf = bytearray(buf)  # keep the rest, not the large frame's capacity
            if not want and self._on_shrink is not None:
                self._on_shrink()
        self._charged = want

    def release(self) -> None:
        """The connection is over: drop what is buffered and give its charge back."""
        self._buf = bytearray()
        if self._charged:
            if self._budget is not None:
                self._budget.give(self._charged)
            self._charged = 0
            if self._on_shrink is not None:
                self._on_shrink()
