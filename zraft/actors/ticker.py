"""Ticker: Pykka has no timers, so one thread per node tells every peer a Tick.

It asks ``targets()`` for the current peer refs on every tick (peers are reached by name
through the supervisor, never through a cached ref), and never blocks on a peer: ``tell``
only enqueues. A dead ref between lookup and tell is skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import pykka

from zraft.actors.messages import Tick


class Ticker:
    def __init__(self, tick_ms: int, targets: Callable[[], Iterable[Any]]) -> None:
        self.tick_s = tick_ms / 1000.0
        self.targets = targets
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zraft-ticker", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            next_at += self.tick_s
            tick = Tick(int(time.time() * 1000))
            for ref in self.targets():
                try:
                    ref.tell(tick)
                except pykka.ActorDeadError:
                    continue
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a paused process): do not burst to catch up
                next_at = time.monotonic()
                delay = 0
            self._stop.wait(delay)
