"""RaftCore: the whole Raft state machine of one peer, with no I/O.

Theory of operation: inputs are ``tick()``, ``step(msg)`` and the client calls
(``propose``, ``read``, ``change_config``, ...). Their effects accumulate and leave through
``ready()`` as one numbered ``Ready`` (see ready.py for the driver's obligations). The
leader defers sending appends to ``ready()`` so that every proposal made since the last
Ready goes out in one batch per follower.

Rules kept here (role-specific rules live in ``zraft.core.roles``):
- Terms only grow; a higher term in an AppendEntries/InstallSnapshot makes us follow its
  sender; a higher term in a reply (not a granted pre-vote reply) makes us a follower.
- A lower-term AppendEntries/InstallSnapshot is answered with our term, so a stale leader
  learns it has been replaced.
- Election timeouts are drawn from the injected rng in [1.5, 2.5) x election_ticks and
  re-drawn on every reset. A blank or removed node never campaigns; one missing from its
  latest config campaigns only while that config is uncommitted (see ``promotable``).
- ``hard_state`` changes are handed out before any persisted message depending on them.
- Committed entries are handed out once, in order, up to min(commit, durable last index).
- A peer whose log was damaged (``HardState.recovering``) neither votes nor campaigns until
  it holds a durable entry of a later term than ``recovering`` (docs/internals.md,
  "Protocol-aware recovery"); its acknowledgements count as usual, being true.
- An AppendEntries or InstallSnapshot of our term from a second leader, or while we lead,
  is refused with a ``SafetyAlarm`` event (counted in ``status()``), never a crash; so is,
  by a peer that has a cluster id, any message without that id. A peer without one (made
  by ``create_peer`` without an id, or before clusters had one) takes the id of the first
  leader that sends it an append or a snapshot (``ClusterAdopted``).
- Quiescence (roles/quiesce.py): a quiesced core ignores ticks; any input that is not a
  no-op for an idle group wakes it first.
- ``bootstrap`` campaigns at once: the sole voter of its new group leads as soon as its
  vote is durable, without waiting an election timeout.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the rng is injected; the core never draws from the global one
    import random

from zraft.core.config import CoreConfig
from zraft.core.entries import CONFIG, ClusterConfig, Entry, HardState, SnapshotMeta
from zraft.core.errors import CoreError
from zraft.core.log import NO_LIMIT, RaftLog
from zraft.core.membership import STAGING, PendingChange
from zraft.core.messages import (
    AppendEntries,
    AppendReply,
    ClusterAdopted,
    Healed,
    InstallSnapshot,
    Quiesce,
    Removed,
    RoleChanged,
    SafetyAlarm,
    TimeoutNow,
    VoteReply,
    VoteRequest,
)
from zraft.core.progress import REPLICATE, Progress
from zraft.core.ready import Ready
from zraft.core.roles import CANDIDATE, FOLLOWER, LEADER, PRECANDIDATE
from zraft.core.roles.election import ElectionRole
from zraft.core.roles.follower import FollowerRole
from zraft.core.roles.leader import LeaderRole
from zraft.core.roles.quiesce import QuiesceRole
from zraft.core.roles.transfer import PendingTransfer, TransferRole
from zraft.core.storage import LogStorage

QUIESCED_TICKS = 1 << 30  # ticks_to_next_event of a quiesced core: no tick is ever due


class RaftCore(ElectionRole, FollowerRole, LeaderRole, TransferRole, QuiesceRole):
    """One Raft peer's rules. Not thread-safe: one driver calls it."""

    _HANDLERS: dict[str, dict[type, Any]]  # role -> message type -> handler (set below)

    def __init__(
        self, peer_id: str, storage: LogStorage, config: CoreConfig, rng: random.Random
    ) -> None:
        self.id = peer_id
        self.cfg = config.validate()
        self.rng = rng
        self.mutations = config.mutations
        hs, snap = storage.initial_state()
        self.log = RaftLog(storage, snap)
        self.term = hs.term
        self.vote = hs.vote
        self.cluster = config.cluster_id
        self.recovering = hs.recovering
        self._heal_at = 0  # recovering: healed once the log is durable through here
        self.safety_alarms = 0
        self.role = FOLLOWER
        self.leader: str | None = None
        self.commit = snap.index
        self.applied = snap.index  # last index handed out in Ready.committed
        self.epoch = 1
        self.removed = False
        self._removed_checked = -1  # config index last examined by _check_removed
        self._removed_reported = False
        # timers
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.timeout = 0
        self._reset_election_timer()
        # quiescence (roles/quiesce.py): volatile, so a restarted core starts awake
        self.quiesced = False
        self._idle_ticks = 0
        # peer -> the term in which it was reported unreachable (no quiescing under it then)
        self._suspects: dict[str, int] = {}
        # a follower heard its leader since it last quiesced (or woke by another's message):
        # a failure signal about that leader is then a false alarm (Raft's timer watches it)
        self._leader_live = False
        # candidate state
        self.votes: dict[str, bool] = {}
        self._self_vote_ready = 0  # -1: own vote awaits a Ready; >0: awaits its persist
        # leader state
        self.progress: dict[str, Progress] = {}
        self.term_start = 0
        self.change: PendingChange | None = None
        self.transfer: PendingTransfer | None = None  # see roles/transfer.py
        self.departing: dict[str, list[int]] = {}  # peer -> [ticks, ticks when acked]
        self._dirty: set[str] = set()
        self._bcast = False
        self._commit_notify = False
        self._read_wait: list[Any] = []
        self._read_new: list[Any] = []
        self._read_pending: deque[tuple[int, Any, int]] = deque()
        # Ready accumulators
        self._msgs: list[Any] = []
        self._pmsgs: list[Any] = []
        self._events: list[Any] = []
        self._reads: list[Any] = []
        self._snapshot_to_install = None
        self._compact_to = 0
        self._number = 0
        self._handed_hs = hs
        self._soft = (self.role, self.term, self.leader)
        self._unpersisted: deque[tuple[int, int, int]] = deque()

    # ------------------------------------------------------------------------------------
    # Inputs

    def tick(self) -> None:
        if self.quiesced:
            return
        if self.role == LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def ticks_to_next_event(self) -> int:
        """How many ``tick()`` calls until one may do more than count: the first k-1 only
        advance counters (no message, event, role or state change), so a driver may hold
        them back and deliver them in a burst when the k-th is due, or before any other
        input (then the core sees exactly what a punctual ticker would show it). Always
        >= 1; 1 when unsure. Any new per-tick behaviour must be reflected here."""
        if self.quiesced:  # ignores ticks: only an input (message, signal, call) wakes it
            return QUIESCED_TICKS
        if self.transfer is not None:
            return 1
        if self.role != LEADER:
            return max(1, self.timeout - self.election_elapsed)
        ch = self.change
        if self._commit_notify or self.departing or (ch is not None and ch.phase == STAGING):
            return 1
        cfg = self.cfg
        due = min(cfg.heartbeat_ticks - self.heartbeat_elapsed,
                  cfg.election_ticks - self.election_elapsed)
        request_timeout = cfg.effective_request_timeout
        for pr in self.progress.values():
            if pr.inflight and pr.state == REPLICATE:  # a silent follower becomes a probe
                due = min(due, request_timeout - pr.silent_ticks)
        return max(1, due)

    def step(self, msg: Any) -> None:
        if msg.dst != self.id:
            return
        kind = type(msg)
        if msg.cluster != self.cluster:
            if not self.cluster and (kind is AppendEntries or kind is InstallSnapshot
                                     or kind is Quiesce) \
                    and msg.term >= self.term:
                # a peer created without an id joins the cluster of its first leader
                self.cluster = msg.cluster
                self._events.append(ClusterAdopted(msg.cluster))
            elif self.cluster:
                self._safety_alarm("foreign_cluster", msg,
                                   f"{type(msg).__name__} of cluster {msg.cluster[:40]!r}, "
                                   f"we are {self.cluster!r}")
                return
        if self.quiesced and self._wakes(msg):
            self._wake(heartbeat=True)
        if kind is VoteRequest:
            self._on_vote_request(msg)
            return
        if kind is VoteReply and msg.removed:
            self._on_removed_reply(msg)
            return
        if msg.term > self.term:
            if kind is AppendEntries or kind is InstallSnapshot or kind is Quiesce:
                self.become_follower(msg.term, msg.src)
            elif not (kind is VoteReply and msg.prevote and msg.granted):
                self.become_follower(msg.term, None)
        elif msg.term < self.term:
            if kind is AppendEntries or kind is InstallSnapshot or kind is Quiesce:
                self._pmsgs.append(
                    AppendReply(self.term, self.id, msg.src, False, 0, 0, 0, msg.epoch,
                                bool(self.recovering), self.cluster)
                )
            return
        handler = self._HANDLERS[self.role].get(kind)
        if handler is not None:
            handler(self, msg)

    def bootstrap(self, now_ms: int) -> None:
        """Blank, empty peer: CONFIG{old=[self]} at index 1, term 1."""
        if self.log.last_index() != 0 or not self.log.config()[1].is_blank or self.term > 1:
            raise CoreError("bootstrap needs a blank, empty peer")
        self.term = 1
        self.vote = None
        entry = Entry(1, 1, CONFIG, ClusterConfig.stable([self.id]), now_ms)
        self.log.append([entry])
        self._reset_election_timer()
        # the sole voter leads as soon as its vote is durable: creating a group does not
        # wait an election timeout (the vote's durability rule still applies)
        self._start_election()

    def campaign(self) -> None:
        """Start an election now (zraft_lib force_timeout); a no-op on a leader."""
        if self.role != LEADER:
            if self.quiesced:
                self._wake()
            self._start_election()

    def snapshot_taken(self, index: int) -> None:
        """A local snapshot covers up to ``index`` (an applied index): compact the log."""
        log = self.log
        if index <= log.snapshot.index:
            return
        if index > self.applied:
            raise CoreError(f"snapshot at {index} beyond applied index {self.applied}")
        config_index, config = log.config_at(index)
        meta = SnapshotMeta(index, log.term(index) or 0, config_index, config)
        log.compact(meta)
        self._compact_to = index

    def persisted(self, number: int) -> None:
        """Ready ``number`` and all earlier ones are durable."""
        pending = self._unpersisted
        while pending and pending[0][0] <= number:
            _, index, term = pending.popleft()
            if index:
                self.log.stable_to(index, term)
            if self.recovering and term > self.recovering:
                self._heal(term)
        if self._heal_at:
            self._maybe_heal_at()
        if 0 < self._self_vote_ready <= number:
            self._count_own_vote()
        if self.role == LEADER:
            self._maybe_commit()

    # ------------------------------------------------------------------------------------
    # Ready

    def has_ready(self) -> bool:
        if (
            self._msgs
            or self._pmsgs
            or self._events
            or self._reads
            or self._snapshot_to_install is not None
            or self._compact_to
        ):
            return True
        if self.role == LEADER and (
            self._bcast or self._dirty or self._read_new
        ):
            return True
        if (self.role, self.term, self.leader) != self._soft:
            return True
        hs = self._handed_hs
        if hs.term != self.term or hs.vote != self.vote or hs.recovering != self.recovering:
            return True
        if self.log.has_unhanded():
            return True
        return self._apply_limit() > self.applied

    def _apply_limit(self) -> int:
        """Committed entries are handed out only once durable here too, unless the test-only
        mutation apply_before_durable is on."""
        if "apply_before_durable" in self.mutations:
            return self.commit
        return min(self.commit, self.log.stable_last())

    def ready(self) -> Ready:
        if self.role == LEADER:
            self._leader_flush()
        self._number += 1
        rd = Ready(self._number)
        hs = self._handed_hs
        if hs.term != self.term or hs.vote != self.vote or hs.recovering != self.recovering:
            hs = self._handed_hs = HardState(self.term, self.vote, self.recovering)
            rd.hard_state = hs
        if self._self_vote_ready < 0:
            self._self_vote_ready = rd.number  # this Ready makes our own vote durable
        log = self.log
        if self._snapshot_to_install is not None:
            rd.snapshot = self._snapshot_to_install
            self._snapshot_to_install = None
        entries = log.take_unhanded()
        if entries:
            rd.entries = entries
            last = entries[-1]
            self._unpersisted.append((self._number, last.index, last.term))
        elif rd.snapshot is not None:
            # no entry to mark stable, but the snapshot's term is durable with this Ready
            self._unpersisted.append((self._number, 0, rd.snapshot.term))
        rd.compact_to = self._compact_to
        self._compact_to = 0
        rd.messages, self._msgs = self._msgs, []
        rd.persisted_messages, self._pmsgs = self._pmsgs, []
        hi = self._apply_limit()
        if hi > self.applied:
            rd.committed = log.slice(self.applied + 1, hi + 1, NO_LIMIT)
            self.applied = hi
        rd.reads, self._reads = self._reads, []
        soft = (self.role, self.term, self.leader)
        if soft != self._soft:
            self._soft = soft
            self._events.insert(0, RoleChanged(*soft))
        rd.events, self._events = self._events, []
        return rd

    def advance(self, ready: Ready) -> None:
        """The driver took ``ready``; the core hands out everything once, so this only
        checks the order."""
        if ready.number > self._number:
            raise CoreError(f"advance({ready.number}) of a Ready never handed out")

    # ------------------------------------------------------------------------------------
    # Role transitions

    def _reset_election_timer(self) -> None:
        self.election_elapsed = 0
        et = self.cfg.election_ticks
        self.timeout = self.cfg.min_election_timeout + self.rng.randrange(et)

    def promotable(self) -> bool:
        """May this peer campaign? Not when removed or blank. A peer that is not a voter in
        its latest configuration campaigns only while that configuration is uncommitted:
        it may still be needed to commit it (Raft thesis 4.2.2, e.g. a leader removing
        itself that lost leadership before C_new committed); its own vote never counts."""
        if self.removed:
            return False
        cidx, cfg = self.log.config()
        if cfg.is_blank:
            return False
        if self.recovering and "vote_while_recovering" not in self.mutations:
            # Not even as the sole voter of the config it still has: the damage may have
            # taken the entries that grew the cluster (the simulator found that: a damaged
            # node, left with its bootstrap config, elected itself without committed
            # entries). Only an operator can decide a recovering node goes on alone.
            return False
        return cfg.has_voter(self.id) or cidx > self.commit

    def become_follower(self, term: int, leader: str | None) -> None:
        if term > self.term:
            self.term = term
            self.vote = None
        was_leader = self.role == LEADER
        self.quiesced = False
        self._idle_ticks = 0
        self._leader_live = False
        self.role = FOLLOWER
        self.leader = leader
        self.votes = {}
        self._reset_election_timer()
        if was_leader:
            self._abandon_leadership()
        if self.transfer is not None:
            if was_leader:  # most likely to the target: give its appends time to arrive
                self.transfer.ticks_left = max(self.transfer.ticks_left, self.cfg.election_ticks)
            self._transfer_watch()

    def _tick_election(self) -> None:
        if self.transfer is not None:
            self._tick_transfer()
        self.election_elapsed += 1
        if self.election_elapsed >= self.timeout:
            self._reset_election_timer()
            self.leader = None
            if self.promotable():
                self._start_election()
            elif self.role != FOLLOWER:
                self.become_follower(self.term, None)

    def _check_removed(self, known_voter: bool = False) -> None:
        """Emit Removed once when a committed stable config excludes us after a config that
        included us (a member that was removed, not a learner catching up), unless a later
        config in our log adds us back. ``known_voter``: we were a voter in a config the log
        no longer shows (an installed snapshot hid the entries that removed us)."""
        if self._removed_reported:
            return
        log = self.log
        cidx, ccfg = log.config_at(self.commit)
        if cidx == self._removed_checked:
            return
        if ccfg.is_blank or ccfg.is_joint or self.id in ccfg.old:
            self._removed_checked = cidx
            return
        if self._is_voter_in(log.config()[1]):
            return  # a re-add is in our log: look again when the commit moves
        self._removed_checked = cidx
        if known_voter or log.config_at(cidx - 1)[1].has_voter(self.id):
            self._mark_removed(cidx)

    def _heal(self, term: int) -> None:
        """A durable entry (or snapshot) of ``term`` > ``recovering`` is ours: it came from
        a leader elected without our vote, which holds every entry committed in the terms
        we may have acknowledged lost ones in. Our log is trustworthy for votes again."""
        self.recovering = 0
        self._heal_at = 0
        self._events.append(Healed(term))

    def _maybe_heal_at(self) -> None:
        """The leader said our log holds all we may have lost once it matches its own
        through ``_heal_at`` (AppendEntries.heal_to): heal when that much is durable."""
        if not self.recovering:
            self._heal_at = 0
        elif self.log.stable_last() >= self._heal_at:
            self._heal_at = 0
            self._heal(self.term)

    def _safety_alarm(self, kind: str, msg: Any, detail: str) -> None:
        self.safety_alarms += 1
        self._events.append(SafetyAlarm(kind, msg.src, msg.term, detail))

    def _is_voter_in(self, cfg: ClusterConfig) -> bool:
        return not cfg.is_blank and cfg.has_voter(self.id)

    def _mark_removed(self, config_index: int) -> None:
        if self._removed_reported:
            return
        self.removed = True
        self._removed_reported = True
        self._events.append(Removed(config_index))

    # ------------------------------------------------------------------------------------
    # Introspection

    def status(self) -> dict:
        log = self.log
        cidx, cfg = log.config()
        snap = log.snapshot
        return {
            "id": self.id,
            "role": self.role,
            "term": self.term,
            "vote": self.vote,
            "leader": self.leader,
            "commit": self.commit,
            "applied": self.applied,
            "first_index": log.first_index(),
            "last_index": log.last_index(),
            "last_term": log.last_term(),
            "stable_last": log.stable_last(),
            "snapshot_index": snap.index,
            "snapshot_term": snap.term,
            "config_index": cidx,
            "config": {"old": list(cfg.old), "new": list(cfg.new)},
            "config_state": cfg.state,
            "epoch": self.epoch,
            "removed": self.removed,
            "cluster_id": self.cluster,
            "recovering": self.recovering,
            "safety_alarms": self.safety_alarms,
            "pending_reads": len(self._read_pending) + len(self._read_new)
            + len(self._read_wait),
            "config_change": self.change.phase if self.change else None,
            "transfer": self.transfer.target if self.transfer else None,
            "quiesced": self.quiesced,
            "progress": {p: pr.as_dict() for p, pr in self.progress.items()},
        }

    def _leader_conflict(self, msg: Any) -> None:
        """SPEC 11 item 9: a second leader of our term (zraft_lib crashed here). Refused."""
        self._safety_alarm("second_leader", msg,
                           f"leader of term {self.term} got {type(msg).__name__}")


RaftCore._HANDLERS = {
    FOLLOWER: {
        AppendEntries: RaftCore._on_append,
        InstallSnapshot: RaftCore._on_install_snapshot,
        TimeoutNow: RaftCore._on_timeout_now,
        Quiesce: RaftCore._on_quiesce,
    },
    PRECANDIDATE: {
        AppendEntries: RaftCore._on_append,
        InstallSnapshot: RaftCore._on_install_snapshot,
        VoteReply: RaftCore._on_vote_reply,
        TimeoutNow: RaftCore._on_timeout_now,
        Quiesce: RaftCore._on_quiesce,
    },
    CANDIDATE: {
        AppendEntries: RaftCore._on_append,
        Quiesce: RaftCore._on_quiesce,
        InstallSnapshot: RaftCore._on_install_snapshot,
        VoteReply: RaftCore._on_vote_reply,
    },
    LEADER: {
        AppendReply: RaftCore._on_append_reply,
        AppendEntries: RaftCore._leader_conflict,
        InstallSnapshot: RaftCore._leader_conflict,
        Quiesce: RaftCore._leader_conflict,
    },
}

__all__ = ["CANDIDATE", "FOLLOWER", "LEADER", "PRECANDIDATE", "RaftCore"]
