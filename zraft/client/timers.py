"""One daemon thread that runs delayed callbacks for the client side (retries, call deadlines,
session pings).

Rules: callbacks must be quick and must not block (they usually ``tell`` an actor or send one
request); an exception in a callback is logged and never kills the thread. ``cancel`` is
cheap (a flag); cancelled entries are dropped when they come due.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("zraft.client.timers")


class Cancellable(Protocol):
    def cancel(self) -> object: ...


class Timers(Protocol):
    """What the client's state machines need of a scheduler: ``Scheduler`` below, or an
    asyncio event loop (``zraft.aio``), whose ``call_later`` has the same shape."""

    def call_later(self, delay: float, fn: Callable[[], object], /) -> Cancellable: ...


class TimerHandle:
    __slots__ = ("cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[[], object]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """A heap of (due time, callback) served by one daemon thread, started lazily."""

    def __init__(self, name: str = "zraft-client-timers") -> None:
        self._name = name
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, fn: Callable[[], object]) -> TimerHandle:
        handle = TimerHandle(time.monotonic() + max(0.0, delay), fn)
        with self._cond:
            heapq.heappush(self._heap, (handle.when, next(self._seq), handle))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            if self._heap[0][2] is handle:  # only an earlier due time changes the wait
                self._cond.notify()
        return handle

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        handle = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
            if handle.cancelled:
                continue
            try:
                handle.fn()
            except Exception:
                log.exception("timer callback failed")


_default: Scheduler | None = None
_default_lock = threading.Lock()


def default_scheduler() -> Scheduler:
    global _default
    with _default_lock:
        if _default is None:
            _default = Scheduler()
        return _default
