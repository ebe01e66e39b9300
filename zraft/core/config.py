"""Static settings of one ``RaftCore``.

Rules: all times are in ticks; ``validate()`` rejects values that would make the protocol
unsafe or livelock (e.g. a heartbeat interval not shorter than the election timeout).
``mutations`` names deliberately broken rules for simulator sweeps; production code leaves
it empty and every mutation is one or two guarded lines in the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zraft.core.errors import ConfigError

KNOWN_MUTATIONS = frozenset(
    {
        "commit_before_durable",  # leader counts its own entries before they are persisted
        "vote_stale_log",  # grant votes to candidates whose log is behind
        "read_without_quorum",  # release reads without the heartbeat round
        "truncate_matching",  # follower drops a matching suffix on a stale append
        "forget_vote",  # vote not remembered: grants twice in one term
        "apply_before_durable",  # hand out committed entries before they are on disk here
        "vote_while_recovering",  # a peer that lost acknowledged entries votes anyway
        "heal_early",  # a recovering peer is whole again on the leader's word, caught up or not
        "transfer_force_vote",  # a transfer election's votes skip the log check
        # TimeoutNow sent before the target holds the leader's log, and acted on anyway
        "transfer_without_catchup",
        # quiescence: a follower ignores the failure signals about its leader's node
        "quiesce_ignore_failure",
    }
)


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Timing and flow-control knobs (defaults follow zraft_lib where it has one)."""

    election_ticks: int = 10
    heartbeat_ticks: int = 2
    max_inflight: int = 64
    max_batch_bytes: int = 1 << 20
    prevote: bool = True
    check_quorum: bool = True
    mutations: frozenset[str] = field(default_factory=frozenset)
    # a follower left in SNAPSHOT state this long is probed again (which emits a fresh
    # SnapshotNeeded): covers a follower that crashed before making the snapshot durable.
    # Drivers ignore SnapshotNeeded for a peer whose transfer is still running.
    snapshot_retry_ticks: int = 300
    # zraft_lib's request_timeout: a follower that has appends in flight and has not
    # answered anything for this long is probed again instead of pipelined to (0 means
    # 2 x election_ticks, zraft_lib's default).
    request_timeout_ticks: int = 0
    # the cluster's identity (stored with the peer, stamped on every message); "" = none
    cluster_id: str = ""
    # quiescence (docs/internals.md): a leader idle this many ticks (everything committed
    # and on every follower) stops heartbeats and tells followers to stop their election
    # timers. 0 = never quiesce. Only safe with failure signals from the driver
    # (``peer_unreachable`` / ``peer_restarted``): without them a dead quiesced leader's
    # group would stay leaderless.
    quiesce_ticks: int = 0

    def validate(self) -> CoreConfig:
        if self.election_ticks < 1:
            raise ConfigError("election_ticks must be >= 1")
        if not 1 <= self.heartbeat_ticks < max(2, self.election_ticks):
            raise ConfigError("heartbeat_ticks must be >= 1 and below election_ticks")
        if self.max_inflight < 1:
            raise ConfigError("max_inflight must be >= 1")
        if self.snapshot_retry_ticks < 1:
            raise ConfigError("snapshot_retry_ticks must be >= 1")
        if self.request_timeout_ticks < 0:
            raise ConfigError("request_timeout_ticks must be >= 0")
        if self.quiesce_ticks < 0:
            raise ConfigError("quiesce_ticks must be >= 0")
        if self.max_batch_bytes < 1:
            raise ConfigError("max_batch_bytes must be >= 1")
        unknown = set(self.mutations) - KNOWN_MUTATIONS
        if unknown:
            raise ConfigError(f"unknown mutations: {sorted(unknown)}")
        return self

    @property
    def effective_request_timeout(self) -> int:
        return self.request_timeout_ticks or 2 * self.election_ticks

    @property
    def min_election_timeout(self) -> int:
        """Lower bound of the randomised election timeout (1.5 x election_ticks)."""
        return max(1, round(1.5 * self.election_ticks))
