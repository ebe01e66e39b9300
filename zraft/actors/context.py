"""PeerContext: what a peer's actors need from their node, as one small object.

The node builds one per local peer. Keeping these services behind a single object keeps
the actors free of node wiring and lets tests give a peer an in-process context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from zraft.actors.peer_metrics import PeerMetrics


class Replier(Protocol):
    def __call__(self, conn: Any, req_id: int, status: str, payload: Any) -> None: ...


@dataclass
class PeerContext:
    peer_id: str
    peer_name: str
    backend_name: str
    tick_ms: int
    max_log_count: int
    open_storage: Any  # () -> DiskLogStorage
    core_config: Any  # () -> CoreConfig
    make_backend: Any  # () -> Backend
    snapshot_store: Any  # () -> SnapshotStore
    send_raft: Any  # (list[Message]) -> None
    reply: Replier
    sessions: Any  # SessionRegistry
    snapshots: Any  # SnapshotService
    events: Any  # EventLog
    report_failure: Any  # (name, reason) -> None
    peer_removed: Any  # (name) -> None
    sm_stats: dict[str, Any] = field(default_factory=dict)
    log_stats: dict[str, Any] = field(default_factory=dict)
    mutations: frozenset[str] = frozenset()  # test-only broken rules (never in use)
    snapshot_log_ratio: float = 1.0  # see StateMachine.should_snapshot
    # (name, one-line message) -> None: the peer stopped because its backend cannot run
    backend_failed: Any = field(default=lambda _name, _text: None)
    # figures for the metrics endpoint, one object for every restart of this peer
    metrics: PeerMetrics = field(default_factory=PeerMetrics)
    # where a backend that keeps files (``attach_directory``) keeps them; None: nowhere
    backend_dir: Any = None
    # the node's actor pools by name ("raft", "io"; pooled.py); None: the process-wide ones
    pools: Any = None
    # the node's DeadlineTimer (ticker.py): peers register their next due tick with it;
    # None: the peer ticks only when told a Tick (tests)
    timer: Any = None
