"""DiskLogStorage: the segmented Raft log of one peer, with its metadata.

Layout: ``<log_dir>/<peerdir>/raft.meta`` (see `meta`) and ``<log_dir>/<peerdir>/log/*.seg``
(see `segment_file`). Rules:

- Reads (`initial_state`, `first_index`, `last_index`, `term`, `entries`) see DURABLE data
  only and are safe from any thread: one lock guards the in-memory indexes; fsyncs run
  outside it. Out-of-range reads raise `LogCompacted` / `LogUnavailable`.
- Writes come from one writer thread. ``stage_*`` methods write without fsync and
  `sync` makes everything staged durable with ONE group commit of the node's
  `SyncService` (shared by all its groups: an fdatasync, or one syncfs for a batch of
  many groups; see sync_service.py) (plus one atomic
  metadata write if term, vote or snapshot changed), then publishes the new last index.
  The plain ``set_hard_state`` / ``append`` / ``apply_snapshot`` / ``compact`` are
  stage + sync, for callers that want the simple contract.
- Shrinking operations publish at once: a truncation lowers the visible last index before
  touching files, so a reader never sees bytes being cut.
- Rolling: a new segment starts when the current one holds at least one record and the
  next record would pass ``max_segment_size``; the full segment is fdatasynced first, so
  only the last segment can ever have a torn tail.
- Truncation from I deletes segments starting at or after I (newest first, then fsyncs the
  directory) and cuts the segment holding I at I's record, so recovery cannot resurrect
  truncated entries.
- Compaction (local snapshot or an installed snapshot that matches the log) records the new
  snapshot point in the metadata first and deletes whole segments below it afterwards; a
  straddling segment stays and its old records are ignored. An installed snapshot that
  does not match the log deletes every segment (newest first) and then writes the metadata.
- Recovery tells a write a crash cut short (never synced, so never acknowledged) from
  damage to synced bytes (protocol-aware recovery, docs/internals.md):
  - a last record that stops short of its declared length with only zeros after it is a
    torn write: cut off with a warning;
  - a complete last record failing its checksum, or non-zero bytes after the last good
    record that are not a cut-short record, is damage at the tail; so is the newest
    segment (named in the metadata before any record goes into it) missing or with a
    damaged header. The tail from the damage on is cut, and the peer is marked
    ``recovering`` (at its durable term) in the metadata before anything else happens: it
    may have lost entries it acknowledged, and the core keeps it from voting until a
    leader has repaired it. ``damage`` says what was found, for the node's log.
  - a bad record anywhere else, a bad record followed by valid ones, a CRC-valid record
    out of sequence or a missing segment before the newest raises `CorruptLogError` naming
    the file and offset, before anything is modified: the operator decides.
- Segment rolls create the new segment, then record it as ``newest_segment`` in the
  metadata, then write records into it; truncations and snapshot installs that delete
  segments record the new newest one.
- Limit: a power loss that persists later sectors of an unsynced write but not earlier
  ones looks like a bad record followed by valid ones, so it is refused too (an operator
  can cut the file at the reported offset). A kill -9 cannot cause it (the page cache
  keeps each write whole).
- A failed write or fsync poisons the object: later writes raise until it is reopened.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import threading
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from zraft.core.entries import CONFIG, ClusterConfig, Entry, HardState, SnapshotMeta
from zraft.storage.errors import (
    BackendMismatchError,
    CorruptLogError,
    CorruptMetaError,
    DiskStorageError,
    LogCompacted,
    LogUnavailable,
)
from zraft.storage.fd_cache import SEGMENT_FILES, FdCache
from zraft.storage.framing import SEGMENT_HEADER_SIZE, encode_entries
from zraft.storage.log_index import ConfigHistory, EntryCache, TermIndex
from zraft.storage.meta import RaftMeta, discard_temp_meta, read_meta, write_meta
from zraft.storage.naming import peer_log_path
from zraft.storage.segment_file import (
    Segment,
    SegmentScan,
    parse_segment_name,
    scan_segment,
    segment_name,
)
from zraft.storage.sync_service import SHARED_SYNC, SyncService

log = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])


def _poison_on_error(method: _F) -> _F:
    """A failed write or fsync leaves memory and disk out of step (and a failed fsync must
    never be retried): refuse every later write until the log is reopened (recovered)."""

    @functools.wraps(method)
    def guarded(self: DiskLogStorage, *args: Any, **kwargs: Any) -> Any:
        if self.failed is not None:
            raise DiskStorageError(f"log {self.log_path} failed earlier ({self.failed}); "
                                   "reopen it to recover")
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            self.failed = exc
            raise

    return guarded  # type: ignore[return-value]

DEFAULT_MAX_SEGMENT_SIZE = 10 * 1024 * 1024
DEFAULT_CACHE_ENTRIES = 4096
# Recent durable entries kept in memory (replication and apply read them; older ones come
# from the segment files). 4 MiB, not 16: with 4 KiB values the cache was up to 16 MB of a
# node's RSS (W5: 99 -> 85 MB right after the run) for no measured throughput.
DEFAULT_CACHE_BYTES = 4 * 1024 * 1024
READ_CHUNK_BYTES = 1 << 20


class DiskLogStorage:
    """The core's LogStorage over segment files; see the module docstring for the rules."""

    def __init__(self, peer_path: Path, meta: RaftMeta, max_segment_size: int,
                 cache_entries: int, cache_bytes: int, sync_service: SyncService | None = None,
                 files: FdCache | None = None) -> None:
        self.peer_path = peer_path
        self._sync_service = sync_service if sync_service is not None else SHARED_SYNC
        self._files = files if files is not None else SEGMENT_FILES
        self.log_path = peer_path / "log"
        self.max_segment_size = max_segment_size
        self._lock = threading.Lock()
        self._meta = meta
        self._meta_dirty = False
        self._segments: list[Segment] = []
        self._doomed: list[Segment] = []
        snap = meta.snapshot
        self._terms = TermIndex(snap.index, snap.term)
        self._configs = ConfigHistory()
        self._cache = EntryCache(cache_entries, cache_bytes)
        self._cache.clear(snap.index + 1)
        self._last = snap.index
        self._durable_last = snap.index
        #: counters for tests and metrics
        self.log_syncs = 0
        self.meta_writes = 0
        self.disk_reads = 0
        #: the OSError that broke a write; later writes refuse until reopened
        self.failed: OSError | None = None
        #: what recovery found damaged at the tail (empty: the log was whole)
        self.damage: list[str] = []

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, log_dir: str | os.PathLike[str], peer_id: str,
             max_segment_size: int = DEFAULT_MAX_SEGMENT_SIZE, *,
             backend: str | None = None,
             cache_entries: int = DEFAULT_CACHE_ENTRIES,
             cache_bytes: int = DEFAULT_CACHE_BYTES,
             discard_after: int | None = None, cluster_id: str = "",
             sync_service: SyncService | None = None,
             files: FdCache | None = None) -> DiskLogStorage:
        """Open (creating if new) and recover the log of `peer_id` under `log_dir`.
        ``discard_after``: reopening after a failed write or fsync, cut every entry after
        this index, the last one known durable (a failed fsync may leave pages in the
        cache that look written but never reached the disk). ``cluster_id`` is recorded
        when the peer is created (an existing peer keeps its own). ``sync_service``: the
        node's group commit (default: one per process); ``files``: the cache of open
        segment files (default: one per process)."""
        peer_path = peer_log_path(log_dir, peer_id)
        log_path = peer_path / "log"
        syncer = sync_service if sync_service is not None else SHARED_SYNC
        if not log_path.is_dir():
            log_path.mkdir(parents=True, exist_ok=True)
            syncer.sync_dir(peer_path)
            syncer.sync_dir(peer_path.parent)
        discard_temp_meta(peer_path)
        seg_files = _list_segments(log_path)
        try:
            meta = read_meta(peer_path)
        except FileNotFoundError:
            if seg_files:
                raise CorruptMetaError(str(peer_path / "raft.meta"),
                                       "missing although log segments exist") from None
            meta = RaftMeta(peer_id=peer_id, backend=backend, cluster_id=cluster_id)
            write_meta(peer_path, meta, syncer)
        if meta.peer_id != peer_id:
            raise DiskStorageError(f"{peer_path} belongs to {meta.peer_id!r}, not {peer_id!r}")
        if backend is not None and meta.backend not in (None, backend):
            raise BackendMismatchError(
                f"peer {peer_id} was created with backend {meta.backend!r}, not {backend!r}")
        if backend is not None and meta.backend is None:
            meta = replace(meta, backend=backend)
            write_meta(peer_path, meta, syncer)
        store = cls(peer_path, meta, max_segment_size, cache_entries, cache_bytes,
                    sync_service, files)
        store._recover(seg_files)
        if discard_after is not None and store.last_index() > discard_after:
            cut = max(discard_after, store.meta.snapshot.index) + 1
            log.warning("log %s: cutting entries from %d on (written after the last "
                        "durable index before a failed write)", store.log_path, cut)
            store.truncate_from(cut)
        return store

    def _recover(self, seg_files: list[tuple[int, Path]]) -> None:
        first_index = self._meta.first_index
        newest = self._meta.newest_segment
        expected: int | None = None
        live: list[SegmentScan] = []
        to_delete: list[Path] = []
        torn: SegmentScan | None = None
        lost_from: int | None = None  # first index of the damaged tail, if any
        tail: deque[Entry] = deque(maxlen=self._cache.max_entries)
        if newest >= first_index and newest not in {first for first, _ in seg_files}:
            self.damage.append(f"newest segment {segment_name(newest)} is missing")
            lost_from = newest
        # segments created after the newest one recorded never got a record: a crash
        # while rolling (their header may be unfinished)
        unfinished = {first for first, _ in seg_files if newest and first > newest}
        for k, (first, path) in enumerate(seg_files):
            last_file = k == len(seg_files) - 1 or all(
                f in unfinished for f, _ in seg_files[k + 1:])
            if first in unfinished:
                to_delete.append(path)
                continue
            scan = scan_segment(path, first)
            if scan.bad_offset is not None:
                if not last_file or scan.definitely_corrupt or scan.valid_after_bad is not None:
                    raise scan.error()
                torn = scan
                if not scan.torn or (first == newest and not scan.header_ok):
                    what = ("header damaged" if not scan.header_ok
                            else f"{scan.bad_reason} at byte offset {scan.bad_offset}")
                    self.damage.append(f"{path}: {what}")
                    lost_from = first + len(scan.entries)
            if not scan.entries:
                if not last_file:
                    raise CorruptLogError(str(path), SEGMENT_HEADER_SIZE,
                                          "empty segment before the last one")
                to_delete.append(path)
                continue
            if scan.last_index < first_index:
                to_delete.append(path)  # left over from a compaction interrupted by a crash
                continue
            if expected is None and scan.first_index > first_index:
                raise CorruptLogError(str(path), SEGMENT_HEADER_SIZE,
                                      f"log starts at index {scan.first_index}, but the "
                                      f"snapshot ends at {first_index - 1}: missing segment")
            if expected is not None and scan.first_index != expected:
                raise CorruptLogError(str(path), SEGMENT_HEADER_SIZE,
                                      f"segment starts at index {scan.first_index}, expected "
                                      f"{expected}: missing or stray segment")
            expected = scan.last_index + 1
            self._index_entries(scan.entries, first_index, tail)
            scan.entries = []  # the log is not kept whole in memory
            live.append(scan)
        for entry in tail:
            self._cache.append(entry)
        # Validation passed: only now touch the files.
        for scan in live:
            segment = Segment.reopen(scan.path, scan.first_index, scan.offsets, scan.good_end,
                                     self.max_segment_size, self._files)
            if scan is torn:
                log.warning("log %s: cut torn tail at byte offset %d (%s)", scan.path,
                            scan.bad_offset, scan.bad_reason)
                segment.repair_tail(scan.good_end)
            self._segments.append(segment)
        for path in to_delete:
            if torn is not None and path == torn.path:
                log.warning("log %s: removed segment with torn tail (%s)", path,
                            torn.bad_reason)
            path.unlink()
        if to_delete:
            self._sync_service.sync_dir(self.log_path)
        self._durable_last = self._last
        if lost_from is not None:
            self._mark_damaged(lost_from)

    def _mark_damaged(self, lost_from: int) -> None:
        """Record durably, before the peer runs, that it may have lost acknowledged entries
        from ``lost_from`` on (it could only have acknowledged them in terms up to its
        durable term), and what the newest segment is now."""
        meta = self._meta
        recovering = max(meta.recovering, meta.term)
        newest = self._segments[-1].first_index if self._segments else 0
        self._meta = replace(meta, recovering=recovering, newest_segment=newest)
        self._write_meta()
        log.error("log %s: damaged (%s): entries from index %d on may have been "
                  "acknowledged and are lost; the peer will not vote until a leader has "
                  "repaired its log (recovering at term %d)", self.log_path,
                  "; ".join(self.damage), lost_from, recovering)

    def _index_entries(self, entries: list[Entry], first_index: int,
                       tail: deque[Entry]) -> None:
        terms_append = self._terms.append
        for entry in entries:
            if entry.index < first_index:
                continue
            terms_append(entry.index, entry.term)
            if entry.type == CONFIG:
                self._configs.add(entry.index, entry.data)
        if entries:
            keep = tail.maxlen or 1
            tail.extend(e for e in entries[-keep:] if e.index >= first_index)
            self._last = max(self._last, entries[-1].index)

    def close(self) -> None:
        with self._lock:
            for segment in self._segments + self._doomed:
                segment.close()

    # ------------------------------------------------------------------ reads

    def initial_state(self) -> tuple[HardState, SnapshotMeta]:
        meta = self._meta
        return meta.hard_state, meta.snapshot

    @property
    def meta(self) -> RaftMeta:
        return self._meta

    def first_index(self) -> int:
        return self._meta.snapshot.index + 1

    def last_index(self) -> int:
        return self._durable_last

    def last_term(self) -> int:
        with self._lock:
            return self._terms.term(self._durable_last)

    def snapshot_meta(self) -> SnapshotMeta:
        return self._meta.snapshot

    def term(self, index: int) -> int:
        with self._lock:
            snap = self._meta.snapshot
            if index < snap.index:
                raise LogCompacted(index)
            if index > self._durable_last:
                raise LogUnavailable(index)
            return self._terms.term(index)

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi), at least one if lo < hi, total ``Entry.size()`` <= max_bytes."""
        with self._lock:
            if lo <= self._meta.snapshot.index:
                raise LogCompacted(lo)
            if hi > self._durable_last + 1:
                raise LogUnavailable(hi - 1)
            out: list[Entry] = []
            if lo >= hi:
                return out
            total = 0
            index = lo
            cache_start = self._cache.start
            while index < hi and index < cache_start:
                segment = self._segment_for(index)
                stop = min(hi, cache_start, segment.last_index + 1)
                chunk_end = _chunk_end(segment, index, stop, max_bytes)
                self.disk_reads += 1
                for entry in segment.read(index, chunk_end):
                    size = entry.size()
                    if out and max_bytes is not None and total + size > max_bytes:
                        return out
                    out.append(entry)
                    total += size
                index = chunk_end
            if index < hi:
                for entry in self._cache.get(index, hi):
                    size = entry.size()
                    if out and max_bytes is not None and total + size > max_bytes:
                        return out
                    out.append(entry)
                    total += size
            return out

    def config_at(self, index: int) -> tuple[int, ClusterConfig]:
        """(config index, ClusterConfig) in force at `index` (the snapshot's if older)."""
        with self._lock:
            found = self._configs.at(index)
            if found is not None:
                return found
            snap = self._meta.snapshot
            return snap.config_index, snap.config

    def config_history(self) -> list[tuple[int, ClusterConfig]]:
        """(index, config) of every CONFIG entry after the snapshot, oldest first, from
        memory: a caller rebuilding its config state need not read the whole log."""
        with self._lock:
            last = self._durable_last
            return [(i, c) for i, c in zip(self._configs.indexes, self._configs.configs,
                                           strict=True) if i <= last]

    def last_entry_time(self) -> int:
        """``time`` of the last durable entry (0 when the log is empty)."""
        with self._lock:
            last = self._durable_last
            if last <= self._meta.snapshot.index:
                return 0
            if last >= self._cache.start:
                return self._cache.get(last, last + 1)[0].time
            return self._segment_for(last).read(last, last + 1)[0].time

    def _segment_for(self, index: int) -> Segment:
        k = bisect_right(self._segments, index, key=lambda s: s.first_index) - 1
        if k < 0 or index > self._segments[k].last_index:
            raise LogUnavailable(index)
        return self._segments[k]

    # ------------------------------------------------------------------ durable writes

    def set_hard_state(self, hs: HardState) -> None:
        self.stage_hard_state(hs)
        self.sync()

    def append(self, entries: Sequence[Entry]) -> None:
        self.stage_append(entries)
        self.sync()

    def apply_snapshot(self, meta: SnapshotMeta) -> None:
        self.stage_snapshot(meta)
        self.sync()

    def compact(self, index: int) -> None:
        self.stage_compact(index)
        self.sync()

    @_poison_on_error
    def mark_removed(self, removed: bool = True) -> None:
        """Record that this peer was removed from its cluster (survives restarts)."""
        self._meta = replace(self._meta, removed=removed)
        self._meta_dirty = True
        self.sync()

    # ------------------------------------------------------------------ staged writes

    @_poison_on_error
    def stage_hard_state(self, hs: HardState) -> None:
        if hs != self._meta.hard_state:
            self._meta = self._meta.with_hard_state(hs)
            self._meta_dirty = True

    @_poison_on_error
    def stage_append(self, entries: Sequence[Entry]) -> None:
        """Write entries (truncating from entries[0].index if it is <= the last index)."""
        snap_index = self._meta.snapshot.index
        if entries and entries[0].index <= snap_index:
            entries = [e for e in entries if e.index > snap_index]
        if not entries:
            return
        first = entries[0].index
        if first > self._last + 1:
            raise LogUnavailable(f"append at {first} leaves a gap after {self._last}")
        for prev, entry in itertools.pairwise(entries):
            if entry.index != prev.index + 1:
                raise ValueError(f"append: index {entry.index} does not follow {prev.index}")
        if first <= self._last:
            self.truncate_from(first)
        blob, sizes = encode_entries(entries)
        with self._lock:
            pos = 0
            start = 0
            while start < len(sizes):
                segment = self._writable_segment(entries[start].index, sizes[start])
                room = self.max_segment_size - segment.end
                stop = start + 1
                used = sizes[start]
                while stop < len(sizes) and used + sizes[stop] <= room:
                    used += sizes[stop]
                    stop += 1
                segment.write(blob[pos : pos + used], sizes[start:stop])
                pos += used
                start = stop
            for entry in entries:
                self._terms.append(entry.index, entry.term)
                if entry.type == CONFIG:
                    self._configs.add(entry.index, entry.data)
                self._cache.append(entry)
            self._last = entries[-1].index

    def _writable_segment(self, index: int, record_size: int) -> Segment:
        """The segment that takes record `index`, rolling to a new one when needed."""
        if self._segments:
            current = self._segments[-1]
            if current.count == 0 or current.end + record_size <= self.max_segment_size:
                return current
            if current.sync():
                self.log_syncs += 1
        segment = Segment.create(self.log_path, index, self.max_segment_size, self._files,
                                 self._sync_service)
        self._segments.append(segment)
        # before any record goes in: recovery then knows this segment must exist
        self._meta = replace(self._meta, newest_segment=index)
        self._write_meta()
        return segment

    @_poison_on_error
    def truncate_from(self, index: int) -> None:
        """Remove entries >= index, durably, before anything new is written after them."""
        if index <= self._meta.snapshot.index:
            raise ValueError(f"cannot truncate at {index}: covered by the snapshot")
        if index > self._last:
            return
        with self._lock:
            self._durable_last = min(self._durable_last, index - 1)
            removed = False
            while self._segments and self._segments[-1].first_index >= index:
                self._segments.pop().delete()
                removed = True
            if removed:
                self._sync_service.sync_dir(self.log_path)
                newest = self._segments[-1].first_index if self._segments else 0
                self._meta = replace(self._meta, newest_segment=newest)
                self._write_meta()
            if self._segments:
                self._segments[-1].truncate_from(index)
            self._terms.truncate_after(index - 1)
            self._configs.truncate_from(index)
            self._cache.truncate_from(index)
            self._last = index - 1

    @_poison_on_error
    def stage_cluster_id(self, cluster_id: str) -> None:
        """Record the cluster a peer created without an id joined (``ClusterAdopted``)."""
        if cluster_id != self._meta.cluster_id:
            self._meta = replace(self._meta, cluster_id=cluster_id)
            self._meta_dirty = True

    @_poison_on_error
    def stage_compact(self, index: int) -> None:
        """A local snapshot covers entries <= index: forget them."""
        snap = self._meta.snapshot
        if index <= snap.index:
            return
        if index > self._last:
            raise LogUnavailable(f"compact({index}) beyond the last index {self._last}")
        with self._lock:
            term = self._terms.term(index)
            found = self._configs.at(index)
            config_index, config = found if found else (snap.config_index, snap.config)
            self._compact_locked(SnapshotMeta(index, term, config_index, config))

    @_poison_on_error
    def stage_snapshot(self, meta: SnapshotMeta) -> None:
        """An installed snapshot: keep the suffix only if our entry meta.index has meta.term."""
        snap = self._meta.snapshot
        if meta.index <= snap.index:
            return
        with self._lock:
            if meta.index <= self._last and self._terms.term(meta.index) == meta.term:
                self._compact_locked(meta)
                return
            # Discard the whole log: delete segments newest first (a crash leaves a prefix of
            # the old log), then record the snapshot point durably.
            self._durable_last = min(self._durable_last, snap.index)
            for segment in reversed(self._segments + self._doomed):
                segment.delete()
            self._segments.clear()
            self._doomed.clear()
            self._sync_service.sync_dir(self.log_path)
            self._meta = replace(self._meta, snapshot=meta, newest_segment=0)
            self._write_meta()
            self._terms.reset(meta.index, meta.term)
            self._configs = ConfigHistory()
            self._cache.clear(meta.index + 1)
            self._last = meta.index
            self._durable_last = meta.index

    def _compact_locked(self, meta: SnapshotMeta) -> None:
        self._meta = replace(self._meta, snapshot=meta)
        # keep last_index() >= first_index() - 1 for readers even if the snapshot point
        # covers entries staged but not yet synced
        self._durable_last = max(self._durable_last, meta.index)
        self._meta_dirty = True
        self._terms.compact(meta.index)
        self._configs.drop_through(meta.index)
        self._cache.drop_through(meta.index)
        # Whole segments at or below the snapshot go once the metadata is durable.
        while self._segments and self._segments[0].last_index <= meta.index:
            self._doomed.append(self._segments.pop(0))

    def _write_meta(self) -> None:
        write_meta(self.peer_path, self._meta, self._sync_service)
        self._meta_dirty = False
        self.meta_writes += 1

    @_poison_on_error
    def sync(self) -> int:
        """Make everything staged durable (one group commit of the node's SyncService);
        returns the durable last index."""
        if self._meta_dirty:
            self._write_meta()
        last = self._segments[-1] if self._segments else None
        if last is not None and last.dirty and (len(self._segments) == 1
                                                or not self._segments[-2].dirty):
            # the usual case: only the newest segment was written (rolls sync the full one)
            fd = last.acquire_fd()
            try:
                self._sync_service.sync((fd,))
            finally:
                last.release_fd()
            last.mark_synced()
            self.log_syncs += 1
            dirty = []
        else:
            dirty = [segment for segment in self._segments if segment.dirty]
        if dirty:
            pinned: list[Segment] = []
            try:
                fds = []
                for segment in dirty:
                    fds.append(segment.acquire_fd())
                    pinned.append(segment)
                self._sync_service.sync(fds)
            finally:
                for segment in pinned:
                    segment.release_fd()
            for segment in dirty:
                segment.mark_synced()
            self.log_syncs += 1
        if self._doomed:
            with self._lock:
                doomed, self._doomed = self._doomed, []
                for segment in doomed:
                    segment.delete()
            self._sync_service.sync_dir(self.log_path)
        with self._lock:
            self._durable_last = self._last
        return self._last


def _list_segments(log_path: Path) -> list[tuple[int, Path]]:
    found: list[tuple[int, Path]] = []
    for child in log_path.iterdir():
        first = parse_segment_name(child.name)
        if first is None:
            log.warning("log %s: ignoring unexpected file %s", log_path, child.name)
            continue
        found.append((first, child))
    found.sort()
    return found


def _chunk_end(segment: Segment, index: int, stop: int, max_bytes: int | None) -> int:
    """End (exclusive) of one disk read starting at `index`: bounded by bytes on disk."""
    limit = READ_CHUNK_BYTES if max_bytes is None else max(min(max_bytes, READ_CHUNK_BYTES), 1)
    offsets = segment.offsets
    k = index - segment.first_index
    j = bisect_right(offsets, offsets[k] + limit, lo=k + 1)
    return max(index + 1, min(stop, segment.first_index + j))
