"""Messages between Raft peers, and the events a core reports to its driver.

Every message is a NamedTuple whose first three fields are ``term``, ``src`` and ``dst``
(peer ids) and which has a ``cluster`` field: the identity of the cluster it belongs to
(generated at create, stored with every peer); a core refuses a message of another
cluster. ``cluster`` is the last field except in VoteRequest, whose ``transfer`` flag was
added after it (the wire omits it when false, so older nodes still read the message).
The transport encodes a message as ``[type_code, *fields]`` (see ``MESSAGE_CODES``);
names follow zraft_lib's records (``vote_request``, ...).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from zraft.core.entries import Entry, SnapshotMeta


class VoteRequest(NamedTuple):
    """RequestVote, or a PreVote probe when ``prevote`` (the sender's term is not bumped).
    ``transfer``: the election was started by a TimeoutNow from the leader (leadership
    transfer): voters answer it even while they believe a leader is alive (stickiness /
    check-quorum lease do not apply to it); the log check applies as always."""

    term: int
    src: str
    dst: str
    last_index: int
    last_term: int
    prevote: bool = False
    cluster: str = ""
    transfer: bool = False


class VoteReply(NamedTuple):
    """Answer to a VoteRequest. ``removed`` tells a candidate that a committed configuration
    no longer contains it and that its log predates that configuration: it must stop."""

    term: int
    src: str
    dst: str
    granted: bool
    prevote: bool = False
    removed: bool = False
    cluster: str = ""


class AppendEntries(NamedTuple):
    """AppendEntries; an empty ``entries`` list is a heartbeat. ``epoch`` is zraft_lib's read
    epoch: followers echo it so the leader can confirm leadership for pending reads.
    ``heal_to`` (0 unless the follower said it is recovering): once the follower's log
    matches ours through this index it holds everything it may have lost (see
    docs/internals.md, "Protocol-aware recovery")."""

    term: int
    src: str
    dst: str
    prev_index: int
    prev_term: int
    entries: list[Entry]
    commit: int
    epoch: int
    heal_to: int = 0
    cluster: str = ""


class AppendReply(NamedTuple):
    """Answer to AppendEntries or InstallSnapshot.

    On success ``index`` is the highest index known to match the leader's log
    (``prev_index + len(entries)``, or the snapshot index). On a reject ``index`` is the
    rejected ``prev_index`` and ``hint_index``/``hint_term`` let the leader skip back fast:
    the follower's last index on a gap, else the last index whose term is at most
    ``hint_term`` (etcd's findConflictByTerm). ``epoch`` echoes the request's epoch.
    ``recovering``: the follower found its log damaged and may have lost entries it had
    acknowledged; the leader then stops trusting what it had counted for it.
    """

    term: int
    src: str
    dst: str
    success: bool
    index: int
    hint_index: int
    hint_term: int
    epoch: int
    recovering: bool = False
    cluster: str = ""


class InstallSnapshot(NamedTuple):
    """A snapshot has arrived: the node delivers this to the follower's core once the snapshot
    files sent by leader ``src`` (in ``term``) are on disk and verified. The follower answers
    with an AppendReply whose ``index`` is ``meta.index``."""

    term: int
    src: str
    dst: str
    meta: SnapshotMeta
    epoch: int
    cluster: str = ""


class TimeoutNow(NamedTuple):
    """Leadership transfer (Raft thesis 3.10): the leader tells ``dst``, whose log it made
    match its own through ``last_index`` (of ``last_term``), to start an election now. The
    target acts on it only if its log holds that entry (a stale or replayed TimeoutNow to a
    peer that lacks it is ignored)."""

    term: int
    src: str
    dst: str
    last_index: int
    last_term: int
    cluster: str = ""


class Quiesce(NamedTuple):
    """An idle leader's last heartbeat (see docs/internals.md, "Quiescence"): our logs match
    through ``last_index`` (of ``last_term``), all of it committed (``commit``); stop your
    election timer until any other message, or a failure signal about the leader's node.
    The follower handles it as a heartbeat first (it answers with an AppendReply)."""

    term: int
    src: str
    dst: str
    last_index: int
    last_term: int
    commit: int
    epoch: int
    cluster: str = ""


Message = (VoteRequest | VoteReply | AppendEntries | AppendReply | InstallSnapshot
           | TimeoutNow | Quiesce)

# Wire type codes (stable: never renumber; add new codes at the end).
MESSAGE_CODES: dict[type, int] = {
    VoteRequest: 1,
    VoteReply: 2,
    AppendEntries: 3,
    AppendReply: 4,
    InstallSnapshot: 5,
    TimeoutNow: 6,
    Quiesce: 7,
}


# ---------------------------------------------------------------------------------------
# Events: things the core tells its driver in Ready.events. Plain data, no behaviour.


class RoleChanged(NamedTuple):
    """The role, term or known leader changed. ``role`` is one of ``follower``,
    ``precandidate``, ``candidate``, ``leader``."""

    role: str
    term: int
    leader: str | None


class ConfigChangeResult(NamedTuple):
    """Outcome of ``change_config``: ``error`` is ``None`` on success, else one of
    ``not_stable``, ``newer_exists``, ``process_prev_change``, ``leader_changed``,
    ``timeout``, ``not_leader``, ``retry`` (a leadership transfer is under way: ask the
    next leader). ``leader`` is the known leader (for redirects)."""

    ctx: Any
    error: str | None
    config_index: int
    config: Any
    leader: str | None


class ReadState(NamedTuple):
    """A read confirmed by a quorum: answer it once the state machine applied ``index``."""

    ctx: Any
    index: int


class ReadFailed(NamedTuple):
    """A read that cannot be answered here: ``error`` is ``not_leader`` or ``leader_changed``;
    ``leader`` is the known leader, if any."""

    ctx: Any
    error: str
    leader: str | None


class SnapshotNeeded(NamedTuple):
    """Leader: follower ``peer`` is behind the first retained log index; send it the local
    snapshot described by ``meta`` out of band, then report ``snapshot_failed`` on failure."""

    peer: str
    meta: SnapshotMeta


class Removed(NamedTuple):
    """This peer is not part of a committed configuration any more: stop it for good."""

    config_index: int


class SafetyAlarm(NamedTuple):
    """A message that cannot happen in a correct cluster was refused (SPEC section 11 item
    9): an AppendEntries or InstallSnapshot of our own term from a second leader, or one
    received while we lead that term. ``src`` sent it. Drivers log it loudly and count it;
    the simulator treats it as an invariant violation."""

    kind: str
    src: str
    term: int
    detail: str


class ClusterAdopted(NamedTuple):
    """This peer had no cluster id (``create_peer`` without one) and took ``cluster_id``
    from the first leader that sent it entries; the driver records it with the peer."""

    cluster_id: str


class Healed(NamedTuple):
    """A recovering peer now holds a durable entry of term ``term``, newer than any term in
    which it could have acknowledged what it lost: it votes again."""

    term: int


class TransferResult(NamedTuple):
    """Outcome of ``transfer_leader``: ``error`` is ``None`` once ``leader`` (the target)
    leads, else one of ``not_leader``, ``transfer_in_progress``, ``unknown_peer``
    (the target is not a voter), ``no_target`` (no other voter), ``timeout`` (the target
    did not take over within the bound: the old leader resumed, or nobody leads yet) or
    ``other_leader`` (another peer than the target was elected). ``leader``: the known
    leader, if any."""

    ctx: Any
    error: str | None
    leader: str | None
    target: str | None
