"""What a group costs in storage: segments reserve space as they fill (not the maximum up
front), and the open segment files of all groups are capped (idle, clean ones closed)."""

from __future__ import annotations

import os
from pathlib import Path

from zraft.core.entries import DATA, Entry
from zraft.storage import DiskLogStorage
from zraft.storage.fd_cache import FdCache
from zraft.storage.segment_file import INITIAL_ALLOCATION, allocation_for
from zraft.storage.sync_service import SyncService

MAX = 10 * 1024 * 1024


def data(index: int, size: int = 1000) -> Entry:
    return Entry(index, 1, DATA, bytes([index % 251]) * size, index)


def open_log(root: Path, peer: str = "cost@127.0.0.1:1", **kw) -> DiskLogStorage:
    return DiskLogStorage.open(root, peer, max_segment_size=kw.pop("max_segment_size", MAX),
                               sync_service=kw.pop("sync_service", SyncService()), **kw)


def seg_path(store: DiskLogStorage) -> Path:
    (name,) = os.listdir(store.log_path)
    return store.log_path / name


def allocated_bytes(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_allocation_doubles_up_to_the_maximum():
    assert allocation_for(16, MAX) == INITIAL_ALLOCATION
    assert allocation_for(INITIAL_ALLOCATION + 1, MAX) == 2 * INITIAL_ALLOCATION
    assert allocation_for(MAX - 1, MAX) == MAX
    assert allocation_for(MAX + 5, MAX) == MAX + 5  # one record larger than the maximum
    assert allocation_for(16, 4096) == 4096  # a small maximum caps the first reservation


def test_new_segment_reserves_little_and_grows_as_it_fills(tmp_path):
    store = open_log(tmp_path)
    store.append([data(1)])
    path = seg_path(store)
    # an idle group's log: 64 KiB on disk, not the 10 MB maximum
    assert os.path.getsize(path) == INITIAL_ALLOCATION
    assert allocated_bytes(path) <= INITIAL_ALLOCATION + 4096
    store.append([data(i) for i in range(2, 200)])  # ~200 KB
    assert os.path.getsize(path) == 4 * INITIAL_ALLOCATION  # 64 -> 128 -> 256 KiB
    store.close()
    reopened = open_log(tmp_path)
    assert reopened.last_index() == 199
    assert reopened.entries(1, 200) == [data(i) for i in range(1, 200)]
    reopened.append([data(200)])  # the reopened segment keeps growing from its size
    reopened.close()
    assert open_log(tmp_path).last_index() == 200


def test_truncation_keeps_a_reservation_sized_for_what_is_left(tmp_path):
    store = open_log(tmp_path)
    store.append([data(i) for i in range(1, 200)])
    store.truncate_from(10)
    path = seg_path(store)
    assert os.path.getsize(path) == INITIAL_ALLOCATION
    with open(path, "rb") as fh:  # nothing of the cut records is left to resurrect
        tail = fh.read()[store._segments[-1].end:]
    assert tail.count(0) == len(tail)
    store.close()
    assert open_log(tmp_path).last_index() == 9


def test_open_segment_files_are_capped_idle_clean_ones_closed(tmp_path):
    files = FdCache(limit=3)
    stores = [open_log(tmp_path, f"p{k}@127.0.0.1:1", files=files) for k in range(8)]
    for k, store in enumerate(stores):
        store.append([data(1, 10 + k)])
    assert files.open_files <= 3
    assert files.closes >= 5
    for k, store in enumerate(stores):  # every log still reads and writes (reopened)
        assert store.entries(1, 2, max_bytes=None) == [data(1, 10 + k)]
        store._cache.clear(1)  # force the next read to the file
        store.append([data(2)])
        assert store.entries(1, 3) == [data(1, 10 + k), data(2)]
    assert files.reopens >= 5
    for store in stores:
        store.close()
    assert files.open_files == 0


def test_a_pinned_or_dirty_segment_is_never_closed_under_its_user(tmp_path):
    files = FdCache(limit=1)
    a = open_log(tmp_path, "a@127.0.0.1:1", files=files)
    a.append([data(1)])
    seg = a._segments[-1]
    fd = seg.acquire_fd()  # e.g. a read in progress on another thread
    b = open_log(tmp_path, "b@127.0.0.1:1", files=files)
    b.append([data(1)])  # over the limit, but `a`'s segment is pinned
    assert seg.fd == fd and os.fstat(fd).st_size > 0
    seg.release_fd()
    a.stage_append([data(2)])  # written, not synced: dirty
    c = open_log(tmp_path, "c@127.0.0.1:1", files=files)
    c.append([data(1)])
    assert seg.fd == fd  # dirty: kept open until its sync
    a.sync()
    d = open_log(tmp_path, "d@127.0.0.1:1", files=files)
    d.append([data(1)])
    assert seg.fd == -1  # clean and idle: closed
    assert a.entries(1, 3) == [data(1), data(2)]
    for store in (a, b, c, d):
        store.close()
