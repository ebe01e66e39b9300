"""The watcher: a polling backstop that notices children that died without reporting.

Rules:
- One daemon thread per supervisor (it must never keep the process alive). It only
  reads flags (`ref.is_alive()`, `thread.is_alive()`, the link) and `tell`s; it never
  blocks on an actor, so it can not deadlock.
- SupervisedMixin children report their own exits; the watcher acts for them only if
  the actor is dead and its thread ended with no report, or if the actor is dead but
  its thread is still busy (stuck in on_stop/on_failure) for longer than the child's
  shutdown timeout.
- Plain Pykka actors (no mixin) are detected only here, by polling `is_alive()`; their
  exit is reported ABNORMAL because the reason can not be known (a crash and an
  external `ref.stop()` look the same from outside).
- Detection is bounded: at most one poll interval for plain actors, and the poll
  interval plus the shutdown timeout for a mixin child stuck in its stop hooks.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pykka

from supervisors.link import ChildLink
from supervisors.spec import ExitInfo, ExitKind

__all__ = ["ChildWatcher"]

logger = logging.getLogger(__name__)


class ChildWatcher:
    """Polls the watched child incarnations every `interval_s` seconds."""

    def __init__(self, owner: str, interval_s: float) -> None:
        if not interval_s > 0:
            raise ValueError("poll interval must be > 0")
        self._owner = owner
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[ChildLink, pykka.ActorRef[Any]]] = {}
        self._dead_since: dict[int, float] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"supervisor-watch-{self._owner}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def watch(self, link: ChildLink, ref: pykka.ActorRef[Any]) -> None:
        with self._lock:
            self._watched[id(link)] = (link, ref)

    def unwatch(self, link: ChildLink) -> None:
        with self._lock:
            self._watched.pop(id(link), None)
            self._dead_since.pop(id(link), None)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self.check_once()
            except Exception:  # the backstop must outlive its own bugs
                logger.exception("supervisor %r: watcher check failed", self._owner)

    def check_once(self) -> None:
        """One pass over the watched children (public for tests)."""
        with self._lock:
            watched = list(self._watched.values())
        now = time.monotonic()
        for link, ref in watched:
            verdict = self._verdict(link, ref, now)
            if verdict is not None:
                self.unwatch(link)
                logger.debug("supervisor %r: watcher saw %r end: %s", self._owner, link.name,
                             verdict)
                link.report(verdict)

    def _verdict(self, link: ChildLink, ref: pykka.ActorRef[Any], now: float) -> ExitInfo | None:
        if link.exit is not None or link.expected_stop:
            self.unwatch(link)  # reported by the child itself, or stopped by the supervisor
            return None
        thread = link.thread
        thread_done = thread is not None and not thread.is_alive()
        if ref.is_alive() and not thread_done:
            return None
        if not link.is_attached:
            return ExitInfo(
                ExitKind.ABNORMAL, "actor is dead (not a SupervisedMixin: reason unknown)"
            )
        if thread_done:
            return ExitInfo(ExitKind.ABNORMAL, "actor thread ended without reporting a reason")
        # Dead, but its thread is still running on_stop/on_failure: give it the
        # shutdown timeout to report, then stop waiting for it.
        first_seen = self._dead_since.setdefault(id(link), now)
        if now - first_seen > link.shutdown_s:
            return ExitInfo(
                ExitKind.ABNORMAL,
                f"actor stopped but its thread did not finish within {link.shutdown_s}s "
                "(stuck in on_stop/on_failure); abandoned",
            )
        return None
