"""RaftLog: the durable storage view plus the unstable in-memory tail.

Rules:
- Entries ``<= snapshot.index`` are compacted: ``term(snapshot.index)`` answers from the
  snapshot metadata, lower indexes answer ``None``.
- Entries from ``_offset`` on live in ``_unstable`` until the driver reports them durable
  (``stable_to``); everything below ``_offset`` is read from storage, which the driver writes
  from Ready batches in order. ``stable_last()`` is the last index that is durable AND part
  of this log (a truncated-but-not-yet-rewritten suffix does not count).
- ``append`` truncates at the first entry's index when it is at or below the last index; the
  caller (the core) decides conflicts and never truncates committed entries.
- Terms never decrease along a log, so the backwards term search used by fast back-off is a
  binary search (no O(n) scan per message).
- The active configuration is the last CONFIG entry in the log, committed or not; the config
  history is trimmed on truncation (rollback) and folded into the snapshot on compaction.
"""

from __future__ import annotations

from bisect import bisect_right

from zraft.core.entries import BLANK_CONFIG, CONFIG, ClusterConfig, Entry, SnapshotMeta
from zraft.core.errors import InvariantViolation
from zraft.core.storage import LogStorage

_SCAN_BYTES = 1 << 22
NO_LIMIT = 1 << 62  # max_bytes meaning "no byte cap" (skips per-entry size accounting)


