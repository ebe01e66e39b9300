"""Protocol-aware recovery on disk: a write a crash cut short is cut quietly (it was never
synced, so never acknowledged); damage to what may have been synced (a flipped bit in the
last record, a zero-filled or deleted newest segment) is cut too, but the peer is marked
``recovering`` in its metadata first, so it will not vote until a leader has repaired it."""

from __future__ import annotations

from pathlib import Path

from zraft.core.entries import DATA, Entry, HardState
from zraft.storage import DiskLogStorage, LogWriter
from zraft.storage.framing import SEGMENT_HEADER_SIZE
from zraft.storage.meta import read_meta

PEER = "damage@127.0.0.1:1"
SEGMENT = 4096


def entry(index: int, size: int = 100, term: int = 3) -> Entry:
    return Entry(index, term, DATA, bytes([1 + index % 250]) * size, 1_700_000_000_000 + index)


def write(root: Path, n: int, size: int = 100) -> DiskLogStorage:
    store = DiskLogStorage.open(root, PEER, max_segment_size=SEGMENT)
    writer = LogWriter(store)
    writer.write_batch(hard_state=HardState(3, "x"))
    for i in range(1, n + 1):
        writer.write_batch(entries=[entry(i, size)])
    return store


def reopen(root: Path) -> DiskLogStorage:
    return DiskLogStorage.open(root, PEER, max_segment_size=SEGMENT)


def last_segment(store: DiskLogStorage) -> Path:
    return store._segments[-1].path


def test_a_torn_last_write_is_cut_without_marking_the_peer(tmp_path):
    store = write(tmp_path, 5)
    seg = store._segments[-1]
    path, start, end = seg.path, seg.offsets[-1], seg.end
    store.close()
    with open(path, "r+b") as fh:  # only the first half of the last record reached disk
        fh.seek(start + (end - start) // 2)
        fh.write(b"\0" * (end - start))
    store = reopen(tmp_path)
    assert store.last_index() == 4
    assert store.damage == [] and store.meta.recovering == 0
    store.close()


def test_a_flipped_bit_in_the_last_record_marks_the_peer_recovering(tmp_path):
    store = write(tmp_path, 5)
    seg = store._segments[-1]
    path, start = seg.path, seg.offsets[-1]
    store.close()
    with open(path, "r+b") as fh:
        fh.seek(start + 20)
        byte = fh.read(1)
        fh.seek(start + 20)
        fh.write(bytes([byte[0] ^ 0x10]))
    store = reopen(tmp_path)
    assert store.last_index() == 4
    assert store.damage and "checksum" in store.damage[0]
    assert store.initial_state()[0] == HardState(3, "x", 3)
    assert read_meta(store.peer_path).recovering == 3  # durable before the peer runs
    store.close()
    again = reopen(tmp_path)  # a second restart keeps the mark (it is the core's to clear)
    assert again.meta.recovering == 3 and again.damage == []
    again.close()


def test_a_short_run_of_zeros_inside_a_record_is_damage_not_a_torn_write(tmp_path):
    store = write(tmp_path, 3)
    seg = store._segments[-1]
    path, end = seg.path, seg.end
    store.close()
    with open(path, "r+b") as fh:  # the record's last 2 bytes zeroed
        fh.seek(end - 2)
        fh.write(b"\0\0")
    store = reopen(tmp_path)
    assert store.meta.recovering == 3 and store.last_index() == 2
    store.close()


def test_a_zero_filled_newest_segment_marks_the_peer_recovering(tmp_path):
    store = write(tmp_path, 80)  # several segments of 4 KiB
    assert len(store._segments) > 2
    newest = store._segments[-1]
    path, first = newest.path, newest.first_index
    store.close()
    size = path.stat().st_size
    path.write_bytes(b"\0" * size)
    store = reopen(tmp_path)
    assert store.last_index() == first - 1
    assert store.meta.recovering == 3
    assert any("header" in d for d in store.damage)
    assert store.meta.newest_segment == store._segments[-1].first_index
    store.close()


def test_a_deleted_newest_segment_marks_the_peer_recovering(tmp_path):
    store = write(tmp_path, 80)
    path, first = last_segment(store), store._segments[-1].first_index
    store.close()
    path.unlink()
    store = reopen(tmp_path)
    assert store.last_index() == first - 1
    assert store.meta.recovering == 3
    assert any("missing" in d for d in store.damage)
    store.close()
    assert reopen(tmp_path).damage == []  # recorded once; the mark stays


def test_a_segment_a_crash_never_finished_creating_is_not_damage(tmp_path):
    store = write(tmp_path, 10)
    nxt = store._segments[-1].last_index + 1
    store.close()
    # the roll created the file (header half written) but died before the metadata said so
    stray = store.log_path / f"{nxt:020d}.seg"
    stray.write_bytes(b"ZRSE" + b"\0" * (SEGMENT_HEADER_SIZE + 100))
    store = reopen(tmp_path)
    assert store.damage == [] and store.meta.recovering == 0
    assert store.last_index() == 10 and not stray.exists()
    store.close()


def test_rolls_truncations_and_installs_keep_the_newest_segment_recorded(tmp_path):
    store = write(tmp_path, 80)
    assert store.meta.newest_segment == store._segments[-1].first_index
    cut = store._segments[-2].first_index  # truncation deletes the newest segment
    store.truncate_from(cut)
    assert store.meta.newest_segment == store._segments[-1].first_index
    store.close()
    reopened = reopen(tmp_path)
    assert reopened.damage == [] and reopened.last_index() == cut - 1
    reopened.close()
