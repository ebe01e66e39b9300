"""One deadline timer per node, and the tick clock each peer keeps against it.

Why: telling every peer a Tick every tick costs a message per peer per tick, so an idle
node with thousands of groups would do nothing but tick. Instead each peer registers the
time of its next due tick (``RaftCore.ticks_to_next_event``: election timeout, heartbeat,
request timeout, a pending change or transfer) and is woken only then.

Rules:
1. The ticks in between are not lost: before any input a peer delivers every tick that
   real time has passed (``TickClock.due``), so the core sees what a punctual ticker
   would have shown it; the ticks that were not due only count.
2. A peer re-registers only when its next deadline moved earlier; a deadline that moved
   later (a heartbeat reset the election timer) costs one early wake-up that re-arms.
3. The timer thread never blocks on a peer: a wake-up is a ``tell``; a dead one is skipped.
4. After a pause (a stopped process) a peer catches up at most ``max_burst`` ticks; the
   rest are dropped, as the ticker they replace did not burst to catch up.
5. Every peer's ticks fall on one node-wide grid (the timer's ``epoch``): peers due on the
   same tick are woken by one timer pass, so their heartbeats leave together and the
   transport batches them per node pair, as when one ticker told every peer at once
   (peers ticking on their own phases cost a socket write and read per heartbeat: the
   leader node of 100 idle groups used more CPU than with the ticker).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka

log = logging.getLogger(__name__)


class DeadlineTimer:
    """One thread; at most one pending deadline per key (a later ``schedule`` replaces it)."""

    def __init__(self, name: str = "zraft-timer") -> None:
        self.epoch = time.monotonic()  # tick 0 of every peer's clock (rule 5)
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Any]] = []
        self._entries: dict[Any, tuple[int, float, Callable[[], None]]] = {}
        self._seq = 0
        self._stopped = False
        self.fired = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> DeadlineTimer:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)

    def schedule(self, key: Any, at: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the timer thread: it must not block) at monotonic ``at``."""
        with self._cond:
            self._seq += 1
            seq = self._seq
            self._entries[key] = (seq, at, callback)
            heap = self._heap
            heapq.heappush(heap, (at, seq, key))
            if len(heap) > 64 + 4 * len(self._entries):  # replaced deadlines pile up: drop
                self._heap = heap = [(a, s, k) for k, (s, a, _cb) in self._entries.items()]
                heapq.heapify(heap)
            if heap[0][1] == seq:
                self._cond.notify()

    def cancel(self, key: Any) -> None:
        with self._cond:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)

    def _run(self) -> None:
        cond = self._cond
        while True:
            fire: list[Callable[[], None]] = []
            with cond:
                while not self._stopped:
                    now = time.monotonic()
                    heap, entries = self._heap, self._entries
                    while heap and heap[0][0] <= now:
                        _at, seq, key = heapq.heappop(heap)
                        entry = entries.get(key)
                        if entry is not None and entry[0] == seq:
                            del entries[key]
                            fire.append(entry[2])
                    if fire:
                        break
                    cond.wait(heap[0][0] - now if heap else None)
                if self._stopped:
                    return
            self.fired += len(fire)
            for callback in fire:
                try:
                    callback()
                except Exception:  # a wake-up must never stop the timer
                    log.exception("deadline timer: a wake-up failed")


class TickClock:
    """A peer's ticks against real time: ``due()`` says how many to deliver now."""

    __slots__ = ("base", "done", "max_burst", "tick_s")

    def __init__(self, tick_ms: int, max_burst: int, base: float | None = None) -> None:
        self.tick_s = tick_ms / 1000.0
        now = time.monotonic()
        self.base = now if base is None else base  # the node's tick grid (rule 5)
        self.done = int((now - self.base) / self.tick_s)
        self.max_burst = max_burst

    def due(self) -> int:
        # (+1e-9: woken at a tick's exact time, float rounding must not make it the one before)
        n = int((time.monotonic() - self.base) / self.tick_s + 1e-9) - self.done
        if n <= 0:
            return 0
        if n > self.max_burst:  # a pause: drop the surplus (rule 4)
            self.done += n - self.max_burst
            n = self.max_burst
        self.done += n
        return n

    def at(self, ticks: int) -> float:
        """The monotonic time of the ``ticks``-th tick from now (delivered ones excluded)."""
        return self.base + (self.done + ticks) * self.tick_s


def tell_or_skip(ref: Any, message: Any) -> Callable[[], None]:
    """A wake-up callback: tell ``ref``, skipping a dead one."""
    def wake() -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            ref.tell(message)

    return wake
