"""StateMachine: applies committed entries to a Backend, the session table and the watches.

Pure: no threads, no clocks, no I/O of its own. The driver (``zraft/actors``) hands it
committed entries and reads, and acts on what it returns; snapshot files are written by
``SnapshotImage.write`` wherever the driver chooses (see ``zraft.fsm.snapshot``).

Rules:
- Entries are applied once, in index order: entries at or below ``applied_index`` are
  skipped, a gap raises ``ValueError`` (a driver bug). NOOP and CONFIG entries only advance
  ``applied_index`` (and the clock, below).
- Every DATA entry gets exactly one ``Reply(index, term, result, error)``; ``error`` is None
  or a code: ``bad_command: <reason>`` (undecodable/unknown command, or the backend raised
  BadCommand: its message, bounded), ``backend_error: <TypeName>: <message>`` (the backend
  raised anything else: the first line of its message, bounded, memory addresses masked, so
  every replica gives the same text), ``session_expired``, ``exists`` (connect of a live
  session), ``duplicate`` (a session write already answered and acknowledged). Nothing
  raised by a command escapes ``apply``. The backend's state is left as the raising call
  left it (no rollback): the same on every replica, since the same deterministic code ran
  on the same state (docs/backends.md, "When apply raises").
- A backend with an ``at_index(index)`` method is told the log index of each entry before
  the entry's calls (its session expiries, then its apply): a backend that stores its
  state durably keeps the index with it and, replaying the log after a restart, skips what
  it already holds (zraft/backends/sqlite.py). Others are not called.
- A backend whose ``apply`` / ``apply_in_session`` takes a keyword ``time_ms`` is given the
  entry's time (the leader's clock when it accepted the write, the same on every replica),
  the only clock a backend may read; others are called without it (no cost for them).
- Time is entry time only. Before applying each entry, every session with
  ``expires_at <= entry.time`` expires; so after any batch no session due at the last
  entry's time remains, and the result does not depend on how entries were batched.
- A new leader renews every session: before the first DATA entry of a term higher than the
  session table's ``leader_term`` is applied (and before its expiry scan), every session
  gets at least a full timeout from that entry's time. The leader's NOOP and CONFIG entries
  carry the previous entry's time, not the new leader's clock, so the first DATA entry (a
  client's, or the new leader's expiry check) is the first to tell the takeover's time.
  Time without a leader therefore never expires a session (docs/internals.md).
  Expiring: the backend drops the session's temporary data, the session's cached replies and
  watches are dropped, watches on the deleted keys fire, and ``("disconnected", sid)`` is
  reported so the leader can tell the session.
- Watches are leader-only: a watched read needs ``set_leader(True)`` and a live session;
  ``set_leader(False)`` fires every watch with ``leader_changed``.
- The driver must deliver a batch's ``triggers`` before its ``replies`` (zraft_lib: a watch
  fires before the reply of the write that changed the key).
- Snapshots: ``should_snapshot()`` once ``max_log_count`` entries were applied since the
  last one AND their command bytes reach ``snapshot_log_ratio`` x the last snapshot's size
  (0: every ``max_log_count`` entries, as zraft_lib). Why: a snapshot rewrites the whole
  state, so a count alone costs O(state) per ``max_log_count`` entries, without bound as
  the state grows (a 1 MB state at 1,000 entries was a third of a node's CPU in W2); with
  the ratio, snapshot bytes written never exceed log bytes / ratio, and the log kept
  between snapshots stays about the state's size (Redis's AOF rewrite rule).
  ``take_snapshot()`` -> ``SnapshotImage``; then ``snapshot_done``/``snapshot_failed``.
  ``restore(directory)`` replaces everything replicated with a snapshot's content.

Driver recipe (the state machine actor):
    batch = machine.apply(committed)       # then, leader only: send batch.triggers,
                                           # answer batch.replies by (index, term),
                                           # tell sessions batch.events ("disconnected")
    machine.set_leader(role == leader)     # on every role change; send returned triggers
    deadline = machine.next_expiry()       # leader: once now_ms >= deadline[0], propose
                                           # commands.encode_expire_check(deadline[1])
    if machine.should_snapshot():
        image = machine.take_snapshot()    # image.write(dir) inline if not image.is_async,
        ...                                # else on a worker thread; then
        machine.snapshot_done(image, size) # (or snapshot_failed) and core.snapshot_taken(
                                           # image.index)
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from zraft.core.entries import DATA, Entry
from zraft.errors import BadCommand as ClientBadCommand
from zraft.fsm.backend import (
    ApplyResult,
    Backend,
    BadCommand,
    QueryResult,
    SnapshotCorrupted,
    reraise_interrupt,
)
from zraft.fsm.codec import hashable, normalize
from zraft.fsm.commands import (
    WRITE,
    Close,
    Connect,
    ExpireCheck,
    Ping,
    SessionWrite,
    Write,
    command_from_raw,
    unpack_command,
)
from zraft.fsm.sessions import (
    APPLY,
    DEAD,
    DUPLICATE,
    EXISTS,
    RENEWED,
    CachedReply,
    SessionTable,
)
from zraft.fsm.snapshot import DATA_DIR, SnapshotImage, read_machine_state
from zraft.fsm.watches import WatchRegistry, WatchTrigger
from zraft.saferepr import exception_line, safe_repr

log = logging.getLogger(__name__)

# keys that are hashable as they are (no conversion needed before a watch lookup)
_PLAIN_KEYS = frozenset((str, bytes, int))
_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (hot path)

DEFAULT_SNAPSHOT_LOG_RATIO = 1.0
BAD_COMMAND = "bad_command"
SESSION_EXPIRED = "session_expired"
NOT_LEADER = "not_leader"
WATCH_NOT_SUPPORTED = "watch_not_supported"
DISCONNECTED = "disconnected"


def backend_error(exc: BaseException) -> str:
    """``"backend_error: TypeName: first line of the message"`` (see ``exception_line``)."""
    return f"backend_error: {exception_line(exc)}"


# what a backend raises to refuse a command: zraft.fsm.BadCommand, or the client's
# zraft.BadCommand (the same meaning, easy to reach for from ``import zraft``)
_BAD_COMMAND = (BadCommand, ClientBadCommand)
_REASON_CHARS = 200  # a refusal's reason is kept short: it may quote what a client sent


def bad_command(exc: BadCommand | ClientBadCommand) -> str:
    """``"bad_command: <reason>"`` (the backend's message, bounded), or ``"bad_command"``.
    The reason comes from the command and the backend's code only: every replica gives the
    same one, so it may be cached in the session table."""
    reason = str(exc)
    if reason == BAD_COMMAND:  # zraft.BadCommand() without a message
        reason = ""
    return f"{BAD_COMMAND}: {reason[:_REASON_CHARS]}" if reason else BAD_COMMAND


class Reply(NamedTuple):
    """The outcome of one DATA entry, for the client waiting on (index, term)."""

    index: int
    term: int
    result: Any
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class QueryReply(NamedTuple):
    value: Any
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class SessionEvent(NamedTuple):
    """Something the leader must tell a session; ``kind`` is ``"disconnected"``."""

    kind: str
    sid: str


@dataclass
class ApplyBatch:
    """What applying a batch produced; deliver ``triggers`` before ``replies``."""

    replies: list[Reply] = field(default_factory=list)
    triggers: list[WatchTrigger] = field(default_factory=list)
    events: list[SessionEvent] = field(default_factory=list)
    applied_index: int = 0


class _Outcome(NamedTuple):
    error: str | None
    value: Any
    trigger_keys: Sequence[Hashable] = ()


class StateMachine:
    """Replicated state: backend data + session table; leader-local: watches."""

    def __init__(self, backend: Backend, peer_id: str, *, max_log_count: int = 1000,
                 snapshot_log_ratio: float = DEFAULT_SNAPSHOT_LOG_RATIO,
                 connect_reply: Any = "ok") -> None:
        self.backend = backend
        # what a new session's CONNECT answers: node-local hints for the client (e.g. the
        # election timeout); never cached or snapshotted, so it need not be replicated
        self.connect_reply = connect_reply
        self.peer_id = peer_id
        self.max_log_count = max_log_count
        self.snapshot_log_ratio = snapshot_log_ratio
        self.snapshot_bytes = 0  # size on disk of the last snapshot taken or restored
        self.log_bytes = 0  # command bytes applied since that snapshot's index
        self._log_bytes_at_take = 0
        self.applied_index = 0
        self.applied_term = 0
        self.last_time = 0  # entry time of the last applied entry
        self.snapshot_index = 0
        self.sessions = SessionTable()
        self.watches = WatchRegistry()
        self.is_leader = False
        self._snapshot_in_progress: SnapshotImage | None = None
        # bound once: a backend that asks for the entry time gets it, the others are
        # called exactly as before (the plain write path stays one call)
        self._backend_apply: Callable[[Any], Any] = (
            self._timed(backend.apply) if takes_time(backend.apply) else backend.apply)
        self._backend_apply_in_session: Callable[[Any, str], Any] = (
            self._timed(backend.apply_in_session) if takes_time(backend.apply_in_session)
            else backend.apply_in_session)
        # optional: a backend that keeps its own durable state (sqlite) learns the log
        # index of the entry each following call belongs to; others are not called
        self._at_index: Callable[[int], None] | None = getattr(backend, "at_index", None)
        backend.init(peer_id)

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            return method(*args, time_ms=self.last_time)
        return call

    # ------------------------------------------------------------------ apply

    def apply(self, entries: Iterable[Entry]) -> ApplyBatch:
        out = ApplyBatch(applied_index=self.applied_index)
        replies_append = out.replies.append
        at_index = self._at_index
        for entry in entries:
            if entry.index <= self.applied_index:
                continue
            if entry.index != self.applied_index + 1:
                raise ValueError(
                    f"entry {entry.index} applied after {self.applied_index}: gap in the log"
                )
            if at_index is not None:
                at_index(entry.index)
            if entry.term > self.sessions.leader_term and entry.type == DATA:
                self.sessions.new_leader(entry.term, entry.time)
            self._expire_due(entry.time, out)
            self.last_time = entry.time  # before the apply: a timed backend reads it
            if entry.type == DATA:
                data = entry.data
                self.log_bytes += len(data) if type(data) is bytes else 32
                error, value = self._apply_data(entry, out)
                replies_append(_new_tuple(Reply, (entry.index, entry.term, value, error)))
            self.applied_index = entry.index
            self.applied_term = entry.term
        out.applied_index = self.applied_index
        return out

    def _apply_data(self, entry: Entry, out: ApplyBatch) -> tuple[str | None, Any]:
        try:
            raw = unpack_command(entry.data)
            if type(raw) is list and len(raw) == 2 and type(raw[0]) is int and raw[0] == WRITE:
                return self._plain_write(raw[1], out)  # the common case: no Write object
            command = command_from_raw(raw)
        except _BAD_COMMAND as exc:
            return bad_command(exc), None
        time = entry.time
        if isinstance(command, Write):
            return self._plain_write(command.payload, out)
        if isinstance(command, SessionWrite):
            return self._session_write(command, time, out)
        if isinstance(command, Connect):
            return self._connect(command, time, out)
        if isinstance(command, Ping):
            if not self.sessions.ping(command.sid, command.acc_upto, time):
                return self._refuse_dead_session(command.sid, out)
            return None, "ok"
        if isinstance(command, Close):
            if command.sid in self.sessions:
                self._expire(command.sid, out)
            return None, "ok"
        assert isinstance(command, ExpireCheck)
        # nothing left to do here: the scan before this entry already expired every
        # session due by its time, this one included if it was due
        return None, "alive" if command.sid in self.sessions else "gone"

    def _connect(self, command: Connect, time: int, out: ApplyBatch) -> tuple[str | None, Any]:
        outcome = self.sessions.connect(command.sid, command.timeout_ms, time)
        if outcome == EXISTS:
            return EXISTS, None
        if outcome == RENEWED:
            # the expired incarnation's temporary data and watches go (no "disconnected":
            # the client reconnecting is the one that would receive it)
            self._drop_session_data(command.sid, out)
        return None, self.connect_reply

    def _session_write(
        self, command: SessionWrite, time: int, out: ApplyBatch
    ) -> tuple[str | None, Any]:
        sid, msg_id = command.sid, command.msg_id
        decision = self.sessions.start_write(sid, msg_id, time)
        if decision.action == DEAD:
            return self._refuse_dead_session(sid, out)
        if decision.action == APPLY:
            if command.temporary:
                outcome = self._call(self._backend_apply_in_session, command.payload, sid)
            else:
                outcome = self._call(self._backend_apply, command.payload)
            self._fire(outcome.trigger_keys, out)
            reply = _cacheable(outcome)
            self.sessions.finish_write(sid, msg_id, command.acc_upto, reply)
        else:
            assert decision.reply is not None
            reply = decision.reply
            self.sessions.finish_write(sid, msg_id, command.acc_upto)
        return reply.error, reply.value

    def _refuse_dead_session(self, sid: str, out: ApplyBatch) -> tuple[str | None, Any]:
        if sid in self.sessions:
            self._expire(sid, out)
        elif (event := SessionEvent(DISCONNECTED, sid)) not in out.events:
            out.events.append(event)  # once per batch, even if it expired just before
        return SESSION_EXPIRED, None

    def _plain_write(self, payload: Any, out: ApplyBatch) -> tuple[str | None, Any]:
        """`_call` + `_fire` for the hot path, without the intermediate outcome."""
        try:
            answer = self._backend_apply(payload)
        except _BAD_COMMAND as exc:
            return bad_command(exc), None
        except BaseException as exc:
            reraise_interrupt(exc)
            log.debug("backend %s raised on %s", type(self.backend).__name__,
                      safe_repr(payload), exc_info=True)
            return backend_error(exc), None
        if isinstance(answer, ApplyResult):
            if answer.trigger_keys and self.watches:
                self._fire(answer.trigger_keys, out)
            return None, answer.result
        return None, answer

    def _call(self, method: Callable[..., Any], *args: Any) -> _Outcome:
        """Run a backend write; turn its answer or exception into an outcome."""
        try:
            answer = method(*args)
            if isinstance(answer, ApplyResult):
                return _Outcome(None, answer.result, answer.trigger_keys)
            return _Outcome(None, answer)
        except _BAD_COMMAND as exc:
            return _Outcome(bad_command(exc), None)
        except BaseException as exc:
            reraise_interrupt(exc)
            log.debug("backend %s raised on %s", type(self.backend).__name__, safe_repr(args),
                      exc_info=True)
            return _Outcome(backend_error(exc), None)

    def _fire(self, keys: Iterable[Hashable], out: ApplyBatch) -> None:
        """Fire the watches on ``keys`` (leader only has watches). A key that cannot be made
        hashable cannot be watched: it is skipped (the write itself stands)."""
        if not keys or not self.watches:
            return
        plain: list[Hashable] = []
        for k in keys:
            if type(k) in _PLAIN_KEYS:
                plain.append(k)
            else:
                try:
                    plain.append(hashable(k))
                except TypeError:
                    log.warning("backend %s gave an unhashable trigger key %s: not watchable",
                                type(self.backend).__name__, safe_repr(k))
        out.triggers.extend(self.watches.fire(plain))

    # ------------------------------------------------------------------ expiry

    def _expire_due(self, time: int, out: ApplyBatch) -> None:
        if not self.sessions:  # nothing can expire (the common case, per entry)
            return
        while (sid := self.sessions.pop_due(time)) is not None:
            self._expire(sid, out)

    def _expire(self, sid: str, out: ApplyBatch) -> None:
        self.sessions.remove(sid)
        self._drop_session_data(sid, out)
        out.events.append(SessionEvent(DISCONNECTED, sid))

    def _drop_session_data(self, sid: str, out: ApplyBatch) -> None:
        """Delete the session's temporary data and watches; fire watches on deleted keys."""
        self.watches.drop_session(sid)
        try:
            deleted = [hashable(k) for k in self.backend.expire_session(sid)]
        except BaseException as exc:
            reraise_interrupt(exc)
            log.warning("backend expire_session(%s) raised", safe_repr(sid), exc_info=True)
            deleted = []
        self._fire(deleted, out)

    def next_expiry(self) -> tuple[int, str] | None:
        """``(expires_at, sid)`` of the first session to expire. When the leader's clock
        reaches ``expires_at`` it proposes ``encode_expire_check(sid)``: applying that entry
        expires every session due by its time."""
        return self.sessions.next_deadline()

    # ------------------------------------------------------------------ reads

    def query(
        self,
        query: Any,
        *,
        sid: str | None = None,
        watch_ref: Any = None,
        now_ms: int | None = None,
    ) -> QueryReply:
        """Read from the backend. With ``watch_ref`` the read is watched: it needs leadership
        and a session alive at ``now_ms`` (default: the last applied entry's time)."""
        watched = watch_ref is not None
        if watched:
            if not self.is_leader:
                return QueryReply(None, NOT_LEADER)
            now = self.last_time if now_ms is None else now_ms
            if sid is None or not self.sessions.is_alive(sid, now):
                return QueryReply(None, SESSION_EXPIRED)
            try:
                watch_ref = hashable(watch_ref)
            except TypeError:
                return QueryReply(None, BAD_COMMAND)
        try:
            answer = self.backend.query(query)
            if not isinstance(answer, QueryResult):
                return QueryReply(None, WATCH_NOT_SUPPORTED) if watched else QueryReply(answer)
            if watched and (answer.watch_keys or answer.watch_prefixes):
                keys = [hashable(k) for k in answer.watch_keys]
                assert sid is not None
                self.watches.register(sid, watch_ref, keys, answer.watch_prefixes)
            elif watched:
                return QueryReply(None, WATCH_NOT_SUPPORTED)
            return QueryReply(answer.value)
        except _BAD_COMMAND as exc:
            return QueryReply(None, bad_command(exc))
        except BaseException as exc:
            reraise_interrupt(exc)
            log.debug("backend query raised", exc_info=True)
            return QueryReply(None, backend_error(exc))

    # ------------------------------------------------------------------ leadership

    def set_leader(self, is_leader: bool) -> list[WatchTrigger]:
        """Record the role; losing leadership fires every watch with ``leader_changed``."""
        was_leader, self.is_leader = self.is_leader, is_leader
        if was_leader and not is_leader:
            return self.watches.leader_lost()
        return []

    # ------------------------------------------------------------------ snapshots

    @property
    def snapshot_in_progress(self) -> bool:
        return self._snapshot_in_progress is not None

    def should_snapshot(self) -> bool:
        return (
            self._snapshot_in_progress is None
            and self.max_log_count > 0
            and self.applied_index - self.snapshot_index >= self.max_log_count
            and self.log_bytes >= self.snapshot_log_ratio * self.snapshot_bytes
        )

    def take_snapshot(self) -> SnapshotImage:
        """Capture the state at ``applied_index``; the driver writes the image, then calls
        ``snapshot_done`` or ``snapshot_failed``. One snapshot at a time."""
        if self._snapshot_in_progress is not None:
            raise RuntimeError("a snapshot is already in progress")
        sessions = self.sessions.to_bytes()
        job = self.backend.snapshot()
        image = SnapshotImage(self.applied_index, self.applied_term, self.last_time, sessions, job)
        self._snapshot_in_progress = image
        self._log_bytes_at_take, self.log_bytes = self.log_bytes, 0
        return image

    def snapshot_done(self, image: SnapshotImage, size_bytes: int = 0) -> None:
        """``size_bytes``: the written snapshot's size on disk (the next one waits for about
        ``snapshot_log_ratio`` times that many command bytes)."""
        self._snapshot_in_progress = None
        self.snapshot_index = max(self.snapshot_index, image.index)
        self.snapshot_bytes = size_bytes
        self.backend.snapshot_done()

    def snapshot_failed(self, image: SnapshotImage, reason: str) -> None:
        self._snapshot_in_progress = None
        self.log_bytes += self._log_bytes_at_take  # still not covered by a snapshot
        self.backend.snapshot_failed(reason)

    def restore(self, directory: Path) -> tuple[int, int]:
        """Replace the replicated state with the snapshot in ``directory``; returns its
        (index, term). Raises ``SnapshotCorrupted`` (state unchanged) if it is damaged."""
        state = read_machine_state(Path(directory))
        try:
            sessions = SessionTable.from_bytes(state.sessions)
        except ValueError as exc:
            raise SnapshotCorrupted(f"{directory}: {exc}") from exc
        self.backend.install_snapshot(Path(directory) / DATA_DIR)
        self.sessions = sessions
        for watched_sid in {s for s, _ in self.watches.watches()}:
            if watched_sid not in sessions:
                self.watches.drop_session(watched_sid)
        self.applied_index = self.snapshot_index = state.index
        self.applied_term = state.term
        self.last_time = state.time
        self.snapshot_bytes, self.log_bytes = _tree_size(Path(directory)), 0
        return state.index, state.term

    # ------------------------------------------------------------------ status

    def stats(self) -> dict[str, Any]:
        temporary = getattr(self.backend, "temporary_count", None)
        return {
            "applied_index": self.applied_index,
            "applied_term": self.applied_term,
            "snapshot_index": self.snapshot_index,
            "snapshot_in_progress": self.snapshot_in_progress,
            "snapshot_bytes": self.snapshot_bytes,
            "log_bytes_since_snapshot": self.log_bytes,
            "sessions": len(self.sessions),
            "cached_replies": self.sessions.cached_reply_count(),
            "watchers": len(self.watches),
            "temporary_keys": temporary() if callable(temporary) else None,
            **({"backend": extra()} if callable(extra := getattr(self.backend,
                                                                 "backend_stats", None))
               else {}),
        }


def takes_time(method: Callable[..., Any]) -> bool:
    """True if ``method`` accepts a keyword argument ``time_ms`` (the entry's time)."""
    try:
        param = inspect.signature(method).parameters.get("time_ms")
    except (TypeError, ValueError):  # no signature (a builtin): it cannot take one
        return False
    return param is not None and param.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _tree_size(directory: Path) -> int:
    """Bytes of every file under ``directory`` (a snapshot: a handful of files)."""
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def _cacheable(outcome: _Outcome) -> CachedReply:
    """The reply as every replica (also one restored from a snapshot) will give it."""
    if outcome.error is not None:
        return CachedReply(outcome.error, None)
    try:
        return CachedReply(None, normalize(outcome.value))
    except BaseException as exc:
        reraise_interrupt(exc)
        return CachedReply(backend_error(exc), None)


__all__ = [
    "BAD_COMMAND",
    "DISCONNECTED",
    "DUPLICATE",
    "EXISTS",
    "NOT_LEADER",
    "SESSION_EXPIRED",
    "WATCH_NOT_SUPPORTED",
    "ApplyBatch",
    "QueryReply",
    "Reply",
    "SessionEvent",
    "StateMachine",
    "takes_time",
]
