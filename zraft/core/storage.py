"""The durable log as the core reads it, and its in-memory twin.

Rules:
- The core only READS storage (``LogStorage``); the driver writes it from a Ready, in the
  Ready's order: ``set_hard_state``, ``apply_snapshot``, ``append``, ``compact``.
- ``append(entries)`` truncates from ``entries[0].index`` when that is at or below the last
  stored index (a conflict the core already decided), then appends.
- ``apply_snapshot(meta)``: the log restarts after ``meta.index``; the stored suffix after it
  survives only when the stored entry ``meta.index`` has term ``meta.term``.
- ``compact(index)``: entries ``<= index`` may go; term and configuration at ``index`` are
  kept in the snapshot metadata, so ``term(first_index() - 1)`` still answers.
"""

from __future__ import annotations

from typing import Protocol

from zraft.core.entries import CONFIG, Entry, HardState, SnapshotMeta


class LogStorage(Protocol):
    def initial_state(self) -> tuple[HardState, SnapshotMeta]: ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def term(self, index: int) -> int: ...

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]: ...


class StorageError(Exception):
    """A request outside the stored range."""


class MemoryStorage:
    """In-memory ``LogStorage`` with the write side a driver uses."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot = SnapshotMeta()
        self._entries: list[Entry] = []  # entries after snapshot.index

    # -- read side ---------------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, SnapshotMeta]:
        return self.hard_state, self.snapshot

    def first_index(self) -> int:
        return self.snapshot.index + 1

    def last_index(self) -> int:
        return self.snapshot.index + len(self._entries)

    def term(self, index: int) -> int:
        base = self.snapshot.index
        if index == base:
            return self.snapshot.term
        if base < index <= base + len(self._entries):
            return self._entries[index - base - 1].term
        raise StorageError(f"term({index}) outside [{base}, {self.last_index()}]")

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        base = self.snapshot.index
        if lo <= base or hi > self.last_index() + 1:
            raise StorageError(f"entries({lo}, {hi}) outside ({base}, {self.last_index()}]")
        chunk = self._entries[lo - base - 1 : hi - base - 1]
        if max_bytes >= 1 << 62:
            return chunk
        out: list[Entry] = []
        size = 0
        for e in chunk:
            size += e.size()
            if out and size > max_bytes:
                break
            out.append(e)
        return out

    # -- write side --------------------------------------------------------------------------

    def set_hard_state(self, hs: HardState) -> None:
        self.hard_state = hs

    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        base = self.snapshot.index
        first = entries[0].index
        if first <= base:
            entries = entries[base + 1 - first :]
            if not entries:
                return
            first = entries[0].index
        if first > self.last_index() + 1:
            raise StorageError(f"gap: append at {first} after {self.last_index()}")
        del self._entries[first - base - 1 :]
        self._entries.extend(entries)

    def apply_snapshot(self, meta: SnapshotMeta) -> None:
        if meta.index <= self.snapshot.index:
            return
        keep: list[Entry] = []
        if meta.index <= self.last_index() and self.term(meta.index) == meta.term:
            keep = self._entries[meta.index - self.snapshot.index :]
        self.snapshot = meta
        self._entries = keep

    def lose_tail(self, first_lost: int) -> int:
        """Fault injection (the simulator's damaged disk): forget durable entries from
        ``first_lost`` on, as a disk losing synced data would. Returns how many went."""
        keep = max(first_lost - self.snapshot.index - 1, 0)
        lost = len(self._entries) - keep
        del self._entries[keep:]
        return max(lost, 0)

    def compact(self, index: int) -> None:
        base = self.snapshot.index
        if index <= base:
            return
        if index > self.last_index():
            raise StorageError(f"compact({index}) beyond last index {self.last_index()}")
        config_index, config = self.snapshot.config_index, self.snapshot.config
        for e in reversed(self._entries[: index - base]):
            if e.type == CONFIG:
                config_index, config = e.index, e.data
                break
        self.snapshot = SnapshotMeta(index, self.term(index), config_index, config)
        del self._entries[: index - base]
