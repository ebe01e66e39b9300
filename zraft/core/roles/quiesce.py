"""Quiescence: idle groups stop their timers; the safety argument is in docs/internals.md.

Rules:
- A leader (``quiesce_ticks`` > 0) whose group stayed idle for ``quiesce_ticks`` ticks
  quiesces: everything in its log is committed and durable here, every follower is in
  REPLICATE with match = our last index and nothing in flight, no read, membership change,
  departing member, recovering follower or leadership transfer is pending. It sends each
  follower a ``Quiesce`` (a heartbeat that says "stop your election timer") and stops
  ticking (no heartbeats, no check-quorum).
- A follower quiesces on a ``Quiesce`` from the leader it follows, handled as a heartbeat
  first, only when its log then equals the leader's (same last index and term) and is all
  committed; otherwise it stays awake (its timer then wakes the group: see below).
- Quiesced, a core ignores ``tick()``. It wakes on: a proposal, a read (leader),
  ``change_config``, ``transfer_leader``, ``campaign``, any Raft message except a Quiesce
  from its leader or (leader) a success reply that changes nothing, and the driver's
  failure signals. Quiescence is volatile: a restarted core starts awake; any role or
  term change ends it.
- Failure signals (the node's per-node-pair liveness heartbeats): ``peer_unreachable(p)``,
  ``peer_reachable(p)`` (heard again) and ``peer_restarted(p)``. A follower whose leader
  is ``p`` forgets it (no stickiness any more) and campaigns within one ``election_ticks``,
  unless it heard from that leader while awake (since it last quiesced): then the signal
  is a false alarm or Raft's own election timer is already watching; a leader with ``p``
  among its followers wakes (check-quorum then runs again).
- A follower never quiesces under a peer it was told is unreachable in this term, until
  told it is reachable (or restarted: it is alive, and awake, so its own election timer
  keeps the group live): a Quiesce still in flight from a dead leader must not put its
  followers back to sleep after the signal that woke them.
- Reads are never served on the strength of quiescence: a read wakes the leader and takes
  the usual quorum round (``_check_reads``), so a deposed quiesced leader answers none.
"""

from __future__ import annotations

from typing import Any

from zraft.core.messages import AppendEntries, AppendReply, Quiesce
from zraft.core.progress import REPLICATE
from zraft.core.roles import FOLLOWER, LEADER


