"""Durable writes spread over many groups, closed loop, for ``bench.many_groups``.

Rules:
- ``SpreadWriter`` keeps ``outstanding`` writes in flight in total over one
  ``ConnectionPool`` (one socket per node); write ``i`` goes to group ``i % len(groups)``
  under a key of its own (``k<i>``), to that group's last known leader.
- A write answered ``ok`` is acknowledged: with ``record`` it is kept as
  ``(group, key, value)`` for ``verify``. An error is counted by status and moves the
  group's target (to the leader hint of a ``not_leader``, else to the group's peer on the
  next live node); nothing is retried (a failed write may or may not be applied: it is
  never checked). A write unanswered after ``request_timeout`` is cancelled and counted
  ``timeout``, so a dead node never holds a slot of the window.
- ``verify`` reads every acknowledged key back (linearizable ``query`` to the group's
  leader) and counts, per group, the keys whose value differs (lost) and the ones it
  could not read.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import msgpack

from bench.group_ops import group_leaders
from zraft.client.connection import ConnectionPool
from zraft.cluster.fanout import fan_out
from zraft.ids import node_of


class SpreadWriter:
    def __init__(self, pool: ConnectionPool, groups: Sequence[str],
                 leaders: dict[str, str | None], nodes: Sequence[str], *,
                 value_size: int = 100, record: bool = False,
                 request_timeout: float = 5.0, prefix: str = "k") -> None:
        self.pool = pool
        self.groups = list(groups)
        self.nodes = list(nodes)  # addresses writes may go to (live nodes)
        self.target = {g: leaders.get(g) or f"{g}@{self.nodes[0]}" for g in self.groups}
        self.values = [os.urandom(value_size) for _ in range(256)]
        self.record = record
        self.request_timeout = request_timeout
        self.prefix = prefix
        self.acked: list[tuple[str, str, bytes]] = []
        self.errors: Counter[str] = Counter()
        self.ok = 0
        self.latencies: list[float] = []
        self._lock = threading.Lock()
        self._issued = 0
        self._in_flight: dict[int, tuple[float, Any]] = {}
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._limit = 0

    # ---------------------------------------------------------------- running

    def run(self, outstanding: int, n_ops: int | None = None,
            duration: float | None = None) -> float:
        """Closed loop until ``n_ops`` were answered or ``duration`` passed (or ``stop``);
        returns the elapsed seconds."""
        self._limit = n_ops if n_ops is not None else 2**62
        end = time.monotonic() + (duration if duration is not None else 3600.0)
        start = time.perf_counter()
        for _ in range(outstanding):
            self._send_next()
        while not self._stop.is_set() and time.monotonic() < end:
            if self._idle.wait(0.2):
                break
            self._expire()
        self._stop.set()
        elapsed = time.perf_counter() - start
        self._drain()
        return elapsed

    def stop(self) -> None:
        self._stop.set()

    def set_nodes(self, nodes: Sequence[str]) -> None:
        """Only these nodes are targeted from now on (a killed node is dropped)."""
        with self._lock:
            self.nodes = list(nodes)
            for g, peer in self.target.items():
                if node_of(peer) not in self.nodes:
                    self.target[g] = f"{g}@{self.nodes[0]}"

    def _send_next(self) -> None:
        with self._lock:
            if self._stop.is_set() or self._issued >= self._limit:
                if not self._in_flight:
                    self._idle.set()
                return
            i = self._issued
            self._issued += 1
            group = self.groups[i % len(self.groups)]
            target = self.target[group]
        key, value = f"{self.prefix}{i}", self.values[i % len(self.values)]
        args = [group, msgpack.packb([1, ["put", key, value]]), None]
        sent = time.perf_counter()
        with self._lock:
            self._in_flight[i] = (sent, None)
        cancel = self.pool.request(target, "propose", args,
                                   lambda s, p: self._on_reply(i, group, key, value, target,
                                                               sent, s, p))
        with self._lock:
            if i in self._in_flight:
                self._in_flight[i] = (sent, cancel)

    def _on_reply(self, i: int, group: str, key: str, value: bytes, target: str,
                  sent: float, status: str, payload: Any) -> None:
        with self._lock:
            if self._in_flight.pop(i, None) is None:
                return  # expired already
            if status == "ok":
                self.ok += 1
                self.latencies.append(time.perf_counter() - sent)
                if self.record:
                    self.acked.append((group, key, value))
            else:
                self.errors[status] += 1
                self._retarget(group, target, status, payload)
        self._send_next()

    def _retarget(self, group: str, target: str, status: str, payload: Any) -> None:
        hint = payload.get("leader") if isinstance(payload, dict) else None
        if status == "not_leader" and isinstance(hint, str) and node_of(hint) in self.nodes:
            self.target[group] = hint
            return
        if self.target[group] != target:
            return  # already moved by another reply
        node = node_of(target)
        nxt = self.nodes[(self.nodes.index(node) + 1) % len(self.nodes)] \
            if node in self.nodes else self.nodes[0]
        self.target[group] = f"{group}@{nxt}"

    def _expire(self) -> None:
        now = time.perf_counter()
        with self._lock:
            late = [(i, c) for i, (sent, c) in self._in_flight.items()
                    if now - sent > self.request_timeout]
            for i, _c in late:
                del self._in_flight[i]
                self.errors["timeout"] += 1
        for _i, cancel in late:
            if cancel is not None:
                cancel()
        for _ in late:
            self._send_next()

    def _drain(self, timeout: float = 10.0) -> None:
        """Wait for the writes still in flight (answered, or expired)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._in_flight:
                    return
            time.sleep(0.05)  # polling the in-flight set with a deadline
            self._expire()

    # ---------------------------------------------------------------- results

    def p50_ms(self) -> float:
        lat = sorted(self.latencies)
        return lat[len(lat) // 2] * 1e3 if lat else float("nan")


def verify(pool: ConnectionPool, acked: Sequence[tuple[str, str, bytes]],
           leaders: dict[str, str | None], nodes: Sequence[str] = (), timeout: float = 60.0,
           rounds: int = 4) -> dict[str, Any]:
    """Read every acknowledged write back: ``{"acked", "lost", "unread", "lost_by_group"}``.
    A read that fails (a leader moved, a timeout) is tried again in the next round, at the
    leader found again on ``nodes``; ``unread`` counts those no round could read."""
    leaders = dict(leaders)
    pending = list(range(len(acked)))
    lost_by: Counter[str] = Counter()
    for attempt in range(rounds):
        if attempt and nodes:
            groups = sorted({acked[i][0] for i in pending})
            leaders.update(group_leaders(pool, groups, nodes))
        sendable = [i for i in pending if leaders.get(acked[i][0])]
        reqs = [(str(leaders[acked[i][0]]), "query", [acked[i][0], ["get", acked[i][1]],
                                                      None, None]) for i in sendable]
        failed = [i for i in pending if not leaders.get(acked[i][0])]
        for i, (status, payload) in zip(sendable, fan_out(pool, reqs, timeout), strict=True):
            if status != "ok":
                failed.append(i)
            elif payload != acked[i][2]:
                lost_by[acked[i][0]] += 1
        pending = failed
        if not pending:
            break
    return {"acked": len(acked), "lost": sum(lost_by.values()), "unread": len(pending),
            "lost_by_group": dict(lost_by), "groups_written": len({a[0] for a in acked})}
