"""Give the heap that a snapshot freed back to the OS (glibc ``malloc_trim``).

Why: writing or installing a snapshot frees many blocks at once (a replaced state, chunk
buffers), and glibc keeps freed heap pages mapped: measured after W5 (10,000 x 4 KiB
values, a snapshot every 1,000 entries) each node held 25-70 MB of free heap, which
``malloc_trim(0)`` returned in 2-7 ms (``bench/w5_memory.py --trim``).

Rules:
- ``request()`` trims at once if the last trim is ``min_interval`` old, else schedules one
  trim for when it is (so the last snapshot of a burst is always followed by a trim, and
  a busy node trims at most once per interval). Never raises; never blocks the caller for
  more than the trim itself.
- Only where glibc's ``malloc_trim`` exists; ``ZRAFT_MALLOC_TRIM=0`` turns it off.
- ``limit_arenas(n)`` caps glibc's malloc arenas (one per thread by default, up to 8 per
  core): each arena keeps its own freed pages, so many threads mean more heap that neither
  free() nor a trim can give back. Call it at process start, before threads exist; with
  1 arena a node held 70-80 MB after W5 instead of 79-103 MB (the GIL serialises most
  allocations anyway, so the shared arena lock costs nothing measurable).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 1.0


def _glibc_trim() -> Callable[[], object] | None:
    if os.environ.get("ZRAFT_MALLOC_TRIM", "1") == "0":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to do
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


_M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_arenas(count: int = 1) -> bool:
    """Cap glibc's malloc arenas (see the module rules); False where not available."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, max(1, count)))


class HeapTrimmer:
    def __init__(self, trim: Callable[[], object] | None, min_interval: float = MIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._trim = trim
        self._min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._timer: threading.Timer | None = None
        self.trims = 0

    @property
    def enabled(self) -> bool:
        return self._trim is not None

    def request(self) -> None:
        if self._trim is None:
            return
        with self._lock:
            wait = self._last + self._min_interval - self._clock()
            if wait > 0:
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._deferred)
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._last = self._clock()
        self._run()

    def _deferred(self) -> None:
        with self._lock:
            self._timer = None
            self._last = self._clock()
        self._run()

    def _run(self) -> None:
        try:
            assert self._trim is not None
            self._trim()
            self.trims += 1
        except Exception as exc:  # a trim is an optimisation: never fail the caller
            log.debug("malloc_trim failed: %s", exc)

    def cancel(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()


TRIMMER = HeapTrimmer(_glibc_trim())


def request_trim() -> None:
    """After freeing much memory (see the module rules)."""
    TRIMMER.request()


__all__ = ["TRIMMER", "HeapTrimmer", "limit_arenas", "request_trim"]
