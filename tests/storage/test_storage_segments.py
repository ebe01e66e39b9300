"""DiskLogStorage on real files: rolling, recovery of torn tails, refusal on corruption,
truncation and compaction surviving a reopen, the bounded cache, concurrent reads."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from zraft.core.entries import CONFIG, DATA, NOOP, ClusterConfig, Entry, HardState, SnapshotMeta
from zraft.core.storage import StorageError as RangeError
from zraft.storage import CorruptLogError, CorruptMetaError, DiskLogStorage, LogCompacted
from zraft.storage.errors import BackendMismatchError, LogUnavailable
from zraft.storage.framing import SEGMENT_HEADER_SIZE
from zraft.storage.segment_file import segment_name

PEER = "alpha@127.0.0.1:7000"


def data(index: int, term: int = 1, size: int = 100) -> Entry:
    return Entry(index, term, DATA, bytes([index % 251]) * size, 1000 + index)


def open_log(root: Path, **kw) -> DiskLogStorage:
    kw.setdefault("max_segment_size", 4096)
    return DiskLogStorage.open(root, PEER, **kw)


def segment_files(store: DiskLogStorage) -> list[str]:
    return sorted(os.listdir(store.log_path))


def fill(store: DiskLogStorage, lo: int, hi: int, term: int = 1) -> None:
    store.append([data(i, term) for i in range(lo, hi)])


def test_new_log_is_empty_and_has_metadata(tmp_path):
    store = open_log(tmp_path, backend="dict")
    assert store.first_index() == 1
    assert store.last_index() == 0
    assert store.term(0) == 0
    assert store.initial_state() == (HardState(0, None), SnapshotMeta())
    assert store.meta.backend == "dict"
    assert (store.peer_path / "raft.meta").is_file()
    store.close()


def test_entries_round_trip_all_types(tmp_path):
    store = open_log(tmp_path)
    config = ClusterConfig.joint(["a", "b"], ["b", "c"])
    entries = [Entry(1, 1, CONFIG, config, 5), Entry(2, 1, NOOP, None, 6), data(3, 2)]
    store.append(entries)
    assert store.entries(1, 4) == entries
    store.close()
    reopened = open_log(tmp_path)
    assert reopened.entries(1, 4) == entries
    assert reopened.config_at(3) == (1, config)
    reopened.close()


def test_segment_rolls_at_max_segment_size(tmp_path):
    store = open_log(tmp_path, max_segment_size=1024)
    fill(store, 1, 31)  # ~128 bytes per record -> 7 per 1 KiB segment
    names = segment_files(store)
    assert len(names) >= 4
    for name in names[:-1]:
        # preallocated to the limit and never written past it
        assert os.path.getsize(store.log_path / name) == 1024
    firsts = [int(n.split(".")[0]) for n in names]
    assert firsts[0] == 1 and firsts == sorted(firsts)
    store.close()
    reopened = open_log(tmp_path, max_segment_size=1024)
    assert reopened.last_index() == 30
    assert [e.index for e in reopened.entries(1, 31)] == list(range(1, 31))
    reopened.close()


def test_record_bigger_than_a_segment_gets_its_own_segment(tmp_path):
    store = open_log(tmp_path, max_segment_size=512)
    store.append([data(1), Entry(2, 1, DATA, b"z" * 2000, 0), data(3)])
    assert len(segment_files(store)) == 3
    store.close()
    assert open_log(tmp_path, max_segment_size=512).entries(2, 3)[0].data == b"z" * 2000


def last_segment(store: DiskLogStorage) -> Path:
    return store.log_path / segment_files(store)[-1]


def record_offsets(store: DiskLogStorage) -> list[int]:
    return list(store._segments[-1].offsets)


@pytest.mark.parametrize("damage", ["cut", "garble", "garbage_after"])
def test_torn_tail_is_truncated_with_a_warning(tmp_path, caplog, damage):
    store = open_log(tmp_path, max_segment_size=1 << 20)
    fill(store, 1, 11)
    path = last_segment(store)
    offsets = record_offsets(store)
    end = store._segments[-1].end
    store.close()
    with open(path, "r+b") as fh:
        if damage == "cut":  # the last record was only partly written
            fh.truncate(offsets[-1] + 20)
        elif damage == "garble":  # the last record's payload is garbled
            fh.seek(offsets[-1] + 30)
            fh.write(b"\xff\xfe\xfd")
        else:  # non-zero junk in the zero padding after the last good record
            fh.seek(end + 100)
            fh.write(b"\x13\x37" * 10)
    with caplog.at_level(logging.WARNING, logger="zraft.storage"):
        reopened = open_log(tmp_path, max_segment_size=1 << 20)
    expected_last = 10 if damage == "garbage_after" else 9
    assert reopened.last_index() == expected_last
    assert "torn tail" in caplog.text
    # the repaired log takes new entries and survives another reopen
    fill(reopened, expected_last + 1, expected_last + 3, term=2)
    reopened.close()
    again = open_log(tmp_path, max_segment_size=1 << 20)
    assert again.last_index() == expected_last + 2
    assert again.term(expected_last + 2) == 2
    again.close()


def test_zero_padding_after_last_record_is_a_clean_end(tmp_path, caplog):
    store = open_log(tmp_path, max_segment_size=1 << 16)
    fill(store, 1, 4)
    store.close()
    path = tmp_path / store.peer_path.name / "log" / segment_name(1)
    assert path.stat().st_size == 1 << 16  # preallocated zeros
    with caplog.at_level(logging.WARNING, logger="zraft.storage"):
        assert open_log(tmp_path, max_segment_size=1 << 16).last_index() == 3
    assert "torn" not in caplog.text


def test_zero_header_with_data_after_it_is_a_torn_tail(tmp_path, caplog):
    store = open_log(tmp_path, max_segment_size=1 << 20)
    fill(store, 1, 6)
    path = last_segment(store)
    offsets = record_offsets(store)
    store.close()
    with open(path, "r+b") as fh:  # the header of the last record never reached the disk
        fh.seek(offsets[-1])
        fh.write(b"\x00" * 8)
    with caplog.at_level(logging.WARNING, logger="zraft.storage"):
        assert open_log(tmp_path, max_segment_size=1 << 20).last_index() == 4
    assert "torn tail" in caplog.text


def test_corrupt_middle_record_refuses_to_start_and_deletes_nothing(tmp_path):
    store = open_log(tmp_path, max_segment_size=1 << 20)
    fill(store, 1, 11)
    path = last_segment(store)
    bad = record_offsets(store)[4]
    store.close()
    with open(path, "r+b") as fh:
        fh.seek(bad + 40)
        fh.write(b"\xaa\xbb")
    before = {p: p.read_bytes() for p in path.parent.iterdir()}
    with pytest.raises(CorruptLogError) as info:
        open_log(tmp_path, max_segment_size=1 << 20)
    assert info.value.path == str(path)
    assert info.value.offset == bad
    assert str(path) in str(info.value) and f"offset {bad}" in str(info.value)
    assert "\n" not in str(info.value)
    assert {p: p.read_bytes() for p in path.parent.iterdir()} == before


def test_corrupt_record_in_an_older_segment_refuses_to_start(tmp_path):
    store = open_log(tmp_path, max_segment_size=1024)
    fill(store, 1, 30)
    first = store.log_path / segment_files(store)[0]
    store.close()
    with open(first, "r+b") as fh:  # garble the LAST record of a closed segment
        fh.seek(SEGMENT_HEADER_SIZE + 2 * 128 + 50)
        fh.write(b"\x01\x02\x03")
    with pytest.raises(CorruptLogError) as info:
        open_log(tmp_path, max_segment_size=1024)
    assert info.value.path == str(first)


def test_missing_segment_refuses_to_start(tmp_path):
    store = open_log(tmp_path, max_segment_size=1024)
    fill(store, 1, 30)
    middle = store.log_path / segment_files(store)[1]
    store.close()
    middle.unlink()
    with pytest.raises(CorruptLogError, match="missing"):
        open_log(tmp_path, max_segment_size=1024)


def test_truncate_then_reload_never_resurrects_entries(tmp_path):
    store = open_log(tmp_path, max_segment_size=1024)
    fill(store, 1, 41, term=1)
    # conflict inside a segment and across later segments
    store.append([data(12, 2, size=10), data(13, 2, size=10)])
    assert store.last_index() == 13
    store.close()
    reopened = open_log(tmp_path, max_segment_size=1024)
    assert reopened.last_index() == 13
    assert [e.term for e in reopened.entries(10, 14)] == [1, 1, 2, 2]
    # truncating at a segment's first index removes that segment entirely
    first_of_second = int(segment_files(reopened)[1].split(".")[0])
    reopened.append([data(first_of_second, 3)])
    reopened.close()
    again = open_log(tmp_path, max_segment_size=1024)
    assert again.last_index() == first_of_second
    assert again.term(first_of_second) == 3
    again.close()


def test_truncation_with_nothing_appended_after_it(tmp_path):
    store = open_log(tmp_path)
    fill(store, 1, 11)
    store.truncate_from(6)
    store.sync()
    assert store.last_index() == 5
    assert store.term(5) == 1  # last_term is right, not stale (SPEC 11, 7b)
    store.close()
    assert open_log(tmp_path).last_index() == 5


def test_compaction_then_reload(tmp_path):
    store = open_log(tmp_path, max_segment_size=1024)
    config = ClusterConfig.stable(["a", "b", "c"])
    store.append([Entry(1, 1, CONFIG, config, 0)] + [data(i, 1 + i // 10) for i in range(2, 41)])
    before = segment_files(store)
    store.compact(25)
    after = segment_files(store)
    assert len(after) < len(before)
    assert store.first_index() == 26
    snap = store.snapshot_meta()
    assert snap == SnapshotMeta(25, 3, 1, config)
    assert store.term(25) == 3
    with pytest.raises(LogCompacted):
        store.term(24)
    with pytest.raises(LogCompacted):
        store.entries(25, 27)
    store.close()
    reopened = open_log(tmp_path, max_segment_size=1024)
    assert reopened.first_index() == 26
    assert reopened.last_index() == 40
    assert reopened.initial_state()[1] == snap
    assert [e.index for e in reopened.entries(26, 41)] == list(range(26, 41))
    # compacting everything: last_term comes from the snapshot meta, also after restart
    reopened.compact(40)
    assert reopened.last_index() == 40 and reopened.last_term() == 5
    assert segment_files(reopened) == []
    reopened.close()
    final = open_log(tmp_path, max_segment_size=1024)
    assert (final.first_index(), final.last_index(), final.last_term()) == (41, 40, 5)
    fill(final, 41, 43, term=5)
    assert final.entries(41, 43)[1].index == 42
    final.close()


def test_interrupted_compaction_deletes_leftover_segments_at_open(tmp_path):
    store = open_log(tmp_path, max_segment_size=1024)
    fill(store, 1, 30)
    old_first = store.log_path / segment_files(store)[0]
    saved = old_first.read_bytes()
    store.compact(20)
    store.close()
    assert not old_first.exists()
    old_first.write_bytes(saved)  # as if the crash came between metadata write and unlink
    reopened = open_log(tmp_path, max_segment_size=1024)
    assert not old_first.exists()
    assert (reopened.first_index(), reopened.last_index()) == (21, 29)
    reopened.close()


def test_apply_snapshot_keeps_matching_suffix_and_drops_mismatching_log(tmp_path):
    store = open_log(tmp_path)
    fill(store, 1, 21, term=2)
    store.apply_snapshot(SnapshotMeta(10, 2, 0, ClusterConfig.stable(["a"])))
    assert (store.first_index(), store.last_index()) == (11, 20)
    store.apply_snapshot(SnapshotMeta(15, 3, 0, ClusterConfig.stable(["a"])))
    assert (store.first_index(), store.last_index(), store.last_term()) == (16, 15, 3)
    assert segment_files(store) == []
    store.apply_snapshot(SnapshotMeta(12, 3, 0, ClusterConfig.stable(["a"])))  # stale: ignored
    assert store.first_index() == 16
    store.close()
    reopened = open_log(tmp_path)
    assert (reopened.first_index(), reopened.last_index(), reopened.last_term()) == (16, 15, 3)
    fill(reopened, 16, 18, term=4)
    assert reopened.term(17) == 4
    reopened.close()


def test_hard_state_survives_reopen(tmp_path):
    store = open_log(tmp_path)
    store.set_hard_state(HardState(7, "beta@127.0.0.1:7001"))
    store.close()
    assert open_log(tmp_path).initial_state()[0] == HardState(7, "beta@127.0.0.1:7001")


def test_bounded_cache_reads_old_entries_from_disk(tmp_path):
    store = open_log(tmp_path, max_segment_size=2048, cache_entries=8, cache_bytes=1 << 20)
    fill(store, 1, 101)
    assert len(store._cache) == 8
    reads = store.disk_reads
    assert [e.index for e in store.entries(95, 101)] == list(range(95, 101))
    assert store.disk_reads == reads  # served from the cache
    got = store.entries(3, 60)
    assert [e.index for e in got] == list(range(3, 60))
    assert got[0] == data(3)
    assert store.disk_reads > reads
    # byte cap: at least one entry, never past max_bytes otherwise
    assert len(store.entries(3, 60, max_bytes=1)) == 1
    capped = store.entries(3, 60, max_bytes=5 * data(1).size())
    assert len(capped) == 5
    # the cache is also bounded by bytes
    small = open_log(tmp_path / "b", cache_entries=1000, cache_bytes=3 * data(1).size())
    fill(small, 1, 20)
    assert len(small._cache) == 3
    assert small.entries(1, 20)[0] == data(1)
    store.close()
    small.close()


def test_out_of_range_reads_raise_core_storage_error(tmp_path):
    store = open_log(tmp_path)
    fill(store, 1, 4)
    with pytest.raises(RangeError):
        store.term(4)
    with pytest.raises(LogUnavailable):
        store.entries(2, 6)
    with pytest.raises(RangeError):
        store.append([data(9)])  # gap
    assert store.entries(2, 2) == []
    store.close()


def test_staged_entries_are_invisible_until_sync(tmp_path):
    store = open_log(tmp_path)
    store.stage_append([data(1), data(2)])
    assert store.last_index() == 0
    with pytest.raises(RangeError):
        store.entries(1, 2)
    assert store.sync() == 2
    assert store.last_index() == 2
    store.close()


def test_reads_are_safe_while_the_writer_appends(tmp_path):
    store = open_log(tmp_path, max_segment_size=4096, cache_entries=16)
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                last = store.last_index()
                if last >= 1:
                    got = store.entries(max(1, last - 40), last + 1)
                    assert [e.index for e in got] == list(range(max(1, last - 40), last + 1))
                    assert store.term(last) == 1
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for start in range(1, 1000, 10):
        fill(store, start, start + 10)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors[0]
    store.close()


def test_backend_mismatch_and_missing_meta(tmp_path):
    store = open_log(tmp_path, backend="dict")
    fill(store, 1, 3)
    store.close()
    with pytest.raises(BackendMismatchError):
        open_log(tmp_path, backend="other")
    (store.peer_path / "raft.meta").unlink()
    with pytest.raises(CorruptMetaError, match="missing"):
        open_log(tmp_path)


def test_removed_flag_persists(tmp_path):
    store = open_log(tmp_path)
    store.mark_removed()
    store.close()
    assert open_log(tmp_path).meta.removed is True


def test_config_history_and_last_entry_time_come_from_memory(tmp_path):
    store = open_log(tmp_path, cache_entries=2)
    assert store.config_history() == [] and store.last_entry_time() == 0
    c1, c2 = ClusterConfig.stable(["a"]), ClusterConfig.joint(["a"], ["a", "b"])
    store.append([Entry(1, 1, CONFIG, c1, 10), data(2), Entry(3, 1, CONFIG, c2, 30), data(4)])
    assert store.config_history() == [(1, c1), (3, c2)]
    assert store.last_entry_time() == data(4).time
    store.stage_append([Entry(5, 1, CONFIG, c1, 50)])
    assert store.config_history() == [(1, c1), (3, c2)]  # durable only
    store.sync()
    store.compact(2)
    assert store.config_history() == [(3, c2), (5, c1)]
    store.close()
    reopened = open_log(tmp_path, cache_entries=2)
    assert reopened.config_history() == [(3, c2), (5, c1)]
    assert reopened.last_entry_time() == 50
    reopened.close()


def test_reads_stay_consistent_during_truncation_and_compaction(tmp_path):
    store = open_log(tmp_path, max_segment_size=2048, cache_entries=8)
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]
    read_once = threading.Event()

    def tagged(index: int, term: int) -> Entry:
        return Entry(index, term, DATA, f"{index}:{term}".encode() * 5, index)

    def reader() -> None:
        while not stop.is_set():
            try:
                lo, last = store.first_index(), store.last_index()
                if last < lo:
                    continue
                got = store.entries(lo, last + 1)
                assert [e.index for e in got] == list(range(lo, lo + len(got)))
                for e in got:
                    assert e.data == f"{e.index}:{e.term}".encode() * 5
                reads[0] += 1
                read_once.set()
            except RangeError:
                continue  # the range moved under us (compaction, truncation): fine
            except BaseException as exc:
                errors.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    term = 1
    for round_ in range(60):
        last = store.last_index()
        if round_ % 5 == 4 and last - store.first_index() > 10:
            term += 1
            start = last - 6  # conflict: rewrite the last entries in a new term
        else:
            start = last + 1
        store.append([tagged(i, term) for i in range(start, start + 12)])
        if round_ % 7 == 6:
            store.compact(store.last_index() - 20)
    assert read_once.wait(10), "the reader never completed a read"
    stop.set()
    thread.join(timeout=30)
    assert not errors, errors[0]
    assert reads[0] > 0
    store.close()
