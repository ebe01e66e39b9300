"""Rolling restart of a local cluster: every node stopped and started again on its data, one
at a time, with leadership handed over before the leader's node goes down.

Rules: followers first, the leader last; before the leader's node is stopped, its
leadership is transferred (``transfer_leader`` to the most up-to-date other member), so the
cluster never waits an election timeout to notice a missing leader. A node is stopped
gracefully (SIGTERM, by its recorded pid), started again, and the next one is taken only
once it answers and has applied what the leader had committed when it came back (so at
most one member is ever behind). ``transfer=False`` restarts the leader without a handover
(the comparison figure).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster import admin
from zraft.cluster.local import LocalCluster, NodeProcess, wait_until
from zraft.errors import TransferFailed

TRANSFER_ATTEMPTS = 3


def rolling_restart(pool: ConnectionPool, cluster: LocalCluster, *, transfer: bool = True,
                    timeout: float = 30.0,
                    report: Callable[[dict[str, Any]], None] | None = None
                    ) -> list[dict[str, Any]]:
    """Restart every node; returns one dict per node: ``node``, ``pid`` (new),
    ``handed_to`` (the new leader when it led), ``seconds``."""
    leader = admin.wait_leader(pool, cluster, timeout)
    order = [n for n in cluster.nodes if n is not leader] + [leader]
    steps = []
    for n in order:
        started = time.monotonic()
        peer = cluster.peer_id(n)
        handed_to = None
        current = admin.wait_leader(pool, cluster, timeout)
        if transfer and current is n:
            handed_to = _hand_over(pool, peer)
        cluster.restart(n)
        _wait_caught_up(pool, cluster, n, timeout)
        step = {"node": n.index, "pid": n.pid, "handed_to": handed_to,
                "seconds": round(time.monotonic() - started, 3)}
        steps.append(step)
        if report is not None:
            report(step)
    return steps


def _hand_over(pool: ConnectionPool, peer: str) -> str:
    """Move leadership away from ``peer``; a transfer that loses to timing is tried again."""
    for attempt in range(TRANSFER_ATTEMPTS):
        try:
            new = api.transfer_leader(peer, None, pool=pool)
        except TransferFailed as exc:
            if attempt == TRANSFER_ATTEMPTS - 1:
                raise
            leader = exc.details.get("leader")
            if isinstance(leader, str) and leader != peer:
                return leader  # someone else took over: good enough
            continue
        if new != peer:
            return new
    raise TransferFailed(f"{peer} kept the leadership")


def _wait_caught_up(pool: ConnectionPool, cluster: LocalCluster, n: NodeProcess,
                    timeout: float) -> None:
    leader = admin.wait_leader(pool, cluster, timeout)
    info = admin.stat(pool, cluster, leader, 2.0) or {}
    target = int(info.get("commit") or 0)

    def caught_up() -> bool:
        mine = admin.stat(pool, cluster, n, 0.5)
        return mine is not None and int(mine.get("applied") or 0) >= target

    wait_until(caught_up, timeout, f"node {n.index} to catch up to index {target}")
