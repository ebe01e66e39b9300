"""Elections: PreVote, votes, stickiness and removed-peer detection.

Rules:
- With ``prevote`` a peer first asks with ``term + 1`` without bumping its term; voters
  answer without changing any state. Only a pre-vote quorum starts a real election.
- Stickiness: a leader ignores every (pre)vote request; a follower that heard from a live
  leader within the minimum election timeout ignores them too (Raft thesis 4.2.3), so a
  partitioned or removed peer cannot disrupt a healthy cluster with its higher term.
- A candidate counts its own vote only once its (term, vote) is durable.
- A vote is granted at most once per term and only to a log at least as up to date as
  ours, and never while ``recovering`` (our log may lack entries we acknowledged, so the
  up-to-date check would be a lie; pre-votes alike). Every vote request and reply
  (pre-votes too) is a persisted message, so it leaves only once the term and vote it
  depends on are durable.
- A VoteRequest with ``transfer`` (an election started by the leader's TimeoutNow, see
  transfer.py) is answered despite stickiness; every other rule applies to it.
- A voter whose COMMITTED stable config excludes the candidate, and whose log shows the
  candidate has not even seen that config, answers ``removed=True`` without looking at the
  term; the candidate then stops for good (emits Removed).
"""

from __future__ import annotations

from typing import Any

from zraft.core.messages import VoteReply, VoteRequest
from zraft.core.quorum import LOST, WON, vote_result
from zraft.core.roles import CANDIDATE, FOLLOWER, LEADER, PRECANDIDATE


class ElectionRole:
    def _start_election(self: Any) -> None:
        if not self.promotable():
            return
        if self.cfg.prevote:
            self._become_precandidate()
        else:
            self._become_candidate()

    def _become_precandidate(self: Any) -> None:
        self.role = PRECANDIDATE
        self.leader = None
        self.votes = {self.id: True}
        self._reset_election_timer()
        self._send_vote_requests(self.term + 1, prevote=True)
        self._tally()

    def _become_candidate(self: Any, transfer: bool = False) -> None:
        self.term += 1
        self.vote = self.id
        self.role = CANDIDATE
        self.leader = None
        # our own vote counts only once the Ready carrying (term, vote) is durable: a
        # single voter must not lead a term it could forget in a crash (ready() records
        # which Ready that is, persisted() counts the vote)
        self.votes = {}
        self._self_vote_ready = -1
        self._reset_election_timer()
        self._send_vote_requests(self.term, prevote=False, transfer=transfer)
        self._tally()

    def _count_own_vote(self: Any) -> None:
        self._self_vote_ready = 0
        if self.role == CANDIDATE and self.vote == self.id:
            self.votes[self.id] = True
            self._tally()

    def _send_vote_requests(self: Any, term: int, prevote: bool,
                            transfer: bool = False) -> None:
        log = self.log
        last_index, last_term = log.last_index(), log.last_term()
        out = self._pmsgs  # every vote request and reply waits for durability
        for peer in sorted(log.config()[1].voters()):
            if peer != self.id:
                out.append(VoteRequest(term, self.id, peer, last_index, last_term, prevote,
                                       self.cluster, transfer))

    def _tally(self: Any) -> None:
        result = vote_result(self.log.config()[1], self.votes)
        if result == WON:
            if self.role == PRECANDIDATE:
                self._become_candidate()
            else:
                self._become_leader()
        elif result == LOST:
            self.become_follower(self.term, None)

    # -- voter side ----------------------------------------------------------------------

    def _on_vote_request(self: Any, msg: VoteRequest) -> None:
        log = self.log
        cidx, ccfg = log.config_at(self.commit)
        if (
            ccfg.old
            and not ccfg.new
            and msg.src not in ccfg.old
            and msg.last_index < cidx
        ):
            self._pmsgs.append(VoteReply(self.term, self.id, msg.src, False, msg.prevote, True,
                                          self.cluster))
            return
        in_lease = self.role == LEADER or (
            self.leader is not None and self.election_elapsed < self.cfg.min_election_timeout
        )
        if msg.term > self.term:
            if in_lease and not msg.transfer:
                return
            if not msg.prevote:
                self.become_follower(msg.term, None)
        elif msg.term < self.term:
            self._pmsgs.append(VoteReply(self.term, self.id, msg.src, False, msg.prevote, False,
                                          self.cluster))
            return
        can_vote = self.role != LEADER and (
            self.vote == msg.src
            or (self.vote is None and self.leader is None)
            or (msg.prevote and msg.term > self.term)
        )
        up_to_date = "vote_stale_log" in self.mutations or log.is_up_to_date(
            msg.last_index, msg.last_term
        )
        if msg.transfer and "transfer_force_vote" in self.mutations:
            up_to_date = True
        if self.recovering and "vote_while_recovering" not in self.mutations:
            up_to_date = False
        if msg.prevote:  # answered without any state change
            if can_vote and up_to_date:
                self._pmsgs.append(VoteReply(msg.term, self.id, msg.src, True, True, False,
                                              self.cluster))
            else:
                self._pmsgs.append(VoteReply(self.term, self.id, msg.src, False, True, False,
                                              self.cluster))
            return
        granted = can_vote and up_to_date
        if granted:
            if "forget_vote" not in self.mutations:
                self.vote = msg.src
            self._reset_election_timer()
        self._pmsgs.append(VoteReply(self.term, self.id, msg.src, granted, False, False,
                                      self.cluster))

    # -- candidate side ------------------------------------------------------------------

    def _on_vote_reply(self: Any, msg: VoteReply) -> None:
        if self.role == PRECANDIDATE:
            if not msg.prevote:
                return
        elif self.role != CANDIDATE or msg.prevote or msg.term != self.term:
            return
        self.votes[msg.src] = msg.granted
        self._tally()

    def _on_removed_reply(self: Any, msg: VoteReply) -> None:
        if self.role == LEADER:
            return
        if not self.log.config()[1].has_voter(msg.src):
            return
        self._mark_removed(0)
        if self.role != FOLLOWER:
            self.become_follower(self.term, None)
