"""The ZRaftError hierarchy, one class per zraft_lib error, with stable wire codes.

"Raft said no" travels as these exceptions; "the backend returned X" is a value.
Each class has a ``code`` (the zraft_lib atom) used on the wire; ``error_from_code`` maps back.
"""

from __future__ import annotations

from typing import Any


class ZRaftError(Exception):
    """Root of every error zraft raises."""

    code = "error"

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message or self.code)
        self.details = details


class Timeout(ZRaftError):
    """No answer within the deadline: the operation may or may not have been applied."""

    code = "timeout"


class AllFailed(ZRaftError):
    """No peer of the cluster answered (zraft_lib's ``all_failed``)."""

    code = "all_failed"


class Unreachable(ZRaftError):
    """The peer's node could not be reached, or it hosts no such peer (zraft_lib ``noproc``)."""

    code = "noproc"


class NotLeader(ZRaftError):
    """The peer is not the leader; ``leader`` is its best guess (may be None)."""

    code = "not_leader"

    def __init__(self, message: str = "", leader: str | None = None, **details: Any) -> None:
        super().__init__(message or f"not leader (leader: {leader})", **details)
        self.leader = leader


class LeaderChanged(ZRaftError):
    code = "leader_changed"


class Loading(ZRaftError):
    code = "loading"


class PeersChanged(ZRaftError):
    code = "peers_changed"


class NotStable(ZRaftError):
    code = "not_stable"


class NewerExists(ZRaftError):
    code = "newer_exists"


class ProcessPrevChange(ZRaftError):
    code = "process_prev_change"


class AlreadyPresent(ZRaftError):
    code = "already_present"


class Initialized(ZRaftError):
    code = "initialized"


class SessionExpired(ZRaftError):
    code = "session_expired"


class BackendError(ZRaftError):
    """The state machine (backend) failed: its apply or query raised (the message is
    ``backend_error: TypeName: its message``, the same on every replica), or it cannot be
    loaded on a node (``backend 'mod:Class' cannot be loaded on HOST:PORT: ...``)."""

    code = "backend_error"


class BackendNotAllowed(BackendError):
    """The node's ``[node] backends`` allowlist does not name the backend: nothing was
    imported or created."""

    code = "backend_not_allowed"


class BackendFailed(BackendError):
    """The peer's state machine is down: its backend could not be loaded, or its
    ``init``/``install_snapshot``/``snapshot`` raised. The peer stopped (the node and its
    other groups keep running); the message names the cause. Fix the backend, then restart
    the node."""

    code = "backend_failed"


class BadCommand(BackendError):
    """The backend refused the command or query (a malformed command, a key of a refused
    type, ...). Every replica refuses it the same way; nothing was changed."""

    code = "bad_command"


class BadRequest(ZRaftError):
    """The node refused the request's arguments (wrong type, size or shape) before acting
    on it; the message names the op and the field. Retrying the same request cannot help."""

    code = "bad_request"


class TooLarge(ZRaftError):
    """A write above the leader's ``max_entry_size``, refused before it entered the log; a
    request whose frame would pass the frame limit (refused by the client, never sent); or
    a reply that would (a read answering more than a frame holds). Nothing was applied."""

    code = "too_large"


class NoPeers(ZRaftError):
    code = "no_peers"


class NoCookie(ZRaftError, ValueError):
    """No cluster cookie was given or found. Give one with ``zraft.configure(cookie=...)`` or
    ``configure(cookie_file=...)``, a ``cookie=``/``cookie_file=`` argument, or the
    ``ZRAFT_COOKIE`` / ``ZRAFT_COOKIE_FILE`` environment variables. Also a ``ValueError``
    (what it was before it had a class of its own)."""

    code = "no_cookie"


class StorageFailed(ZRaftError):
    """A peer cannot write its log (disk full, read-only, I/O error); the message names the
    error. From every peer it tried: the cluster cannot write until space is freed (the
    peers retry by themselves). A write that was in flight may or may not have applied."""

    code = "storage_failed"


class TransferFailed(ZRaftError):
    """A leadership transfer did not happen: ``details["reason"]`` is ``timeout`` (the
    target did not take over within the bound, e.g. unreachable or far behind; the leader
    takes writes again), ``other_leader`` (another peer was elected), ``unknown_peer`` (the
    target is not a voting member), ``no_target`` (no other voter) or
    ``transfer_in_progress``. ``details["leader"]`` is the known leader."""

    code = "transfer_failed"


class NotAllowed(ZRaftError):
    """The node refused an op this connection may not run: an operator op (membership,
    create, leadership transfer, backups, fault injection) from a client that proved the
    node's client cookie, or fault injection on a node whose config leaves it off."""

    code = "not_allowed"


_BY_CODE: dict[str, type[ZRaftError]] = {
    cls.code: cls
    for cls in (
        Timeout, AllFailed, Unreachable, NotLeader, LeaderChanged, Loading, PeersChanged,
        NotStable, NewerExists, ProcessPrevChange, AlreadyPresent, Initialized,
        SessionExpired, BackendError, BackendNotAllowed, BackendFailed, BadCommand,
        BadRequest, TooLarge, NoPeers, StorageFailed, TransferFailed, NotAllowed,
    )
}


def error_from_code(code: str, message: str = "", **details: Any) -> ZRaftError:
    """Build the exception for a wire error code; unknown codes become a plain ZRaftError."""
    cls = _BY_CODE.get(code)
    if cls is None:
        err = ZRaftError(message or code, **details)
        err.code = code
        return err
    if cls is NotLeader:
        return NotLeader(message, leader=details.pop("leader", None), **details)
    return cls(message, **details)
