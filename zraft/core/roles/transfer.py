"""Leadership transfer (Raft thesis 3.10): the leader hands over to a chosen voter.

Rules:
- ``transfer_leader(to, ctx, timeout_ticks)`` on the leader; ``to=None`` picks the voter
  with the highest match index (ties: the first id). While a transfer runs the leader takes
  no proposal (``TransferInProgress``, a NotLeader: nothing was appended) and no membership
  change (``retry``), so the target's log can become equal to the leader's.
- Once the target's durable match index reaches the leader's last index the leader sends it
  ``TimeoutNow`` (again after each later reply of the target, so a lost one is repeated).
- The target acts on a TimeoutNow only from its term's leader, when promotable, and when its
  log holds the entry the leader named (a stale or replayed one is ignored): it starts a real
  election at once (no pre-vote) whose VoteRequests carry ``transfer``: voters answer them
  even within a leader's lease (stickiness), for this election only. The log check is
  unchanged, so election safety and leader completeness rest on the usual vote rules.
- The transfer ends with ``TransferResult``: success when the target is known to lead;
  ``other_leader`` when another peer won; ``timeout`` after ``timeout_ticks`` (the leader,
  if still leading, takes proposals again). A leader that steps down keeps waiting (as a
  follower) to learn who leads, at least one more election timeout (the new leader's
  first append takes a moment after its win). A TimeoutNow that arrives after its
  transfer was abandoned, while its leader has appended nothing since, still starts an
  election: a needless one, never an unsafe one (the vote rules are unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zraft.core.messages import TimeoutNow, TransferResult
from zraft.core.roles import LEADER

NOT_LEADER = "not_leader"
IN_PROGRESS = "transfer_in_progress"
UNKNOWN_PEER = "unknown_peer"
NO_TARGET = "no_target"
TIMEOUT = "timeout"
OTHER_LEADER = "other_leader"


@dataclass(slots=True)
class PendingTransfer:
    target: str
    ctx: Any
    ticks_left: int


class TransferRole:
    def transfer_leader(self: Any, to: str | None, ctx: Any, timeout_ticks: int = 0) -> None:
        """Hand leadership to ``to`` (or the most up-to-date voter); answered by
        TransferResult in Ready.events. ``timeout_ticks`` 0: one election timeout."""
        if self.role != LEADER:
            self._events.append(TransferResult(ctx, NOT_LEADER, self.leader, to))
            return
        if self.quiesced:
            self._wake(heartbeat=True)
        if self.transfer is not None:
            self._events.append(TransferResult(ctx, IN_PROGRESS, self.id, self.transfer.target))
            return
        cfg = self.log.config()[1]
        if to is None:
            to = self._most_up_to_date_voter()
            if to is None:
                self._events.append(TransferResult(ctx, NO_TARGET, self.id, None))
                return
        if to == self.id:
            self._events.append(TransferResult(ctx, None, self.id, to))
            return
        pr = self.progress.get(to)
        if not cfg.has_voter(to) or pr is None or pr.learner or pr.departing:
            self._events.append(TransferResult(ctx, UNKNOWN_PEER, self.id, to))
            return
        ticks = timeout_ticks if timeout_ticks > 0 else self.cfg.election_ticks
        self.transfer = PendingTransfer(to, ctx, ticks)
        self._dirty.add(to)  # replicate to it now (a PROBE target is probed)
        self._transfer_check(to, pr)

    def _most_up_to_date_voter(self: Any) -> str | None:
        cfg = self.log.config()[1]
        best, best_match = None, -1
        for p in sorted(cfg.voters()):
            pr = self.progress.get(p)
            if p == self.id or pr is None or pr.learner or pr.departing:
                continue
            if pr.match > best_match:
                best, best_match = p, pr.match
        return best

    def _transfer_check(self: Any, peer: str, pr: Any) -> None:
        """Leader: the target answered; send TimeoutNow once it holds our whole log."""
        log = self.log
        last = log.last_index()
        if pr.match >= last or "transfer_without_catchup" in self.mutations:
            self._msgs.append(TimeoutNow(self.term, self.id, peer, last, log.last_term(),
                                         self.cluster))

    def _tick_transfer(self: Any) -> None:
        tr = self.transfer
        tr.ticks_left -= 1
        if tr.ticks_left <= 0:
            self._end_transfer(TIMEOUT)

    def _end_transfer(self: Any, error: str | None) -> None:
        tr = self.transfer
        self.transfer = None
        self._events.append(TransferResult(tr.ctx, error, self.leader, tr.target))

    def _transfer_watch(self: Any) -> None:
        """Not leading (any more) with a transfer pending: done once a leader is known."""
        tr = self.transfer
        leader = self.leader
        if tr is None or leader is None:
            return
        self._end_transfer(None if leader == tr.target else OTHER_LEADER)

    # -- target side ---------------------------------------------------------------------

    def _on_timeout_now(self: Any, msg: TimeoutNow) -> None:
        if self.leader is not None and msg.src != self.leader:
            return  # not from the leader we follow in this term
        if not self.promotable():
            return
        if self.log.term(msg.last_index) != msg.last_term \
                and "transfer_without_catchup" not in self.mutations:
            return
        self._become_candidate(transfer=True)
