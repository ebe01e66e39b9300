"""Test helpers: collecting callbacks and polling with deadlines (no sleeps as sync)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

COOKIE = b"test-cookie"


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.005) -> Any:
    """Poll ``predicate`` until truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class Inbox:
    """An ``on_frames`` callback that records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, list[Any]]] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def __call__(self, conn: Any, frames: list[Any]) -> None:
        with self.lock:
            self.calls.append((conn, frames))
            self.changed.notify_all()

    @property
    def frames(self) -> list[Any]:
        with self.lock:
            return [f for _, fs in self.calls for f in fs]

    def wait_count(self, n: int, timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while sum(len(fs) for _, fs in self.calls) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = sum(len(fs) for _, fs in self.calls)
                    raise AssertionError(f"got {got} frames, wanted {n}")
                self.changed.wait(left)
        return self.frames


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
