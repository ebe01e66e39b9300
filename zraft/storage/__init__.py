"""Durable storage: the segmented Raft log, its metadata and the snapshot store.

``DiskLogStorage`` is the core's LogStorage on disk; ``LogWriter`` group-commits Ready
batches into it; ``SnapshotStore`` keeps snapshot directories. See each module's rules.
"""

from zraft.storage.errors import (
    BackendMismatchError,
    CorruptLogError,
    CorruptMetaError,
    CorruptSnapshotError,
    DiskStorageError,
    LogCompacted,
    LogUnavailable,
)
from zraft.storage.meta import RaftMeta, list_peers, read_meta, write_meta
from zraft.storage.naming import peer_dir_name, peer_log_path, peer_snapshot_path
from zraft.storage.segments import DiskLogStorage
from zraft.storage.snapshots import PendingSnapshot, SnapshotInfo, SnapshotStore
from zraft.storage.writer import LogWriter, WriteBatch

__all__ = [
    "BackendMismatchError",
    "CorruptLogError",
    "CorruptMetaError",
    "CorruptSnapshotError",
    "DiskLogStorage",
    "DiskStorageError",
    "LogCompacted",
    "LogUnavailable",
    "LogWriter",
    "PendingSnapshot",
    "RaftMeta",
    "SnapshotInfo",
    "SnapshotStore",
    "WriteBatch",
    "list_peers",
    "peer_dir_name",
    "peer_log_path",
    "peer_snapshot_path",
    "read_meta",
    "write_meta",
]
