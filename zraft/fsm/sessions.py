"""The replicated session table (zraft_lib's fsm ``monitors`` + ``sessions`` tables).

Rules:
- Time is entry time only (``entry.time``, the leader's clock when it appended the entry).
  A session is alive at time t iff it is registered and ``t < expires_at``; activity at t
  sets ``expires_at = t + timeout_ms``. Nothing here reads a clock.
- Per session: the cached replies of applied writes, keyed by message id, and
  ``acked_upto``, the highest ``acc_upto`` the client sent. Acknowledging drops replies with
  id <= acc_upto; it never goes backwards (zraft_lib started it at ``undefined``, which wiped
  the cache: here it starts at 0). A write whose id is <= ``acked_upto`` and is not cached
  was already answered and acknowledged: it is stale and must not be applied again.
- Deadlines are kept in a lazy heap of ``(expires_at, sid)``, so the expiry order is
  deterministic and finding due sessions costs O(log n).
- Commands: ``connect`` / ``ping`` / ``start_write`` + ``finish_write`` implement the table
  side of CONNECT, PING and session writes; they report a dead session and leave expiring it
  (backend data, watches, "disconnected") to the StateMachine, as ``pop_due`` does.
- A new leader gives every live session a fresh timeout (ZooKeeper's and etcd's rule), so
  time without a leader never expires a session: ``new_leader(term, time)`` sets every
  ``expires_at`` to at least ``time + timeout_ms`` and records ``leader_term``. The state
  machine calls it at the first DATA entry of each new term, before that entry's expiry
  scan (docs/internals.md, "Sessions across leader changes").
- ``to_bytes`` is canonical (sessions sorted by id, replies by message id): two replicas
  with the same history produce identical bytes. The table, ``leader_term`` included, is
  part of every snapshot (format 2; format 1 reads with ``leader_term`` 0).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any, NamedTuple

from zraft.fsm.codec import packb, unpackb

_FORMAT_VERSION = 2  # 2: [2, rows, leader_term]; 1: [1, rows]


class CachedReply(NamedTuple):
    """A session write's outcome: ``error`` is None on success, else an error code."""

    error: str | None
    value: Any


EXISTS = "exists"
RENEWED = "renewed"
DEAD = "dead"
CACHED = "cached"
DUPLICATE = "duplicate"
APPLY = "apply"


class WriteDecision(NamedTuple):
    """What to do with a session write (see ``SessionTable.start_write``)."""

    action: str
    reply: CachedReply | None = None


class Session:
    """One registered session (mutable; owned by the table)."""

    __slots__ = ("acked_upto", "expires_at", "replies", "sid", "timeout_ms")

    def __init__(self, sid: str, timeout_ms: int, expires_at: int, acked_upto: int = 0) -> None:
        self.sid = sid
        self.timeout_ms = timeout_ms
        self.expires_at = expires_at
        self.acked_upto = acked_upto
        self.replies: dict[int, CachedReply] = {}

    def __repr__(self) -> str:
        return (
            f"Session({self.sid!r}, timeout_ms={self.timeout_ms}, expires_at={self.expires_at}, "
            f"acked_upto={self.acked_upto}, replies={sorted(self.replies)})"
        )


