"""The pure Raft core: no sockets, threads, files, clocks or global randomness.

Everything under ``zraft.core`` imports only the standard library's pure modules and
``zraft.core`` itself (a test enforces this). Time arrives as ticks, randomness from an
injected ``random.Random``, wall-clock stamps as plain integers.
"""

from zraft.core.config import CoreConfig
from zraft.core.entries import (
    BLANK_CONFIG,
    CONFIG,
    DATA,
    NOOP,
    ClusterConfig,
    Entry,
    EntryType,
    HardState,
    SnapshotMeta,
)
from zraft.core.errors import ConfigError, CoreError, InvariantViolation, NotLeader
from zraft.core.raft import RaftCore
from zraft.core.ready import Ready
from zraft.core.storage import LogStorage, MemoryStorage

__all__ = [
    "BLANK_CONFIG",
    "CONFIG",
    "DATA",
    "NOOP",
    "ClusterConfig",
    "ConfigError",
    "CoreConfig",
    "CoreError",
    "Entry",
    "EntryType",
    "HardState",
    "InvariantViolation",
    "LogStorage",
    "MemoryStorage",
    "NotLeader",
    "RaftCore",
    "Ready",
    "SnapshotMeta",
]
