"""zraft's replicated state machine layer (pure: no threads, no clocks).

- ``backend``: the Backend protocol (zraft_lib's zraft_backend) and its result types.
- ``machine``: StateMachine, applying committed entries to backend + sessions + watches.
- ``sessions``: the replicated session table (exactly-once writes, expiry by entry time).
- ``watches``: the leader-local one-shot watch registry.
- ``commands``: the command arrays carried by DATA entries, with encoders.
- ``registry``: load a backend by name behind an allowlist.
- ``snapshot``: the state machine's part of a snapshot directory.
- ``simple``: SimpleBackend, a Backend whose state is one msgpack value (docs/backends.md).
"""

from zraft.fsm.backend import (
    ApplyResult,
    Backend,
    BadCommand,
    QueryResult,
    SnapshotCorrupted,
    SnapshotJob,
)
from zraft.fsm.codec import NOT_FOUND
from zraft.fsm.machine import ApplyBatch, QueryReply, Reply, SessionEvent, StateMachine
from zraft.fsm.registry import BackendNotAllowed, load_backend
from zraft.fsm.simple import SimpleBackend
from zraft.fsm.snapshot import SnapshotImage
from zraft.fsm.watches import DATA_CHANGED, LEADER_CHANGED, WatchTrigger

__all__ = [
    "DATA_CHANGED",
    "LEADER_CHANGED",
    "NOT_FOUND",
    "ApplyBatch",
    "ApplyResult",
    "Backend",
    "BackendNotAllowed",
    "BadCommand",
    "QueryReply",
    "QueryResult",
    "Reply",
    "SessionEvent",
    "SimpleBackend",
    "SnapshotCorrupted",
    "SnapshotImage",
    "SnapshotJob",
    "StateMachine",
    "WatchTrigger",
    "load_backend",
]
