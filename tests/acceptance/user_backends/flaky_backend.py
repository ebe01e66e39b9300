"""A counter map whose commands can raise, and whose restore/init fail on demand.

Writes: ``["add", k, n]``; ``["add_then_fail", k, n]`` adds, THEN raises ValueError (a
backend bug that leaves a partial change: every replica must still agree);
``["div", k, d]`` sets k to k // d (ZeroDivisionError before any change when d == 0);
``["exit", code]`` calls ``sys.exit(code)`` (a BaseException: SystemExit).
Queries: ``"all"`` (sorted pairs), ``["get", k]``, ``["div", k, d]`` (raises when d == 0).
A node started with ``FLAKY_FAIL_RESTORE=1`` refuses every snapshot install; with
``FLAKY_FAIL_INIT=1`` its ``init`` raises.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from zraft.fsm import BadCommand, SimpleBackend


class Flaky(SimpleBackend):
    def init(self, peer_id: str) -> None:
        if os.environ.get("FLAKY_FAIL_INIT"):
            raise OSError(f"no state directory for {peer_id}")
        super().init(peer_id)
        self.counts: dict[str, int] = {}

    def apply(self, command: Any) -> Any:
        match command:
            case ["add", str(k), int(n)]:
                self.counts[k] = self.counts.get(k, 0) + n
                return self.counts[k]
            case ["add_then_fail", str(k), int(n)]:
                self.counts[k] = self.counts.get(k, 0) + n
                raise ValueError(f"refused after adding {n} to {k}")
            case ["div", str(k), int(d)]:
                self.counts[k] = self.counts.get(k, 0) // d
                return self.counts[k]
            case ["exit", int(code)]:
                sys.exit(code)  # a BaseException, not an Exception
        raise BadCommand("flaky writes: add, add_then_fail, div, exit")

    def query(self, query: Any) -> Any:
        match query:
            case "all":
                return sorted(self.counts.items())
            case ["get", str(k)]:
                return self.counts.get(k, 0)
            case ["div", str(k), int(d)]:
                return self.counts.get(k, 0) // d  # ZeroDivisionError when d == 0
            case ["exit", int(code)]:
                sys.exit(code)
        raise BadCommand("flaky queries: 'all', ['get', k], ['div', k, d]")

    def get_state(self) -> Any:
        return self.counts

    def set_state(self, state: Any) -> None:
        self.counts = dict(state)

    def install_snapshot(self, directory: Any) -> None:
        if os.environ.get("FLAKY_FAIL_RESTORE"):
            raise RuntimeError("restore refused on this node")
        super().install_snapshot(directory)


class BrokenConstructor(Flaky):
    def __init__(self) -> None:
        raise OSError("cannot open /nonexistent/flaky.db")
