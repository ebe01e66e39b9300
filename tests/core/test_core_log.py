"""RaftLog and MemoryStorage: terms across the snapshot boundary, unstable tail, conflicts."""

from __future__ import annotations

import pytest

from zraft.core.entries import CONFIG, DATA, ClusterConfig, Entry, SnapshotMeta
from zraft.core.errors import InvariantViolation
from zraft.core.log import RaftLog
from zraft.core.storage import MemoryStorage, StorageError


def E(i: int, t: int, data: object = b"x", typ: int = DATA) -> Entry:
    return Entry(i, t, typ, data, i)


def stored(*terms: int) -> MemoryStorage:
    st = MemoryStorage()
    st.append([E(i, t) for i, t in enumerate(terms, 1)])
    return st


def test_storage_append_truncates_and_rejects_gaps():
    st = stored(1, 1, 2)
    st.append([E(2, 3)])
    assert st.last_index() == 2 and st.term(2) == 3
    with pytest.raises(StorageError):
        st.append([E(5, 3)])


def test_storage_compact_keeps_term_and_config():
    st = MemoryStorage()
    cfg = ClusterConfig.stable(["a"])
    st.append([E(1, 1, cfg, CONFIG), E(2, 1), E(3, 2)])
    st.compact(2)
    assert st.first_index() == 3 and st.term(2) == 1
    assert st.snapshot == SnapshotMeta(2, 1, 1, cfg)
    assert [e.index for e in st.entries(3, 4, 1)] == [3]
    with pytest.raises(StorageError):
        st.term(1)


def test_storage_apply_snapshot_keeps_matching_suffix_only():
    st = stored(1, 1, 2, 2)
    st.apply_snapshot(SnapshotMeta(2, 1))
    assert st.last_index() == 4
    st2 = stored(1, 1, 2, 2)
    st2.apply_snapshot(SnapshotMeta(3, 5))
    assert st2.last_index() == 3 and st2.first_index() == 4


def test_storage_entries_byte_cap_returns_at_least_one():
    st = stored(1, 1, 1)
    assert len(st.entries(1, 4, 1)) == 1
    assert len(st.entries(1, 4, 10_000)) == 3


def test_term_lookup_across_snapshot_boundary():
    st = stored(1, 1, 2, 3)
    st.compact(2)
    log = RaftLog(st, st.snapshot)
    assert log.term(1) is None  # compacted
    assert log.term(2) == 1  # from the snapshot meta
    assert log.term(4) == 3 and log.term(5) is None
    assert log.last_term() == 3 and log.first_index() == 3


def test_last_term_right_after_full_compaction():
    st = stored(1, 2, 2)
    st.compact(3)
    log = RaftLog(st, st.snapshot)
    assert log.last_index() == 3 and log.last_term() == 2


def test_unstable_tail_and_stable_to():
    st = stored(1, 1)
    log = RaftLog(st, st.snapshot)
    log.append([E(3, 2), E(4, 2)])
    assert log.last_index() == 4 and log.stable_last() == 2
    assert log.take_unhanded() == [E(3, 2), E(4, 2)] and not log.has_unhanded()
    st.append([E(3, 2), E(4, 2)])
    log.stable_to(4, 2)
    assert log.stable_last() == 4 and log.term(4) == 2


def test_truncation_below_durable_is_not_durable_until_rewritten():
    st = stored(1, 1, 1, 1)
    log = RaftLog(st, st.snapshot)
    log.append([E(3, 2)])  # conflict at 3
    assert log.last_index() == 3 and log.term(3) == 2
    assert log.stable_last() == 2
    assert log.take_unhanded() == [E(3, 2)]
    log.stable_to(4, 1)  # an old persisted Ready: ignored
    assert log.stable_last() == 2
    st.append([E(3, 2)])
    log.stable_to(3, 2)
    assert log.stable_last() == 3


def test_append_gap_is_invariant_violation():
    log = RaftLog(stored(1), SnapshotMeta())
    with pytest.raises(InvariantViolation):
        log.append([E(3, 1)])


def test_slice_spans_storage_and_unstable_with_byte_cap():
    st = stored(1, 1)
    log = RaftLog(st, st.snapshot)
    log.append([E(3, 1), E(4, 1)])
    assert [e.index for e in log.slice(1, 5, 1 << 20)] == [1, 2, 3, 4]
    one = E(1, 1).size()
    assert [e.index for e in log.slice(2, 5, 2 * one)] == [2, 3]
    assert [e.index for e in log.slice(2, 5, 1)] == [2]


def test_find_conflict_by_term_binary_search():
    log = RaftLog(stored(1, 1, 2, 2, 2, 4, 4), SnapshotMeta())
    assert log.find_conflict_by_term(7, 4) == 7
    assert log.find_conflict_by_term(7, 3) == 5
    assert log.find_conflict_by_term(7, 1) == 2
    assert log.find_conflict_by_term(7, 0) == 0
    assert log.find_conflict_by_term(100, 2) == 5


def test_config_history_rolls_back_on_truncation():
    st = MemoryStorage()
    c1, c2 = ClusterConfig.stable(["a"]), ClusterConfig.joint(["a"], ["a", "b"])
    st.append([E(1, 1, c1, CONFIG)])
    log = RaftLog(st, st.snapshot)
    assert log.config() == (1, c1)
    log.append([E(2, 1), E(3, 1, c2, CONFIG)])
    assert log.config() == (3, c2) and log.config_at(2) == (1, c1)
    log.append([E(3, 2)])  # the config entry is truncated away
    assert log.config() == (1, c1)


def test_restore_discards_or_keeps_suffix():
    st = stored(1, 1, 2, 2)
    log = RaftLog(st, st.snapshot)
    cfg = ClusterConfig.stable(["a", "b"])
    log.restore(SnapshotMeta(3, 2, 1, cfg))
    assert log.first_index() == 4 and log.last_index() == 4 and log.config() == (1, cfg)
    log2 = RaftLog(stored(1, 1, 2, 2), SnapshotMeta())
    log2.restore(SnapshotMeta(6, 3, 1, cfg))
    assert log2.last_index() == 6 and log2.last_term() == 3 and log2.stable_last() == 6


def test_load_scans_config_and_time_from_storage():
    st = MemoryStorage()
    c1 = ClusterConfig.stable(["a", "b"])
    st.append([E(1, 1, c1, CONFIG), Entry(2, 1, DATA, b"", 77)])
    log = RaftLog(st, st.snapshot)
    assert log.config() == (1, c1) and log.last_time == 77
