"""Crash shapes on the last batch: whatever part of an unsynced tail reached the disk,
recovery yields a prefix of what was written and never loses what was synced before."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zraft.core.entries import DATA, Entry
from zraft.storage import CorruptLogError, DiskLogStorage, LogWriter

PEER = "crash@127.0.0.1:1"


def entry(index: int, size: int) -> Entry:
    return Entry(index, 1 + index // 7, DATA, bytes([index % 256]) * size, index)


def write_log(root: str, synced: int, tail: int, sizes: list[int]) -> tuple[Path, int, int]:
    """`synced` entries flushed, then a `tail` batch flushed; returns the last segment,
    the byte offset where the tail batch starts in it and where it ends."""
    store = DiskLogStorage.open(root, PEER, max_segment_size=1 << 20)
    writer = LogWriter(store)
    writer.write_batch(entries=[entry(i, sizes[i % len(sizes)]) for i in range(1, synced + 1)])
    tail_start = store._segments[-1].end
    writer.write_batch(entries=[entry(i, sizes[i % len(sizes)])
                                for i in range(synced + 1, synced + tail + 1)])
    tail_end = store._segments[-1].end
    path = store._segments[-1].path
    store.close()
    return path, tail_start, tail_end


@settings(max_examples=50, deadline=None)
@given(synced=st.integers(1, 20), tail=st.integers(1, 20),
       sizes=st.lists(st.integers(0, 300), min_size=1, max_size=5),
       damage=st.sampled_from(["cut", "zeros", "random"]), where=st.floats(0, 1),
       seed=st.integers(0, 2**32))
def test_damaged_tail_recovers_a_prefix(synced, tail, sizes, damage, where, seed):
    with tempfile.TemporaryDirectory() as root:
        path, tail_start, tail_end = write_log(root, synced, tail, sizes)
        cut = tail_start + int(where * (tail_end - tail_start))
        with open(path, "r+b") as fh:
            if damage == "cut":
                fh.truncate(cut)
            else:
                fh.seek(cut)
                length = tail_end - cut
                junk = (b"\x00" * length if damage == "zeros"
                        else random.Random(seed).randbytes(length))
                fh.write(junk)
        store = DiskLogStorage.open(root, PEER, max_segment_size=1 << 20)
        last = store.last_index()
        assert synced <= last <= synced + tail
        assert store.entries(1, last + 1) == [entry(i, sizes[i % len(sizes)])
                                              for i in range(1, last + 1)]
        store.close()


def test_hole_inside_the_last_batch_is_refused_not_silently_dropped(tmp_path):
    # power loss can persist later sectors of an unsynced write and not earlier ones;
    # recovery cannot tell that from damage, so it refuses and names the spot
    path, tail_start, _tail_end = write_log(str(tmp_path), 5, 10, [200])
    with open(path, "r+b") as fh:
        fh.seek(tail_start)
        fh.write(b"\x00" * 300)
    size = os.path.getsize(path)
    with pytest.raises(CorruptLogError) as info:
        DiskLogStorage.open(tmp_path, PEER, max_segment_size=1 << 20)
    assert info.value.offset == tail_start
    assert os.path.getsize(path) == size  # nothing modified
