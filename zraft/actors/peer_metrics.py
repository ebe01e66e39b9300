"""Per-peer figures the actors keep for the metrics endpoint (served by zraft/node/metrics.py).

Rules:
1. Single writer: each field is written by one actor thread (the peer, its log writer or
   its state machine) and only read by the scrape. No lock: a scrape may see a histogram's
   sum one batch ahead of its buckets, which Prometheus tolerates; the writers never wait.
   (While a restarted peer's old log writer finishes, two threads may write for a moment:
   the worst case is one lost count.)
2. Updated per batch, never per request: one ``observe(value, count)`` covers a whole
   group-commit batch (``count`` requests that shared the same latency).
3. The object outlives the actors: the node keeps one per local peer and hands the same
   one to every restart of that peer, so counters only reset when the process does.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# Seconds: 100 µs (a batched fsync on a fast disk) to 10 s (a stalled disk or a lost quorum).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0)


class BatchHistogram:
    """A Prometheus-shaped histogram (cumulative ``le`` buckets, sum, count) written by one
    thread; ``observe`` is a bisect and two adds."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float, count: int = 1) -> None:
        """``count`` observations of ``value`` (a batch whose members shared it)."""
        self.counts[bisect_left(self.bounds, value)] += count
        self.sum += value * count

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        """(cumulative buckets as (le, count) with "+Inf" last, sum), for a scrape."""
        counts = list(self.counts)  # one copy: the buckets agree with each other
        total = self.sum
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), counts, strict=True):
            running += n
            out.append((bound, running))
        return out, total


@dataclass(eq=False)
class PeerMetrics:
    """What one local peer's actors count (see the module rules)."""

    # the peer actor
    proposals: int = 0  # commands accepted into the leader's log
    proposals_refused: int = 0  # proposals answered not_leader
    leader_changes: int = 0  # times this peer saw the leader change (to another or none)
    proposal_seconds: BatchHistogram = field(default_factory=BatchHistogram)
    # the log writer
    fsync_seconds: BatchHistogram = field(default_factory=BatchHistogram)
    entries_written: int = 0
    # the state machine
    apply_seconds: BatchHistogram = field(default_factory=BatchHistogram)
    entries_applied: int = 0
    snapshots_taken: int = 0
    snapshot_seconds_total: float = 0.0
    snapshot_last_seconds: float = 0.0
    snapshot_bytes_total: int = 0