class QuiesceRole:
    # -- leader side ---------------------------------------------------------------------

    def _maybe_quiesce(self: Any) -> None:
        """Called at the end of a leader tick."""
        if not self._can_quiesce():
            self._idle_ticks = 0
            return
        self._idle_ticks += 1
        if self._idle_ticks < self.cfg.quiesce_ticks:
            return
        log = self.log
        last, last_term, commit = log.last_index(), log.last_term(), self.commit
        for peer, pr in self.progress.items():
            self._msgs.append(Quiesce(self.term, self.id, peer, last, last_term, commit,
                                      self.epoch, self.cluster))
            pr.sent_commit = commit
        self.quiesced = True

    def _can_quiesce(self: Any) -> bool:
        if (self.transfer is not None or self.change is not None or self.departing
                or self._read_wait or self._read_new or self._read_pending
                or self._bcast or self._dirty):
            return False
        log = self.log
        last = log.last_index()
        if self.commit != last or log.stable_last() != last or self.applied != last:
            return False
        if log.config()[1].is_joint:
            return False
        for pr in self.progress.values():
            if (pr.state != REPLICATE or pr.match != last or pr.inflight or pr.learner
                    or pr.departing or pr.heal_to or not pr.heard_awake):
                return False
        return True

    # -- follower side -------------------------------------------------------------------

    def _on_quiesce(self: Any, msg: Quiesce) -> None:
        """A heartbeat first (we learn the commit and answer), then quiesce if our log is
        the leader's and all committed."""
        self._on_append(AppendEntries(msg.term, msg.src, msg.dst, msg.last_index,
                                      msg.last_term, [], msg.commit, msg.epoch, 0,
                                      msg.cluster))
        log = self.log
        if (self.role == FOLLOWER and self.leader == msg.src and self.transfer is None
                and self._suspects.get(msg.src) != self.term
                and not self.recovering and log.last_index() == msg.last_index
                and log.term(msg.last_index) == msg.last_term
                and self.commit == msg.last_index == msg.commit):
            self.quiesced = True
            self._leader_live = False

    # -- waking --------------------------------------------------------------------------

    def _wakes(self: Any, msg: Any) -> bool:
        """Does ``msg`` (of our term or any other) end our quiescence?"""
        kind = type(msg)
        if self.role == LEADER:
            # the acknowledgements of our Quiesce (or stale duplicates) change nothing
            return not (kind is AppendReply and msg.success and not msg.recovering
                        and msg.term == self.term and msg.index >= self.log.last_index())
        return not (kind is Quiesce and msg.term == self.term and msg.src == self.leader)

    def _wake(self: Any, heartbeat: bool = False) -> None:
        """End quiescence. A leader's check-quorum starts a fresh round (what it heard
        before sleeping proves nothing now); ``heartbeat``: tell the followers at once."""
        self.quiesced = False
        self._idle_ticks = 0
        if self.role == LEADER:
            self.election_elapsed = 0
            self.heartbeat_elapsed = 0
            for peer, pr in self.progress.items():
                pr.recent_active = False
                pr.heard_awake = False  # quiesce again only after every follower answered
                if heartbeat:
                    self._send_heartbeat(peer, pr)
        else:
            self._reset_election_timer()

    # -- failure signals (from the driver) -----------------------------------------------

    def peer_unreachable(self: Any, peer: str) -> None:
        """The node holding ``peer`` has not been heard from for longer than the driver's
        bound (or its connection broke)."""
        self._failure_signal(peer)

    def peer_restarted(self: Any, peer: str) -> None:
        """The node holding ``peer`` restarted: whatever it led, it leads no more."""
        self._failure_signal(peer, restarted=True)

    def peer_reachable(self: Any, peer: str) -> None:
        """The node holding ``peer``, reported unreachable, was heard from again."""
        self._suspects.pop(peer, None)

    def _failure_signal(self: Any, peer: str, restarted: bool = False) -> None:
        if peer == self.id:
            return
        if restarted:
            self._suspects.pop(peer, None)
        elif "quiesce_ignore_failure" not in self.mutations:
            self._suspects[peer] = self.term
        if self.role == LEADER:
            if self.quiesced and peer in self.progress:
                self._wake(heartbeat=True)
            return
        if peer != self.leader or self._leader_live \
                or "quiesce_ignore_failure" in self.mutations:
            return  # not our leader, or heard from awake: Raft's own timer watches it
        # Our leader is gone (or maybe only slow: a wrong guess costs one pre-vote round,
        # which a live leader's answer ends). No stickiness for it any more, and an
        # election within one election_ticks. The signal reaches every follower at about
        # the same time, so plain random timers often split the vote: each voter takes a
        # slot of its own in that window, in an order that differs per group (so the new
        # leaders spread over the nodes), with a random offset inside the slot.
        self.quiesced = False
        self._idle_ticks = 0
        self.leader = None
        self._reset_election_timer()
        others = sorted((_fnv(self.cluster + p), p) for p in self.log.config()[1].voters()
                        if p != peer)
        ids = [p for _, p in others]
        rank = ids.index(self.id) if self.id in ids else 0
        slot = max(1, self.cfg.election_ticks // max(1, len(others)))
        remaining = 1 + rank * slot + self.rng.randrange(slot)
        self.election_elapsed = max(0, self.timeout - remaining)


def _fnv(text: str) -> int:
    """FNV-1a (32 bits) of ``text``: the same order on every node (``hash`` is salted)."""
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h
