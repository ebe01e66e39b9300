"""The light session: zraft_lib's ``zraft_session_obj``, a ring of peers whose head is the leader.

Rules (SPEC 7.2, with bug 21 fixed):
- The ring is the sorted peer list rotated so the believed leader is the head: the peer that
  ``fail``/``next`` mark is always the peer requests were sent to.
- Each peer carries two marks: ``failed_at`` (unreachable) and ``not_leader_at`` (it said it is
  not the leader and did not know who is). A failed mark hides a peer for ``fail_timeout``
  seconds, a not-leader mark for ``election_timeout`` seconds.
- ``find_leader`` walks from the head; skipped peers move to the tail in order; the first clean
  peer becomes the head with its marks cleared. Nothing clean: ``NoLeaderYet`` when some peer
  was skipped as not-leader (an election is probably running: wait and retry), else
  ``AllFailed``.
- Objects are immutable: every operation returns a new LightSession, so one may be shared
  between threads; callers that share a "current" ring keep it in one place (see ``RingCell``).
- Times come from an injectable monotonic clock (seconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from zraft.client.checks import check_timeout
from zraft.errors import AllFailed, NoPeers
from zraft.ids import PeerId, peer_str

DEFAULT_ELECTION_TIMEOUT = 0.5  # zraft_lib's ET default (500 ms), in seconds

Clock = Callable[[], float]


class NoLeaderYet(Exception):
    """Every reachable peer recently said "not leader, leader unknown": wait and retry."""


@dataclass(frozen=True)
class _Marks:
    failed_at: float | None = None
    not_leader_at: float | None = None


_CLEAN = _Marks()


@dataclass(frozen=True)
class LightSession:
    """An immutable ring of peer ids; ``leader`` is the head."""

    ring: tuple[str, ...]
    marks: tuple[_Marks, ...]
    fail_timeout: float
    election_timeout: float
    clock: Clock = time.monotonic

    @staticmethod
    def new(
        peers: Iterable[PeerId | str],
        fail_timeout: float | None = None,
        election_timeout: float | None = None,
        leader: PeerId | str | None = None,
        clock: Clock = time.monotonic,
    ) -> LightSession:
        """A ring on the sorted peers, ``leader`` (default: the first peer given) at the head.
        Timeouts are checked (``checks.check_timeout``): ``ValueError`` naming a bad one."""
        et = (DEFAULT_ELECTION_TIMEOUT if election_timeout is None
              else check_timeout(election_timeout, "election_timeout"))
        ft = 2 * et if fail_timeout is None else check_timeout(fail_timeout, "fail_timeout")
        given = [peer_str(p) for p in peers]
        if not given:
            raise NoPeers("a light session needs at least one peer")
        ring = tuple(sorted(set(given)))
        session = LightSession(ring, (_CLEAN,) * len(ring), ft, et, clock)
        head = given[0] if leader is None else peer_str(leader)
        return session._rotated_to(head)

    @property
    def leader(self) -> str:
        return self.ring[0]

    @property
    def peers(self) -> list[str]:
        return sorted(self.ring)

    def _rotated_to(self, peer: str) -> LightSession:
        if peer not in self.ring:
            ring = tuple(sorted((*self.ring, peer)))
            marks = tuple(
                _CLEAN if p == peer else self.marks[self.ring.index(p)] for p in ring
            )
            return replace(self, ring=ring, marks=marks)._rotated_to(peer)
        i = self.ring.index(peer)
        return replace(
            self, ring=self.ring[i:] + self.ring[:i], marks=self.marks[i:] + self.marks[:i]
        )

    def _mark_head(self, **changes: float) -> LightSession:
        head = replace(self.marks[0], **changes)
        return replace(self, marks=(head, *self.marks[1:]))

    def fail(self) -> LightSession:
        """The head could not be reached: mark it failed and find the next leader."""
        return self._mark_head(failed_at=self.clock()).find_leader()

    def next(self) -> LightSession:
        """The head is not the leader and does not know who is."""
        return self._mark_head(not_leader_at=self.clock()).find_leader()

    def change_leader(self, new_leader: PeerId | str) -> LightSession:
        """The head named ``new_leader`` as the leader."""
        new = peer_str(new_leader)
        if new == self.leader:
            return self.set_leader(new)
        return self._mark_head(not_leader_at=self.clock())._rotated_to(new).find_leader()

    def set_leader(self, new_leader: PeerId | str) -> LightSession:
        """``new_leader`` is known to lead: put it at the head with its marks cleared."""
        session = self._rotated_to(peer_str(new_leader))
        return replace(session, marks=(_CLEAN, *session.marks[1:]))

    def find_leader(self) -> LightSession:
        now = self.clock()
        saw_not_leader = False
        for i, m in enumerate(self.marks):
            if m.failed_at is not None and now - m.failed_at < self.fail_timeout:
                continue
            if m.not_leader_at is not None and now - m.not_leader_at < self.election_timeout:
                saw_not_leader = True
                continue
            ring = self.ring[i:] + self.ring[:i]
            marks = (_CLEAN, *self.marks[i + 1 :], *self.marks[:i])
            return replace(self, ring=ring, marks=marks)
        if saw_not_leader:
            raise NoLeaderYet("no leader known yet")
        raise AllFailed("every peer failed")

    def reset(self) -> LightSession:
        """Clear every mark; the smallest peer id becomes the leader."""
        cleared = replace(self, marks=(_CLEAN,) * len(self.ring))
        return cleared._rotated_to(min(self.ring))


class RingCell:
    """The current ring shared by many concurrent calls (Client actor, CLI).

    A call reports what happened at the peer it used; the report only moves the ring if that
    peer is still the head, so a burst of replies from one old leader moves it once.
    """

    def __init__(self, session: LightSession) -> None:
        self._lock = threading.Lock()
        self._session = session

    @property
    def session(self) -> LightSession:
        return self._session

    def update(self, used_peer: str, step: Callable[[LightSession], LightSession]) -> str:
        """Apply ``step`` if ``used_peer`` is still the head; return the head to use next.

        ``step`` may raise NoLeaderYet / AllFailed; the ring is then left unchanged.
        """
        with self._lock:
            if self._session.leader == used_peer:
                self._session = step(self._session)
            return self._session.leader

    def set(self, session: LightSession) -> None:
        with self._lock:
            self._session = session
