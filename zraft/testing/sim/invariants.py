"""Raft safety invariants, checked incrementally as a driver observes its cores.

Rules:
- The checker never looks inside a core. It sees what a driver sees: the entries a Ready asks
  to append (kept in a per-node ``ShadowLog``), the committed entries handed out, role
  changes, and the final state of every live member.
- Every check is O(1) per observed entry, except leader completeness, which walks the new
  leader's retained log once per election.
- Properties (Raft paper, figure 3, plus two of ours):
  election safety      at most one leader per term, across the whole history;
  log matching         one (index, term) names one entry with one predecessor term, globally,
                       which by induction means equal (index, term) => identical prefix;
  leader completeness  an entry committed (observed) in term T is in the log of every leader
                       of a term > T (or covered by that leader's snapshot);
  state-machine safety no two nodes apply different entries at one index;
  commit monotonic     within one incarnation a node's commit index never decreases and it
                       applies index n only after n-1;
  durability           at the end, every acknowledged proposal is applied on every live member.
- A violation raises ``InvariantViolation`` (an AssertionError) with a readable message.
"""

from __future__ import annotations

from typing import Any

from zraft.core.entries import Entry


class InvariantViolation(AssertionError):
    """A Raft safety property was broken."""


class ShadowLog:
    """A node's log as its driver was told it: snapshot base plus one term per later index."""

    __slots__ = ("base", "base_term", "terms")

    def __init__(self, base: int = 0, base_term: int = 0, terms: list[int] | None = None):
        self.base = base
        self.base_term = base_term
        self.terms: list[int] = terms if terms is not None else []

    @property
    def last_index(self) -> int:
        return self.base + len(self.terms)

    def term(self, index: int) -> int | None:
        """Term at ``index``; None when compacted away or beyond the end."""
        if index == self.base:
            return self.base_term
        offset = index - self.base - 1
        if 0 <= offset < len(self.terms):
            return self.terms[offset]
        return None

    def append(self, entries: list[Entry]) -> None:
        first = entries[0].index
        offset = first - self.base - 1
        if offset < 0:
            # Entries at or below the snapshot: keep only the part after it.
            entries = [e for e in entries if e.index > self.base]
            if not entries:
                return
            offset = 0
        if offset > len(self.terms):
            raise InvariantViolation(
                f"append leaves a gap: entries start at {first}, log ends at {self.last_index}"
            )
        del self.terms[offset:]
        self.terms.extend(e.term for e in entries)

    def install_snapshot(self, index: int, term: int) -> None:
        """Log restarts after ``index``; a suffix that agrees at ``index`` is kept."""
        if self.term(index) == term and index >= self.base:
            self.terms = self.terms[index - self.base :]
        else:
            self.terms = []
        self.base, self.base_term = index, term

    def compact(self, index: int) -> None:
        if index <= self.base:
            return
        term = self.term(index)
        if term is None:
            return
        self.terms = self.terms[index - self.base :]
        self.base, self.base_term = index, term


def entry_identity(entry: Entry) -> tuple[Any, ...]:
    return (entry.type, entry.data)


