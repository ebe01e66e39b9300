"""Node-level liveness: one heartbeat per pair of nodes, and the failure signals that keep
quiesced groups live (docs/internals.md, "Quiescence").

Rules:
- Every ``interval_s`` the node sends each other node it knows a ``NodeAlive`` frame
  carrying its incarnation (random, drawn at start): one frame per pair of nodes whatever
  the number of groups. Quiesced groups send nothing of their own.
- ``heard(node, incarnation)`` records each NodeAlive received (the transport authenticated
  the sender: only node connections carry it). A node not heard from for longer than
  ``bound_s`` (derived from the election timeout) is reported once as ``unreachable``,
  and as ``reachable`` once heard again; a node heard with another incarnation than before
  is reported as ``restarted`` (its groups lost their leaders; it is alive again). The
  reports about one node keep their order.
- A node is known once we have a link to it or heard from it; a node known since our
  start that never spoke counts from our start.
- ``check(now)`` is the whole decision, with the clock passed in (tested without time);
  the thread only calls it. Reports go to ``report(kind, node)``; the node hands them to
  every local peer, whose core decides what they mean for its group.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

UNREACHABLE = "unreachable"
REACHABLE = "reachable"
RESTARTED = "restarted"


class NodeLiveness:
    def __init__(self, node_id: str, known: Callable[[], Iterable[str]],
                 send: Callable[[str, int], object], report: Callable[[str, str], None],
                 interval_s: float, bound_s: float) -> None:
        self.node_id = node_id
        self.incarnation = int.from_bytes(os.urandom(7), "big")
        self._known = known
        self._send = send
        self._report = report
        self.interval_s = interval_s
        self.bound_s = bound_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}  # node -> when last heard (or first known)
        self._incarnations: dict[str, int] = {}
        self._down: set[str] = set()
        self._heard_news: list[tuple[str, str]] = []  # (kind, node) for the next check
        self.reports = {UNREACHABLE: 0, REACHABLE: 0, RESTARTED: 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zraft-liveness", daemon=True)

    # -- inputs --------------------------------------------------------------------------

    def heard(self, node: str, incarnation: int, now: float | None = None) -> None:
        """A NodeAlive from ``node`` (any thread: the connection's reader)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._last[node] = now
            before = self._incarnations.get(node)
            self._incarnations[node] = incarnation
            if before is not None and before != incarnation:
                self._down.discard(node)
                self._heard_news.append((RESTARTED, node))
            elif node in self._down:
                self._down.discard(node)
                self._heard_news.append((REACHABLE, node))

    def check(self, now: float) -> list[tuple[str, str]]:
        """What to report now: (kind, node) pairs, each transition once."""
        out: list[tuple[str, str]] = []
        known = [n for n in self._known() if n != self.node_id]
        with self._lock:
            out.extend(self._heard_news)
            self._heard_news = []
            for node in known:
                self._last.setdefault(node, now)
            for node, last in self._last.items():
                if node not in self._down and now - last > self.bound_s:
                    self._down.add(node)
                    out.append((UNREACHABLE, node))
        return out

    def down(self) -> list[str]:
        with self._lock:
            return sorted(self._down)

    # -- the thread ----------------------------------------------------------------------

    def start(self) -> NodeLiveness:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick(time.monotonic())
            except Exception:  # one bad round must not end the failure detector
                log.exception("liveness round failed")

    def tick(self, now: float) -> None:
        for node in list(self._known()):
            if node != self.node_id:
                self._send(node, self.incarnation)
        for kind, node in self.check(now):
            self.reports[kind] += 1
            log.info("node %s %s: telling the local groups", node, kind)
            self._report(kind, node)
