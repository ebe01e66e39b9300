"""Node-level failure signals for the simulator (a real node's per-node-pair liveness
heartbeats, ``zraft.node.liveness``), given to the cores as ``peer_unreachable``,
``peer_reachable`` and ``peer_restarted``.

Rules (the fault model; docs/internals.md, "Quiescence"):
- When a node crashes, every other node is told "unreachable" about it; when a link
  a -> b is cut, b is told about a, and "reachable" once it heals; when a node restarts,
  every other node is told "restarted" about it, and it is told about every node it cannot
  hear from.
- A signal arrives after a random delay, and the signals about one node to one node arrive
  in the order they were sent (one detector per pair). With probability ``loss`` a due
  signal is not delivered then but later (a lost detector heartbeat: the detector fires
  again while the silence lasts). Signals may be late, hence stale (an "unreachable" about
  a node that is back): that costs an election, never safety.
- Liveness assumption: a node that crashed (or stays cut off) is eventually reported to
  every live node.
"""

from __future__ import annotations

import random
from collections import deque

UNREACHABLE = "unreachable"
REACHABLE = "reachable"
RESTARTED = "restarted"


class SimSignals:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        # (dst, about) -> [due, seq, kind] in the order sent
        self.pending: dict[tuple[str, str], deque[list]] = {}
        self.min_delay = 5
        self.max_delay = 150
        self.loss = 0.0
        self.delivered = 0
        self._seq = 0

    def _delay(self) -> int:
        return self.rng.randint(self.min_delay, self.max_delay)

    def schedule(self, now: int, dst: str, kind: str, about: str) -> None:
        self._seq += 1
        queue = self.pending.setdefault((dst, about), deque())
        due = now + self._delay()
        if queue and queue[-1][0] > due:
            due = queue[-1][0]  # after the earlier signal of this pair
        queue.append([due, self._seq, kind])

    def forget_dst(self, dst: str) -> None:
        """``dst`` crashed: its detector's state dies with it (a restart starts afresh)."""
        for pair in [p for p in self.pending if p[0] == dst]:
            del self.pending[pair]

    def take_due(self, now: int) -> list[tuple[str, str, str]]:
        """Signals due by ``now`` as (dst, kind, about), in send order; lost ones wait."""
        out: list[tuple[int, int, str, str, str]] = []
        for pair in sorted(self.pending):
            queue = self.pending[pair]
            while queue and queue[0][0] <= now:
                if self.loss and self.rng.random() < self.loss:
                    later = now + self._delay()
                    for item in queue:  # the rest of the pair waits behind it
                        item[0] = max(item[0], later)
                    break
                due, seq, kind = queue.popleft()
                out.append((due, seq, pair[0], kind, pair[1]))
            if not queue:
                del self.pending[pair]
        out.sort()
        return [(dst, kind, about) for _due, _seq, dst, kind, about in out]
