"""Node-level failure signals for the simulator (a real node's per-node-pair liveness
heartbeats, ``zraft.node.liveness``), given to the cores as ``peer_unreachable`` and
``peer_restarted``.

Rules (the fault model; docs/internals.md, "Quiescence"):
- When a node crashes, every other node is told "unreachable" about it; when a link
  a -> b is cut, b is told about a; when a node restarts, every other node is told
  "restarted" about it, and it is told about every node it cannot hear from.
- A signal arrives after a random delay. With probability ``loss`` a due signal is not
  delivered then but later (a lost detector heartbeat: the detector fires again while the
  silence lasts); a signal whose cause is gone by then (the node is back, the link
  healed) is dropped, as a real detector would never have fired.
- Liveness assumption: a node that crashed (or stays cut off) is eventually reported to
  every live node. Nothing else is promised: signals may be late, and may be wrong (a
  restarted node reported "unreachable" by a late signal), which costs only an election.
"""

from __future__ import annotations

import random

UNREACHABLE = "unreachable"
RESTARTED = "restarted"


class SimSignals:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pending: list[tuple[int, int, str, str, str]] = []  # (due, seq, dst, kind, about)
        self.min_delay = 5
        self.max_delay = 150
        self.loss = 0.0
        self.delivered = 0
        self._seq = 0

    def schedule(self, now: int, dst: str, kind: str, about: str) -> None:
        self._seq += 1
        due = now + self.rng.randint(self.min_delay, self.max_delay)
        self.pending.append((due, self._seq, dst, kind, about))

    def take_due(self, now: int) -> list[tuple[str, str, str]]:
        """Signals due by ``now`` (dst, kind, about), in a stable order; lost ones wait."""
        due = [s for s in self.pending if s[0] <= now]
        if not due:
            return []
        self.pending = [s for s in self.pending if s[0] > now]
        due.sort()
        out = []
        for _due, _seq, dst, kind, about in due:
            if self.loss and self.rng.random() < self.loss:
                self.schedule(now, dst, kind, about)
            else:
                out.append((dst, kind, about))
        return out
