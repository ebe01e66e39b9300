"""What the leader knows about one follower (the state zraft_peer_proxy kept).

Rules (etcd's tracker, see DESIGN.md part 2):
- PROBE: the leader does not know where the follower's log ends. At most one append is in
  flight (``probe_sent``); a heartbeat tick or any reply un-pauses it.
- REPLICATE: the follower is known to match up to ``match``; appends are pipelined: ``next``
  advances as soon as a batch is sent, at most ``max_inflight`` batches are unacknowledged.
- SNAPSHOT: the follower needs entries the leader has compacted; appends pause (heartbeats
  continue) until a success reply reaches ``pending_snapshot`` or the send fails.
- ``match`` only grows, except when the follower reports it is recovering from a damaged
  log: then it falls to what the follower reports (what was counted may be gone). ``next``
  is > ``match``, except while repairing a follower that lost acknowledged entries (its
  reject hint lies below ``match``).
- Learners (staging members) and departing members are replicated to but never counted.
"""

from __future__ import annotations

from collections import deque

PROBE = "probe"
REPLICATE = "replicate"
SNAPSHOT = "snapshot"


class Progress:
    __slots__ = (
        "departing",
        "epoch",
        "heal_to",
        "heard_awake",
        "inflight",
        "learner",
        "match",
        "max_inflight",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "sent_commit",
        "sent_epoch",
        "silent_ticks",
        "snapshot_elapsed",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int, learner: bool = False) -> None:
        self.match = 0
        self.next = max(1, next_index)
        self.state = PROBE
        self.probe_sent = False
        self.inflight: deque[int] = deque()
        self.max_inflight = max_inflight
        self.pending_snapshot = 0
        self.learner = learner
        self.departing = False
        self.recent_active = False
        # a reply since the leader last woke (quiescence needs one from every follower: a
        # follower that restarted blank, or whose peer did not exist yet, has not answered)
        self.heard_awake = False
        self.epoch = 0
        self.sent_commit = 0
        self.sent_epoch = 0
        self.snapshot_elapsed = 0
        self.silent_ticks = 0  # ticks since the last reply while appends are in flight
        # the follower is recovering (lost acknowledged entries): it is whole again once
        # its log matches ours through heal_to, our last index when we first heard of it
        self.heal_to = 0

    # -- state transitions -----------------------------------------------------------------

    def become_probe(self) -> None:
        self.next = self.match + 1
        self.state = PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflight.clear()

    def become_snapshot(self, index: int) -> None:
        self.state = SNAPSHOT
        self.snapshot_elapsed = 0
        self.pending_snapshot = index
        self.probe_sent = False
        self.inflight.clear()

    # -- flow control ----------------------------------------------------------------------

    def is_paused(self) -> bool:
        if self.state == PROBE:
            return self.probe_sent
        if self.state == REPLICATE:
            return len(self.inflight) >= self.max_inflight
        return True

    def sent(self, last_index: int, n_entries: int) -> None:
        """Record an append whose entries end at ``last_index``."""
        if self.state == REPLICATE:
            if n_entries:
                self.next = last_index + 1
                self.inflight.append(last_index)
        elif self.state == PROBE:
            self.probe_sent = True

    def maybe_update(self, index: int) -> bool:
        """A success reply up to ``index``: returns True when ``match`` grew."""
        grew = index > self.match
        if grew:
            self.match = index
        if self.next <= index:
            self.next = index + 1
        inflight = self.inflight
        while inflight and inflight[0] <= index:
            inflight.popleft()
        return grew

    def maybe_decrease(self, rejected: int, next_guess: int) -> bool:
        """A reject of the append at ``rejected`` (its prev index): move ``next`` back.

        Returns False for stale rejects (already matched, or not the probe in flight).
        """
        if self.state == REPLICATE:
            if rejected <= self.match:
                return False
            self.state = PROBE
            self.inflight.clear()
        elif self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, next_guess), self.match + 1)
        self.probe_sent = False
        return True

    def as_dict(self) -> dict:
        return {
            "match": self.match,
            "next": self.next,
            "state": self.state,
            "learner": self.learner,
            "departing": self.departing,
            "inflight": len(self.inflight),
            "epoch": self.epoch,
            "heal_to": self.heal_to,
        }
