"""Protocols of the storage layer.

Rules: the read side is the core's ``LogStorage`` (re-exported here). ``StagedLog`` is the
write side a ``LogWriter`` drives: ``stage_*`` calls write without fsync and are applied in
order; ``sync`` makes all of them durable at once and returns the durable last index.
``DiskLogStorage`` implements both; ``zraft.core.storage.MemoryStorage`` is the in-memory
twin of the read side plus the plain (durable-on-return) write methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from zraft.core.entries import Entry, HardState, SnapshotMeta
from zraft.core.storage import LogStorage


class StagedLog(Protocol):
    def stage_hard_state(self, hs: HardState) -> None: ...

    def stage_append(self, entries: Sequence[Entry]) -> None: ...

    def stage_snapshot(self, meta: SnapshotMeta) -> None: ...

    def stage_compact(self, index: int) -> None: ...

    def stage_cluster_id(self, cluster_id: str) -> None: ...

    def sync(self) -> int: ...


__all__ = ["LogStorage", "StagedLog"]