class SessionTable:
    """Registered sessions, their deadlines and their cached replies."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._deadlines: list[tuple[int, str]] = []
        self.leader_term = 0  # the term whose leader last refreshed every session

    # ---------------------------------------------------------------- inspection

    def __contains__(self, sid: object) -> bool:
        return sid in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._sessions))

    def get(self, sid: str) -> Session | None:
        return self._sessions.get(sid)

    def is_alive(self, sid: str, time: int) -> bool:
        session = self._sessions.get(sid)
        return session is not None and time < session.expires_at

    def cached_reply_count(self) -> int:
        return sum(len(s.replies) for s in self._sessions.values())

    # ---------------------------------------------------------------- changes

    def register(self, sid: str, timeout_ms: int, time: int) -> Session:
        """Add a new session active at ``time``; ``sid`` must not be registered."""
        if sid in self._sessions:
            raise KeyError(f"session {sid!r} is already registered")
        session = Session(sid, timeout_ms, time + timeout_ms)
        self._sessions[sid] = session
        self._push(session)
        return session

    def touch(self, sid: str, time: int) -> None:
        """Activity at ``time``: push the deadline to ``time + timeout``."""
        session = self._sessions[sid]
        expires_at = time + session.timeout_ms
        if expires_at != session.expires_at:
            session.expires_at = expires_at
            self._push(session)

    def acknowledge(self, sid: str, acc_upto: int) -> None:
        """The client has every reply up to ``acc_upto``: forget them."""
        session = self._sessions[sid]
        if acc_upto <= session.acked_upto:
            return
        session.acked_upto = acc_upto
        for msg_id in [m for m in session.replies if m <= acc_upto]:
            del session.replies[msg_id]

    def cached(self, sid: str, msg_id: int) -> CachedReply | None:
        return self._sessions[sid].replies.get(msg_id)

    def remove(self, sid: str) -> Session | None:
        """Forget the session and its cached replies (its heap entries go stale)."""
        return self._sessions.pop(sid, None)

    def new_leader(self, term: int, time: int) -> None:
        """The leader of ``term`` wrote its first entry at ``time``: every session gets at
        least a full timeout from then (none is shortened). Call before expiring anything
        at ``time``, so that a session still registered then survives the takeover."""
        self.leader_term = term
        for session in self._sessions.values():
            expires_at = time + session.timeout_ms
            if expires_at > session.expires_at:
                session.expires_at = expires_at
        self._deadlines = [(s.expires_at, s.sid) for s in self._sessions.values()]
        heapq.heapify(self._deadlines)

    # ---------------------------------------------------------------- commands
    # The session commands' table side. The caller (StateMachine) does the rest of an
    # expiry (backend data, watches, "disconnected") whenever these report a dead session.

    def connect(self, sid: str, timeout_ms: int, time: int) -> str:
        """CONNECT at ``time``: ``"exists"`` if alive (nothing changes); ``"renewed"`` if it
        was registered but expired (re-registered afresh: the caller must drop the old
        incarnation's data); ``"ok"`` for a new session."""
        old = self._sessions.get(sid)
        if old is not None and time < old.expires_at:
            return EXISTS
        if old is not None:
            self.remove(sid)
        self.register(sid, timeout_ms, time)
        return "ok" if old is None else RENEWED

    def ping(self, sid: str, acc_upto: int, time: int) -> bool:
        """PING at ``time``: refresh and acknowledge if alive; False if dead or unknown."""
        if not self.is_alive(sid, time):
            return False
        self.touch(sid, time)
        self.acknowledge(sid, acc_upto)
        return True

    def start_write(self, sid: str, msg_id: int, time: int) -> WriteDecision:
        """First half of a session write at ``time``: refresh the session if alive, then
        decide. ``DEAD``: refuse (caller expires it); ``CACHED``: answer ``reply`` without
        applying; ``DUPLICATE``: already answered and acknowledged; ``APPLY``: apply it,
        then call ``finish_write`` with the reply."""
        if not self.is_alive(sid, time):
            return WriteDecision(DEAD)
        self.touch(sid, time)
        session = self._sessions[sid]
        cached = session.replies.get(msg_id)
        if cached is not None:
            return WriteDecision(CACHED, cached)
        if msg_id <= session.acked_upto:
            return WriteDecision(DUPLICATE, CachedReply(DUPLICATE, None))
        return WriteDecision(APPLY)

    def finish_write(
        self, sid: str, msg_id: int, acc_upto: int, reply: CachedReply | None = None
    ) -> None:
        """Second half: cache a fresh ``reply`` (if any), then drop replies <= acc_upto."""
        if reply is not None:
            self._sessions[sid].replies[msg_id] = reply
        self.acknowledge(sid, acc_upto)

    # ---------------------------------------------------------------- deadlines

    def _push(self, session: Session) -> None:
        heapq.heappush(self._deadlines, (session.expires_at, session.sid))
        if len(self._deadlines) > 2 * len(self._sessions) + 64:
            self._deadlines = [(s.expires_at, s.sid) for s in self._sessions.values()]
            heapq.heapify(self._deadlines)

    def _drop_stale_top(self) -> None:
        heap = self._deadlines
        while heap:
            expires_at, sid = heap[0]
            session = self._sessions.get(sid)
            if session is not None and session.expires_at == expires_at:
                return
            heapq.heappop(heap)

    def next_deadline(self) -> tuple[int, str] | None:
        """``(expires_at, sid)`` of the session that expires first, or None."""
        self._drop_stale_top()
        return self._deadlines[0] if self._deadlines else None

    def pop_due(self, time: int) -> str | None:
        """The next session with ``expires_at <= time`` (earliest first, then by id), or None.

        The session stays registered; the caller expires it (and removes it).
        """
        top = self.next_deadline()
        if top is None or top[0] > time:
            return None
        heapq.heappop(self._deadlines)
        return top[1]

    # ---------------------------------------------------------------- snapshots

    def to_bytes(self) -> bytes:
        rows = []
        for sid in sorted(self._sessions):
            s = self._sessions[sid]
            replies = [[m, r.error, r.value] for m, r in sorted(s.replies.items())]
            rows.append([sid, s.timeout_ms, s.expires_at, s.acked_upto, replies])
        return packb([_FORMAT_VERSION, rows, self.leader_term])

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionTable:
        """Rebuild a table from ``to_bytes`` output; raises ValueError if malformed."""
        try:
            version, rows, *rest = unpackb(data)
            if version not in (1, _FORMAT_VERSION) or len(rest) != version - 1:
                raise ValueError(f"unsupported session table version {version!r}")
            table = cls()
            table.leader_term = int(rest[0]) if rest else 0
            for sid, timeout_ms, expires_at, acked_upto, replies in rows:
                if not isinstance(sid, str) or sid in table._sessions:
                    raise ValueError(f"bad session id {sid!r}")
                session = Session(sid, int(timeout_ms), int(expires_at), int(acked_upto))
                for msg_id, error, value in replies:
                    session.replies[int(msg_id)] = CachedReply(error, value)
                table._sessions[sid] = session
            table._deadlines = [(s.expires_at, s.sid) for s in table._sessions.values()]
            heapq.heapify(table._deadlines)
            return table
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"corrupted session table ({type(exc).__name__}: {exc})") from exc


__all__ = ["CachedReply", "Session", "SessionTable", "WriteDecision"]