class RaftLog:
    def __init__(self, storage: LogStorage, snapshot: SnapshotMeta) -> None:
        self.storage = storage
        self.snapshot = snapshot
        self._durable_last = storage.last_index()
        self._unstable: list[Entry] = []
        self._offset = self._durable_last + 1
        self._handed = self._durable_last  # last index put into a Ready
        # config history after the snapshot: parallel sorted lists
        self._cfg_idx: list[int] = []
        self._cfg: list[ClusterConfig] = []
        self.last_time = 0
        self._load_tail()

    def _load_tail(self) -> None:
        lo, last = self.snapshot.index + 1, self._durable_last
        while lo <= last:
            batch = self.storage.entries(lo, last + 1, _SCAN_BYTES)
            for e in batch:
                if e.type == CONFIG:
                    self._cfg_idx.append(e.index)
                    self._cfg.append(e.data)
            lo = batch[-1].index + 1
            self.last_time = batch[-1].time

    # -- indexes and terms -------------------------------------------------------------------

    def first_index(self) -> int:
        return self.snapshot.index + 1

    def last_index(self) -> int:
        if self._unstable:
            return self._unstable[-1].index
        return max(self._offset - 1, self.snapshot.index)

    def last_term(self) -> int:
        t = self.term(self.last_index())
        return t if t is not None else 0

    def stable_last(self) -> int:
        """Last index that is durable and belongs to this log."""
        return max(min(self._durable_last, self._offset - 1), self.snapshot.index)

    def term(self, index: int) -> int | None:
        """Term of ``index``, or None when compacted or beyond the last index."""
        off = self._offset
        if index >= off:
            i = index - off
            if i < len(self._unstable):
                return self._unstable[i].term
            return None
        snap = self.snapshot
        if index == snap.index:
            return snap.term
        if index < snap.index or index < 0:
            return None
        return self.storage.term(index)

    def matches(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft 5.4.1: is a candidate's log at least as up to date as ours?"""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """Largest i <= index with term(i) <= term (or the snapshot index)."""
        lo = self.snapshot.index
        hi = min(index, self.last_index())
        if hi <= lo:
            return lo
        t = self.term(hi)
        if t is not None and t <= term:
            return hi
        # invariant: term(lo) <= term (or lo is the snapshot boundary), term(hi) > term
        while hi - lo > 1:
            mid = (lo + hi) // 2
            t = self.term(mid)
            if t is not None and t <= term:
                lo = mid
            else:
                hi = mid
        return lo

    # -- reading entries ---------------------------------------------------------------------

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi), at least one when lo < hi, about ``max_bytes`` in total."""
        if lo >= hi:
            return []
        if lo <= self.snapshot.index:
            raise InvariantViolation(f"slice({lo}) below first index {self.first_index()}")
        off = self._offset
        unstable = self._unstable
        if max_bytes >= NO_LIMIT and lo >= off:
            return unstable[lo - off : hi - off]
        out: list[Entry] = []
        if lo < off:
            out = self.storage.entries(lo, min(hi, off), max_bytes)
            if hi <= off or out[-1].index + 1 < off:
                return out
            size = sum(e.size() for e in out)
            lo = off
        else:
            size = 0
        if max_bytes >= NO_LIMIT:
            out.extend(unstable[lo - off : hi - off])
            return out
        for i in range(lo - off, min(hi - off, len(unstable))):
            e = unstable[i]
            size += e.size()
            if out and size > max_bytes:
                break
            out.append(e)
        return out

    # -- writing -----------------------------------------------------------------------------

    def append(self, entries: list[Entry]) -> None:
        """Append ``entries``, truncating at entries[0].index first if needed."""
        if not entries:
            return
        first = entries[0].index
        if first > self.last_index() + 1:
            raise InvariantViolation(f"gap: append at {first} after {self.last_index()}")
        if first <= self.last_index():
            self._truncate_from(first)
        # after any truncation the tail ends right before `first`
        self._unstable.extend(entries)
        if self._handed >= first:
            self._handed = first - 1
        for e in entries:
            if e.type == CONFIG:
                self._cfg_idx.append(e.index)
                self._cfg.append(e.data)
        t = entries[-1].time
        if t > self.last_time:
            self.last_time = t

    def _truncate_from(self, index: int) -> None:
        off = self._offset
        if index >= off:
            del self._unstable[index - off :]
        else:
            self._unstable = []
            self._offset = index
        if self._handed >= index:
            self._handed = index - 1
        while self._cfg_idx and self._cfg_idx[-1] >= index:
            self._cfg_idx.pop()
            self._cfg.pop()

    def truncate_after(self, index: int) -> None:
        """Drop entries after ``index`` (test-only mutation path)."""
        if index < self.last_index():
            self._truncate_from(index + 1)
            if not self._unstable:
                self._offset = index + 1

    def has_unhanded(self) -> bool:
        return self.last_index() > max(self._handed, self._offset - 1)

    def take_unhanded(self) -> list[Entry]:
        """Entries not yet put into a Ready (then marked handed)."""
        start = max(self._handed + 1, self._offset)
        last = self.last_index()
        if start > last:
            return []
        out = self._unstable[start - self._offset :]
        self._handed = last
        return out

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``(index, term)`` are durable (ignored if since truncated)."""
        off = self._offset
        if index < off:
            return
        i = index - off
        if i >= len(self._unstable) or self._unstable[i].term != term:
            return
        del self._unstable[: i + 1]
        self._offset = index + 1
        self._durable_last = index

    # -- snapshots ---------------------------------------------------------------------------

    def compact(self, meta: SnapshotMeta) -> None:
        """A local snapshot covers up to meta.index (the entries stay readable until the
        driver compacts storage; we simply never ask for them again)."""
        self.snapshot = meta
        self._drop_configs_upto(meta.index)
        if self._offset <= meta.index:
            del self._unstable[: meta.index + 1 - self._offset]
            self._offset = meta.index + 1
            if self._durable_last < meta.index:
                self._durable_last = meta.index

    def restore(self, meta: SnapshotMeta) -> None:
        """An installed snapshot: keep the suffix only when entry meta.index matches."""
        keep = self.term(meta.index) == meta.term
        if keep:
            self.compact(meta)
            return
        self.snapshot = meta
        self._unstable = []
        self._offset = meta.index + 1
        self._durable_last = meta.index
        self._handed = meta.index
        self._cfg_idx = []
        self._cfg = []

    def _drop_configs_upto(self, index: int) -> None:
        k = bisect_right(self._cfg_idx, index)
        if k:
            del self._cfg_idx[:k]
            del self._cfg[:k]

    # -- configuration -----------------------------------------------------------------------

    def config(self) -> tuple[int, ClusterConfig]:
        """(index, config) of the last configuration in the log (or the snapshot's)."""
        if self._cfg_idx:
            return self._cfg_idx[-1], self._cfg[-1]
        return self.snapshot.config_index, self.snapshot.config

    def config_at(self, index: int) -> tuple[int, ClusterConfig]:
        """(index, config) of the last configuration at or before ``index``."""
        k = bisect_right(self._cfg_idx, index)
        if k:
            return self._cfg_idx[k - 1], self._cfg[k - 1]
        snap = self.snapshot
        if snap.config_index <= index:
            return snap.config_index, snap.config
        return 0, BLANK_CONFIG
