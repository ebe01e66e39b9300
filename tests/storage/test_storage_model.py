"""Property test: random appends (with conflicts), compactions, snapshot installs, group
commits and reopens of DiskLogStorage behave exactly like the core's MemoryStorage."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zraft.core.entries import CONFIG, DATA, ClusterConfig, Entry, HardState, SnapshotMeta
from zraft.core.storage import MemoryStorage
from zraft.storage import DiskLogStorage, LogWriter

PEER = "model@127.0.0.1:1"
UNLIMITED = 1 << 40


@pytest.fixture
def no_fsync(monkeypatch):
    """Semantics, not durability, are under test here: skip the (slow) disk flushes."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    monkeypatch.setattr(os, "fdatasync", lambda fd: None)


def make_entry(index: int, term: int, size: int, kind: int) -> Entry:
    if kind == 0:
        return Entry(index, term, CONFIG, ClusterConfig.stable([f"p{index}"]), index)
    return Entry(index, term, DATA, bytes([index % 256]) * size, index)


def check_same(disk: DiskLogStorage, model: MemoryStorage, max_bytes: int) -> None:
    assert disk.first_index() == model.first_index()
    assert disk.last_index() == model.last_index()
    assert disk.initial_state() == model.initial_state()
    first, last = model.first_index(), model.last_index()
    for i in range(first - 1, last + 1):
        assert disk.term(i) == model.term(i), i
    if last >= first:
        assert disk.entries(first, last + 1, UNLIMITED) == model.entries(first, last + 1,
                                                                          UNLIMITED)
        assert disk.entries(first, last + 1, max_bytes) == model.entries(first, last + 1,
                                                                         max_bytes)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_disk_log_matches_memory_model(no_fsync, data):
    seg_size = data.draw(st.sampled_from([200, 600, 4096]), label="segment size")
    cache = data.draw(st.integers(1, 6), label="cache entries")
    with tempfile.TemporaryDirectory() as root:
        disk = DiskLogStorage.open(root, PEER, max_segment_size=seg_size, cache_entries=cache)
        writer = LogWriter(disk)
        model = MemoryStorage()
        for _step in range(data.draw(st.integers(1, 25), label="steps")):
            ops = []
            for _ in range(data.draw(st.integers(1, 3), label="ops per flush")):
                kind = data.draw(st.sampled_from(
                    ["append", "append", "append", "compact", "snapshot", "hard_state"]))
                first, last = model.first_index(), model.last_index()
                if kind == "append":
                    start = data.draw(st.integers(first, last + 1), label="append at")
                    count = data.draw(st.integers(1, 8), label="count")
                    term = data.draw(st.integers(1, 6), label="term")
                    entries = [make_entry(i, term, data.draw(st.integers(0, 150)),
                                          data.draw(st.integers(0, 5)))
                               for i in range(start, start + count)]
                    op = ("append", entries)
                    model.append(entries)
                elif kind == "compact":
                    if last < first:
                        continue
                    index = data.draw(st.integers(first - 1, last), label="compact to")
                    op = ("compact", index)
                    model.compact(index)
                elif kind == "snapshot":
                    index = data.draw(st.integers(max(0, first - 2), last + 4), label="snap")
                    term = (model.term(index) if first - 1 <= index <= last
                            and data.draw(st.booleans()) else data.draw(st.integers(1, 6)))
                    snap = SnapshotMeta(index, term, 0, ClusterConfig.stable(["x"]))
                    op = ("snapshot", snap)
                    model.apply_snapshot(snap)
                else:
                    hs = HardState(data.draw(st.integers(0, 9)),
                                   data.draw(st.sampled_from([None, "a", "b"])))
                    op = ("hard_state", hs)
                    model.set_hard_state(hs)
                ops.append(op)
            writer.write_ops(ops)
            check_same(disk, model, data.draw(st.integers(1, 600), label="max bytes"))
            if data.draw(st.booleans(), label="reopen"):
                disk.close()
                disk = DiskLogStorage.open(root, PEER, max_segment_size=seg_size,
                                           cache_entries=cache)
                writer = LogWriter(disk)
                check_same(disk, model, UNLIMITED)
        disk.close()