class SafetyChecker:
    """Collects observations from every node and raises on the first broken property."""

    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}
        # (index, term) -> (entry identity, term of index-1)
        self.entries_seen: dict[tuple[int, int], tuple[Any, int | None]] = {}
        # index -> (term, identity) of the entry every node must apply there
        self.applied_entries: dict[int, tuple[int, Any]] = {}
        # index -> lowest term in which some node was seen handing it out as committed
        self.commit_term: dict[int, int] = {}
        self.max_committed = 0
        self.node_applied: dict[str, int] = {}
        self.node_commit: dict[str, int] = {}

    # -- observations --------------------------------------------------------------------

    def leader_elected(self, node: str, term: int, log: ShadowLog) -> None:
        other = self.leaders.get(term)
        if other is not None and other != node:
            raise InvariantViolation(f"election safety: {other} and {node} both led term {term}")
        self.leaders[term] = node
        self._check_completeness(node, term, log)

    def _check_completeness(self, node: str, term: int, log: ShadowLog) -> None:
        applied = self.applied_entries
        commit_term = self.commit_term
        if log.base and log.base in applied and applied[log.base][0] != log.base_term:
            raise InvariantViolation(
                f"leader completeness: leader {node} (term {term}) has a snapshot at "
                f"{log.base} with term {log.base_term}, but term {applied[log.base][0]} "
                f"was committed there"
            )
        for index in range(log.base + 1, self.max_committed + 1):
            committed_in = commit_term.get(index)
            if committed_in is None or committed_in >= term:
                continue
            want = applied[index][0]
            have = log.term(index)
            if have != want:
                raise InvariantViolation(
                    f"leader completeness: leader {node} of term {term} has term {have} at "
                    f"index {index}, but an entry of term {want} was committed there in term "
                    f"{committed_in}"
                )

    def appended(self, node: str, entries: list[Entry], log: ShadowLog) -> None:
        """Call after ``log.append(entries)``: the entries are now in ``node``'s log."""
        seen = self.entries_seen
        for entry in entries:
            prev = log.term(entry.index - 1)
            key = (entry.index, entry.term)
            mine = (entry_identity(entry), prev)
            known = seen.get(key)
            if known is None:
                seen[key] = mine
            elif known != mine and (known[0] != mine[0] or None not in (known[1], prev)):
                raise InvariantViolation(
                    f"log matching: {node} holds entry {key} = {mine}, but that index and "
                    f"term already named {known}"
                )

    def applied(self, node: str, node_term: int, entry: Entry) -> None:
        """``node`` (currently in ``node_term``) hands out committed ``entry`` to apply."""
        index = entry.index
        last = self.node_applied.get(node, 0)
        if index != last + 1:
            raise InvariantViolation(
                f"commit went backwards or skipped: {node} applies {index} after {last}"
            )
        self.node_applied[node] = index
        mine = (entry.term, entry_identity(entry))
        known = self.applied_entries.get(index)
        if known is None:
            self.applied_entries[index] = mine
            if index > self.max_committed:
                self.max_committed = index
        elif known != mine:
            raise InvariantViolation(
                f"state-machine safety: {node} applies {mine} at index {index}, but "
                f"{known} was applied there before"
            )
        prior = self.commit_term.get(index)
        if prior is None or node_term < prior:
            self.commit_term[index] = node_term

    def commit_observed(self, node: str, commit: int) -> None:
        """``node``'s commit index now; it may only grow within one incarnation."""
        last = self.node_commit.get(node, 0)
        if commit < last:
            raise InvariantViolation(f"commit went backwards on {node}: {last} -> {commit}")
        self.node_commit[node] = commit

    def restarted(self, node: str, applied: int) -> None:
        """A new incarnation of ``node``: its state machine resumes after ``applied`` and its
        commit index (volatile) starts from scratch."""
        self.node_applied[node] = applied
        self.node_commit[node] = 0

    def reset_applied(self, node: str, index: int) -> None:
        """``node`` restarted or installed a snapshot: it continues after ``index``."""
        self.node_applied[node] = index

    # -- end of run -----------------------------------------------------------------------

    def check_acknowledged(
        self, acknowledged: list[tuple[int, int]], live_applied: dict[str, int]
    ) -> None:
        """Every acknowledged (index, term) is committed and applied on every live member."""
        for index, term in acknowledged:
            known = self.applied_entries.get(index)
            if known is None or known[0] != term:
                raise InvariantViolation(
                    f"durability: acknowledged entry ({index}, {term}) is not the entry "
                    f"committed at {index} ({known})"
                )
            for node, applied in sorted(live_applied.items()):
                if applied < index:
                    raise InvariantViolation(
                        f"durability: live member {node} applied only up to {applied}, "
                        f"missing acknowledged entry {index}"
                    )
