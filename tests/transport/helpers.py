"""Test helpers: collecting callbacks and polling with deadlines (no sleeps as sync)."""

from __future__ import annotations

import contextlib
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
        self.count = 0
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def __call__(self, conn: Any, frames: list[Any]) -> None:
        with self.lock:
            self.calls.append((conn, frames))
            self.count += len(frames)
            self.changed.notify_all()

    @property
    def frames(self) -> list[Any]:
        with self.lock:
            return [f for _, fs in self.calls for f in fs]

    def wait_count(self, n: int, timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.count < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"got {self.count} frames, wanted {n}")
                self.changed.wait(left)
        return self.frames


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TamperProxy:
    """A one-connection TCP relay that can flip one byte or cut the stream (sender -> receiver
    direction) at a given offset, to test integrity checks and interrupted transfers."""

    def __init__(
        self, target: tuple[str, int], flip_at: int | None = None, cut_at: int | None = None
    ) -> None:
        self.target = target
        self.flip_at = flip_at
        self.cut_at = cut_at
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.forwarded = 0
        self._socks: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._run, daemon=True)]
        self._threads[0].start()

    def _run(self) -> None:
        self.lsock.settimeout(10)
        try:
            client, _ = self.lsock.accept()
        except OSError:
            return
        upstream = socket.create_connection(self.target, timeout=10)
        client.settimeout(None)
        upstream.settimeout(None)
        self._socks += [client, upstream]
        back = threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True)
        self._threads.append(back)
        back.start()
        self._pump(client, upstream, True)

    def _pump(self, src: socket.socket, dst: socket.socket, tamper: bool) -> None:
        count = 0
        try:
            while data := src.recv(65536):
                if tamper and self.cut_at is not None and count + len(data) >= self.cut_at:
                    dst.sendall(data[: self.cut_at - count])
                    self.forwarded = self.cut_at
                    self._kill()
                    return
                flip = self.flip_at
                if tamper and flip is not None and count <= flip < count + len(data):
                    mutable = bytearray(data)
                    mutable[self.flip_at - count] ^= 0xFF
                    data = bytes(mutable)
                dst.sendall(data)
                count += len(data)
                if tamper:
                    self.forwarded = count
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            self._kill()

    def _kill(self) -> None:
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._kill()
        self.lsock.close()
        for t in self._threads:
            t.join(5)
        for s in self._socks:
            s.close()
