"""LogWriter group commit: one log fsync per flush however many batches were staged."""

from __future__ import annotations

import errno
import os

import pytest

from zraft.core.entries import DATA, ClusterConfig, Entry, HardState, SnapshotMeta
from zraft.storage import DiskLogStorage, DiskStorageError, LogWriter, WriteBatch


def entry(index: int, term: int = 1) -> Entry:
    return Entry(index, term, DATA, b"v" * 100, index)


@pytest.fixture
def counted(monkeypatch):
    calls = {"fdatasync": 0, "fsync": 0}
    real_fdatasync, real_fsync = os.fdatasync, os.fsync

    def fdatasync(fd: int) -> None:
        calls["fdatasync"] += 1
        real_fdatasync(fd)

    def fsync(fd: int) -> None:
        calls["fsync"] += 1
        real_fsync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "fsync", fsync)

    def reset() -> dict[str, int]:
        snapshot = dict(calls)
        calls.update(fdatasync=0, fsync=0)
        return snapshot

    return reset


def open_writer(tmp_path) -> LogWriter:
    store = DiskLogStorage.open(tmp_path, "w@127.0.0.1:1", max_segment_size=1 << 20)
    store.append([entry(1)])  # the first segment exists already
    return LogWriter(store)


def test_one_fdatasync_per_batch(tmp_path, counted):
    writer = open_writer(tmp_path)
    counted()
    durable = writer.write_batch(entries=[entry(i) for i in range(2, 502)])
    assert durable == 501
    assert counted() == {"fdatasync": 1, "fsync": 0}
    assert writer.storage.last_index() == 501


def test_many_staged_batches_share_one_fdatasync(tmp_path, counted):
    writer = open_writer(tmp_path)
    counted()
    batches = [WriteBatch(entries=[entry(i) for i in range(n, n + 10)]) for n in range(2, 202, 10)]
    for batch in batches:
        writer.stage(batch)
    assert writer.storage.last_index() == 1  # not durable, not visible
    assert counted() == {"fdatasync": 0, "fsync": 0}
    assert writer.flush() == 201
    assert counted() == {"fdatasync": 1, "fsync": 0}
    assert writer.batches_written == 20 and writer.flushes == 1


def test_hard_state_change_adds_one_atomic_meta_write(tmp_path, counted):
    writer = open_writer(tmp_path)
    counted()
    writer.write_batches([
        WriteBatch(hard_state=HardState(2, "a"), entries=[entry(2, 2)]),
        WriteBatch(hard_state=HardState(3, None), entries=[entry(3, 3)]),
    ])
    # one fdatasync for the log; the metadata written once (temp file + directory fsync)
    assert counted() == {"fdatasync": 1, "fsync": 2}
    assert writer.storage.initial_state()[0] == HardState(3, None)
    # an unchanged hard state costs nothing
    writer.write_batch(hard_state=HardState(3, None), entries=[entry(4, 3)])
    assert counted() == {"fdatasync": 1, "fsync": 0}


def test_write_ops_apply_in_order(tmp_path):
    writer = open_writer(tmp_path)
    durable = writer.write_ops([
        ("hard_state", HardState(2, None)),
        ("append", [entry(i, 2) for i in range(2, 21)]),
        ("append", [entry(i, 3) for i in range(15, 18)]),  # conflict: truncates 15..20
        ("compact", 10),
    ])
    store = writer.storage
    assert durable == 17 == store.last_index()
    assert store.first_index() == 11
    assert [e.term for e in store.entries(13, 18)] == [2, 2, 3, 3, 3]
    snap = SnapshotMeta(30, 4, 1, ClusterConfig.stable(["w@127.0.0.1:1"]))
    assert writer.write_ops([("snapshot", snap)]) == 30
    assert store.initial_state() == (HardState(2, None), snap)
    with pytest.raises(ValueError):
        writer.write_ops([("bogus", 1)])


def test_reopen_after_group_commit(tmp_path):
    writer = open_writer(tmp_path)
    writer.write_batches([WriteBatch(entries=[entry(i)]) for i in range(2, 50)])
    writer.storage.close()
    store = DiskLogStorage.open(tmp_path, "w@127.0.0.1:1", max_segment_size=1 << 20)
    assert store.last_index() == 49
    store.close()


def test_failed_fsync_poisons_the_log_until_reopened(tmp_path, monkeypatch):
    writer = open_writer(tmp_path)
    writer.write_batch(entries=[entry(2)])

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "injected I/O error")

    monkeypatch.setattr(os, "fdatasync", broken)
    with pytest.raises(OSError):
        writer.write_batch(entries=[entry(3)])
    monkeypatch.undo()
    assert writer.storage.last_index() == 2  # never acknowledged
    with pytest.raises(DiskStorageError, match="reopen"):
        writer.write_batch(entries=[entry(4)])
    writer.storage.close()
    store = DiskLogStorage.open(tmp_path, "w@127.0.0.1:1", max_segment_size=1 << 20)
    assert store.last_index() in (2, 3)
    store.close()


def test_short_writes_are_completed(tmp_path, monkeypatch):
    writer = open_writer(tmp_path)
    real_pwrite = os.pwrite

    def short_pwrite(fd: int, data, offset: int) -> int:
        return real_pwrite(fd, bytes(data[: max(1, len(data) // 3)]), offset)

    monkeypatch.setattr(os, "pwrite", short_pwrite)
    writer.write_batch(entries=[entry(i) for i in range(2, 30)])
    monkeypatch.undo()
    writer.storage.close()
    store = DiskLogStorage.open(tmp_path, "w@127.0.0.1:1", max_segment_size=1 << 20)
    assert store.entries(2, 30) == [entry(i) for i in range(2, 30)]
    store.close()
