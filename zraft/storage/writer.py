"""LogWriter: group commit for a DiskLogStorage.

Rules:
- Writes are applied in the order given and made durable together: ONE fdatasync of the log
  (plus one atomic metadata write when term, vote or the snapshot point changed), however
  many batches were staged. Only then does a call return the durable last index, so the
  caller may acknowledge ("persisted up to N") exactly what is on disk.
- An actor drains its inbox, calls `stage` (or passes every op to `write_ops`) for each
  Ready, then `flush` once and acknowledges the highest Ready number it staged.
- Within one batch the Ready order is kept: hard state, snapshot, entries, compaction.
- Segment rolls fdatasync the full segment on the spot (so only the newest segment can have
  a torn tail); that is the only extra fsync a batch can cause.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from zraft.core.entries import Entry, HardState, SnapshotMeta
from zraft.storage.protocols import StagedLog


class WriteBatch(NamedTuple):
    """The storage part of one Ready."""

    hard_state: HardState | None = None
    snapshot: SnapshotMeta | None = None
    entries: Sequence[Entry] = ()
    compact_to: int = 0


class LogWriter:
    """Stages batches into a DiskLogStorage and makes them durable with one fsync."""

    def __init__(self, storage: StagedLog) -> None:
        self.storage = storage
        self.staged_batches = 0
        #: totals, for metrics and benchmarks
        self.batches_written = 0
        self.entries_written = 0
        self.flushes = 0
        self.flush_seconds = 0.0

    def stage(self, batch: WriteBatch) -> None:
        """Write one batch without fsync (not durable, not visible to readers yet)."""
        store = self.storage
        if batch.hard_state is not None:
            store.stage_hard_state(batch.hard_state)
        if batch.snapshot is not None:
            store.stage_snapshot(batch.snapshot)
        if batch.entries:
            store.stage_append(batch.entries)
            self.entries_written += len(batch.entries)
        if batch.compact_to:
            store.stage_compact(batch.compact_to)
        self.staged_batches += 1

    def stage_op(self, op: tuple[str, Any]) -> None:
        """One op: ("hard_state", HardState) | ("snapshot", SnapshotMeta) |
        ("append", list[Entry]) | ("compact", index) | ("cluster_id", str)."""
        kind, arg = op
        store = self.storage
        if kind == "hard_state":
            store.stage_hard_state(arg)
        elif kind == "snapshot":
            store.stage_snapshot(arg)
        elif kind == "append":
            store.stage_append(arg)
            self.entries_written += len(arg)
        elif kind == "compact":
            store.stage_compact(arg)
        elif kind == "cluster_id":
            store.stage_cluster_id(arg)
        else:
            raise ValueError(f"unknown log write op {kind!r}")

    def flush(self) -> int:
        """Make everything staged durable; returns the durable last index."""
        started = time.perf_counter()
        durable = self.storage.sync()
        self.flush_seconds += time.perf_counter() - started
        self.flushes += 1
        self.batches_written += self.staged_batches
        self.staged_batches = 0
        return durable

    def write_batch(self, hard_state: HardState | None = None,
                    snapshot: SnapshotMeta | None = None,
                    entries: Sequence[Entry] = (), compact_to: int = 0) -> int:
        """Write one Ready's storage part durably; returns the durable last index."""
        self.stage(WriteBatch(hard_state, snapshot, entries, compact_to))
        return self.flush()

    def write_batches(self, batches: Iterable[WriteBatch]) -> int:
        """Stage several batches, fsync once; returns the durable last index."""
        for batch in batches:
            self.stage(batch)
        return self.flush()

    def write_ops(self, ops: Iterable[tuple[str, Any]]) -> int:
        """Apply ops in order, fsync once; returns the durable last index."""
        for op in ops:
            self.stage_op(op)
        self.staged_batches += 1
        return self.flush()
