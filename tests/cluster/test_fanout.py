"""fan_out: many requests, a window in flight, one deadline; a pool that answers inside
``request`` (a dead connection does) must not make it recurse once per request."""

from __future__ import annotations

import threading
from typing import Any

from zraft.cluster.fanout import fan_out


class DeadPool:
    """Answers every request at once, from inside ``request`` (as a dead connection)."""

    def __init__(self) -> None:
        self.sent = 0

    def request(self, peer: str, op: str, args: Any, callback: Any) -> Any:
        self.sent += 1
        callback("noproc", {"message": "down"})
        return lambda: None


class LaterPool:
    """Answers from another thread; never answers requests to ``silent``."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []

    def request(self, peer: str, op: str, args: Any, callback: Any) -> Any:
        if peer != "silent":
            threading.Thread(target=callback, args=("ok", [peer, op, args])).start()
        return lambda: self.cancelled.append(peer)


def test_answers_given_inside_request_do_not_nest() -> None:
    pool = DeadPool()
    reqs = [(f"g{i}@h:1", "stat", [f"g{i}"]) for i in range(5000)]
    out = fan_out(pool, reqs, 10.0, window=8)  # type: ignore[arg-type]
    assert pool.sent == 5000 and out == [("noproc", {"message": "down"})] * 5000


def test_results_in_order_and_the_unanswered_time_out() -> None:
    pool = LaterPool()
    reqs = [("a", "stat", [1]), ("silent", "stat", [2]), ("b", "ping", [])]
    out = fan_out(pool, reqs, 0.5, window=2)  # type: ignore[arg-type]
    assert out == [("ok", ["a", "stat", [1]]), ("timeout", None), ("ok", ["b", "ping", []])]
    assert pool.cancelled == ["silent"]
    assert fan_out(pool, [], 0.1) == []  # type: ignore[arg-type]
