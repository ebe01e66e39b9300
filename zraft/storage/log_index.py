"""In-memory indexes of a disk log: term boundaries, config history, recent-entry cache.

Rules:
- `TermIndex` holds one (start index, term) pair per run of equal terms, starting at the
  snapshot point (whose term is the snapshot's), so `term(i)` never touches the disk.
- `ConfigHistory` holds the CONFIG entries after the snapshot (rare), so a compaction can
  record the configuration in force at the compaction point.
- `EntryCache` keeps a contiguous run of the most recent entries, bounded by count and by
  bytes (``Entry.size()``); anything older is read from the segment files.
None of these lock: the owning `DiskLogStorage` does.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from zraft.core.entries import ClusterConfig, Entry


class TermIndex:
    def __init__(self, index: int = 0, term: int = 0) -> None:
        self.starts: list[int] = [index]
        self.terms: list[int] = [term]
        self.last = index

    def reset(self, index: int, term: int) -> None:
        """Only the snapshot point remains: entry `index` has `term`."""
        self.starts = [index]
        self.terms = [term]
        self.last = index

    def append(self, index: int, term: int) -> None:
        if index != self.last + 1:
            raise ValueError(f"term index: append {index} after {self.last}")
        if term != self.terms[-1]:
            self.starts.append(index)
            self.terms.append(term)
        self.last = index

    def term(self, index: int) -> int:
        if index < self.starts[0] or index > self.last:
            raise IndexError(index)
        return self.terms[bisect_right(self.starts, index) - 1]

    @property
    def last_term(self) -> int:
        return self.terms[-1]

    def truncate_after(self, index: int) -> None:
        """Forget indexes > index (index >= the snapshot point)."""
        cut = bisect_right(self.starts, index)
        del self.starts[cut:]
        del self.terms[cut:]
        self.last = index

    def compact(self, index: int) -> None:
        """Forget indexes < index; `index` becomes the first known point."""
        term = self.term(index)
        cut = bisect_right(self.starts, index) - 1
        del self.starts[:cut]
        del self.terms[:cut]
        self.starts[0] = index
        self.terms[0] = term


class ConfigHistory:
    def __init__(self) -> None:
        self.indexes: list[int] = []
        self.configs: list[ClusterConfig] = []

    def add(self, index: int, config: ClusterConfig) -> None:
        self.indexes.append(index)
        self.configs.append(config)

    def at(self, index: int) -> tuple[int, ClusterConfig] | None:
        """The last config entry at or before `index`, if any is still in the log."""
        k = bisect_right(self.indexes, index) - 1
        return (self.indexes[k], self.configs[k]) if k >= 0 else None

    def truncate_from(self, index: int) -> None:
        cut = bisect_left(self.indexes, index)
        del self.indexes[cut:]
        del self.configs[cut:]

    def drop_through(self, index: int) -> None:
        cut = bisect_right(self.indexes, index)
        del self.indexes[:cut]
        del self.configs[:cut]


class EntryCache:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max(1, max_entries)
        self.max_bytes = max(1, max_bytes)
        self._items: list[Entry] = []
        self._head = 0  # items before _head are evicted (lazy list compaction)
        self.start = 1  # index of _items[_head]
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items) - self._head

    @property
    def next_index(self) -> int:
        return self.start + len(self)

    def append(self, entry: Entry) -> None:
        if entry.index != self.next_index:
            self.clear(entry.index)
        self._items.append(entry)
        self.bytes += entry.size()
        while len(self) > self.max_entries or (self.bytes > self.max_bytes and len(self) > 1):
            self._evict_one()

    def _evict_one(self) -> None:
        self.bytes -= self._items[self._head].size()
        self._items[self._head] = None  # type: ignore[call-overload]
        self._head += 1
        self.start += 1
        if self._head > 1024 and self._head * 2 > len(self._items):
            del self._items[: self._head]
            self._head = 0

    def clear(self, next_index: int) -> None:
        self._items = []
        self._head = 0
        self.start = next_index
        self.bytes = 0

    def get(self, lo: int, hi: int) -> list[Entry]:
        """Entries [lo, hi) with lo >= start and hi <= next_index."""
        base = self._head - self.start
        return self._items[base + lo : base + hi]

    def truncate_from(self, index: int) -> None:
        if index <= self.start:
            self.clear(index)
            return
        while self.next_index > index:
            self.bytes -= self._items.pop().size()

    def drop_through(self, index: int) -> None:
        while len(self) and self.start <= index:
            self._evict_one()
        if not len(self):
            self.clear(max(self.start, index + 1))
