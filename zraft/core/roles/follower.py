"""Follower side of replication: AppendEntries and InstallSnapshot.

Rules:
- Any append or snapshot of our term (or higher) makes us a follower of its sender and
  resets the election timer; one from a second sender in the same term cannot happen in a
  correct cluster: it is refused with a SafetyAlarm (zraft_lib crashed: SPEC 11 item 9).
- Entries at or below our commit are committed and therefore match the leader's log: they
  are skipped, never compared or truncated.
- Entries whose (index, term) already match are skipped; the log is truncated only at the
  first real conflict, which must lie above the commit index (else InvariantViolation).
  A stale, duplicate or reordered append therefore never removes anything.
- Commit = max(commit, min(leader commit, prev_index + len(entries))).
- A reject carries a hint: our last index on a gap, else the last index whose term is at
  most the leader's ``prev_term``; success carries the highest index known to match.
- Every reply is a persisted message: it leaves only once our entries are durable.
"""

from __future__ import annotations

from typing import Any

from zraft.core.errors import InvariantViolation
from zraft.core.messages import AppendEntries, AppendReply, InstallSnapshot
from zraft.core.roles import FOLLOWER


class FollowerRole:
    def _follow(self: Any, msg: Any) -> bool:
        """Accept ``msg``'s sender as our leader; False (refused, alarm raised) if another
        peer already leads our term."""
        if self.role != FOLLOWER:
            self.become_follower(msg.term, msg.src)
        elif self.leader is None:
            self.leader = msg.src
            if self.transfer is not None:
                self._transfer_watch()
        elif self.leader != msg.src:
            self._safety_alarm("second_leader", msg,
                               f"{type(msg).__name__} in term {self.term} led by {self.leader}")
            return False
        self._reset_election_timer()
        self._leader_live = True
        return True

    def _on_append(self: Any, msg: AppendEntries) -> None:
        if not self._follow(msg):
            return
        log = self.log
        prev = msg.prev_index
        entries = msg.entries
        n = len(entries)
        if n and entries[0].index != prev + 1:
            return  # malformed: entries must follow prev
        end = prev + n
        commit = self.commit
        if prev < commit:
            # the prefix up to our commit is committed, hence matches the leader's log
            skip = commit - prev
            entries = entries[skip:] if skip < n else []
        else:
            last = log.last_index()
            if prev > last:
                self._reject(msg, last, log.last_term())
                return
            if log.term(prev) != msg.prev_term:
                hint = log.find_conflict_by_term(prev, msg.prev_term)
                self._reject(msg, hint, log.term(hint) or 0)
                return
        if entries:
            last = log.last_index()
            i = 0
            k = len(entries)
            while i < k:
                e = entries[i]
                if e.index > last:
                    break
                if log.term(e.index) != e.term:
                    if e.index <= commit:
                        raise InvariantViolation(
                            f"{self.id}: conflict at {e.index} <= commit {commit}"
                        )
                    break
                i += 1
            if i < k:
                log.append(entries[i:] if i else entries)
            elif (
                "truncate_matching" in self.mutations and commit <= end < log.last_index()
            ):
                log.truncate_after(end)  # the zraft_lib bug, kept as a test mutation
        new_commit = min(msg.commit, end)
        if new_commit > self.commit:
            self.commit = new_commit
            self._check_removed()
        if self.recovering and msg.heal_to and (
            max(end, commit) >= msg.heal_to or "heal_early" in self.mutations
        ):
            # our log now matches the leader's through heal_to: healed once that is durable
            self._heal_at = max(end, commit)
            self._maybe_heal_at()
        self._pmsgs.append(
            AppendReply(self.term, self.id, msg.src, True, max(end, commit), 0, 0, msg.epoch,
                        bool(self.recovering), self.cluster)
        )

    def _reject(self: Any, msg: AppendEntries, hint_index: int, hint_term: int) -> None:
        self._pmsgs.append(
            AppendReply(
                self.term, self.id, msg.src, False, msg.prev_index, hint_index, hint_term,
                msg.epoch, bool(self.recovering), self.cluster,
            )
        )

    def _on_install_snapshot(self: Any, msg: InstallSnapshot) -> None:
        if not self._follow(msg):
            return
        meta = msg.meta
        if meta.index > self.commit:
            was_voter = self._is_voter_in(self.log.config()[1])
            self.log.restore(meta)
            self._snapshot_to_install = meta
            self.commit = meta.index
            self.applied = meta.index
            # the snapshot hides the config entries that removed us, if it did: the config
            # we knew before it tells whether we were a member
            self._check_removed(known_voter=was_voter)
        self._pmsgs.append(
            AppendReply(self.term, self.id, msg.src, True, meta.index, 0, 0, msg.epoch,
                        bool(self.recovering), self.cluster)
        )
