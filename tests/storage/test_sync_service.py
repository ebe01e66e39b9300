"""SyncService: one group commit for every group's log. A call returns only after a sync
that started after it; a lone writer syncs at once; a crash at any moment keeps every
acknowledged entry of every group (checked against a model of what reached the disk)."""

from __future__ import annotations

import errno
import os
import random
import stat
import threading
import time
from pathlib import Path

import pytest

from zraft.core.entries import DATA, Entry
from zraft.storage import DiskLogStorage
from zraft.storage.segment_file import Segment
from zraft.storage.sync_service import SyncService

WAIT_S = 10.0


def wait_until(predicate, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def data(index: int, size: int = 60) -> Entry:
    return Entry(index, 1, DATA, bytes([index % 251]) * size, index)


class GatedSync:
    """A fake syncfs/fdatasync that records calls and blocks until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.gates: list[threading.Event] = []
        self.lock = threading.Lock()

    def _enter(self, kind: str, fd: int) -> None:
        gate = threading.Event()
        with self.lock:
            self.calls.append((kind, fd))
            self.gates.append(gate)
        assert gate.wait(WAIT_S)

    def syncfs(self, fd: int) -> None:
        self._enter("syncfs", fd)

    def fdatasync(self, fd: int) -> None:
        self._enter("fdatasync", fd)

    def release(self, k: int) -> None:
        wait_until(lambda: len(self.gates) > k)
        self.gates[k].set()


def run(service: SyncService, fds: list[int], done: list[int], errors: list[OSError],
        tag: int) -> threading.Thread:
    def body() -> None:
        try:
            service.sync(fds)
            done.append(tag)
        except OSError as exc:
            errors.append(exc)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def test_lone_writer_syncs_its_own_file_at_once():
    fake = GatedSync()
    service = SyncService(syncfs=fake.syncfs, fdatasync=fake.fdatasync)
    done: list[int] = []
    t = run(service, [7], done, [], 1)
    fake.release(0)
    t.join(WAIT_S)
    assert done == [1]
    assert fake.calls == [("fdatasync", 7)]  # no syncfs, no waiting for company
    assert service.stats()["fsyncs"] == 1


def test_callers_arriving_during_a_sync_share_the_next_one():
    fake = GatedSync()
    service = SyncService(syncfs=fake.syncfs, fdatasync=fake.fdatasync, syncfs_after=2)
    done: list[int] = []
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(6)]
    first = run(service, [fds[0]], done, [], 0)
    wait_until(lambda: len(fake.calls) == 1)  # batch 1 runs, blocked in its fdatasync
    others = [run(service, [fds[k + 1]], done, [], k + 1) for k in range(5)]
    wait_until(lambda: service.requests == 6)
    fake.release(0)
    first.join(WAIT_S)
    # batch 2 started (for the five): none of them returned on batch 1, which began
    # before their writes
    wait_until(lambda: len(fake.calls) == 2)
    assert done == [0]
    assert fake.calls[1][0] == "syncfs"  # five files: one syncfs, not five fdatasyncs
    fake.release(1)
    for t in others:
        t.join(WAIT_S)
    assert sorted(done) == [0, 1, 2, 3, 4, 5]
    assert service.stats()["batches"] == 2 and service.stats()["fsyncs"] == 2
    for fd in fds:
        os.close(fd)


def test_a_syncfs_error_fails_its_batch_and_switches_to_fdatasync_per_file(monkeypatch, caplog):
    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    synced: list[int] = []
    gate = threading.Event()

    def slow_fdatasync(fd: int) -> None:
        synced.append(fd)
        if fd == 100:
            assert gate.wait(WAIT_S)

    service = SyncService(syncfs=broken, fdatasync=slow_fdatasync, syncfs_after=2)
    done: list[int] = []
    errors: list[OSError] = []
    first = run(service, [100], done, errors, 0)
    wait_until(lambda: synced == [100])
    others = [run(service, [os.open(os.devnull, os.O_RDONLY)], done, errors, k + 1)
              for k in range(3)]
    wait_until(lambda: service.requests == 4)
    gate.set()
    for t in (first, *others):
        t.join(WAIT_S)
    assert done == [0] and len(errors) == 3
    assert all(e.errno == errno.EIO for e in errors)
    assert service.stats()["mode"] == "fdatasync"
    # later batches: one fdatasync per file, so each file reports its own error
    t = [run(service, [200 + k], done, errors, 10 + k) for k in range(3)]
    for x in t:
        x.join(WAIT_S)
    assert {200, 201, 202} <= set(synced)


def test_a_failed_fdatasync_fails_only_the_callers_of_that_file():
    gate = threading.Event()

    def fdatasync(fd: int) -> None:
        if fd == 100:
            assert gate.wait(WAIT_S)
        if fd == 13:
            raise OSError(errno.EIO, "Input/output error")

    service = SyncService(syncfs=None, fdatasync=fdatasync)
    done: list[int] = []
    errors: list[OSError] = []
    first = run(service, [100], done, errors, 0)
    wait_until(lambda: service.batches == 1)
    others = [run(service, [fd], done, errors, fd) for fd in (12, 13, 14)]
    wait_until(lambda: service.requests == 4)
    gate.set()
    for t in (first, *others):
        t.join(WAIT_S)
    assert sorted(done) == [0, 12, 14]
    assert [e.errno for e in errors] == [errno.EIO]


# ---------------------------------------------------------------- crash at any moment


class DiskImage:
    """What would survive a power cut: a file's bytes as of its last fsync/fdatasync (or
    syncfs of the whole tree), a directory's entries as of its last fsync."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()  # writers hold it too: images are never torn
        self.inodes: dict[int, bytes] = {}
        self.dirs: dict[str, dict[str, tuple[int, bool]]] = {}

    def fd_synced(self, fd: int) -> None:
        with self.lock:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                self._dir(os.readlink(f"/proc/self/fd/{fd}"))
            else:  # through the path: the descriptor may be write-only
                with open(f"/proc/self/fd/{fd}", "rb") as fh:
                    self.inodes[st.st_ino] = fh.read()

    def _dir(self, path: str) -> None:
        entries = {}
        for name in os.listdir(path):
            try:
                st = os.lstat(os.path.join(path, name))
            except FileNotFoundError:  # renamed or removed meanwhile
                continue
            entries[name] = (st.st_ino, stat.S_ISDIR(st.st_mode))
        self.dirs[path] = entries

    def everything(self, _fd: int) -> None:
        with self.lock:
            for dirpath, _dirs, files in os.walk(self.root):
                self._dir(dirpath)
                for name in files:
                    try:
                        with open(os.path.join(dirpath, name), "rb") as fh:
                            self.inodes[os.fstat(fh.fileno()).st_ino] = fh.read()
                    except FileNotFoundError:  # renamed or removed meanwhile
                        continue

    def check_durable(self, segment) -> None:
        """The image holds the segment's records up to its end (what was just acked)."""
        with self.lock:
            ino = os.stat(segment.path).st_ino
            on_disk = segment.path.read_bytes()[:segment.end]
            if self.inodes.get(ino, b"")[:segment.end] != on_disk:
                raise AssertionError(f"acknowledged before durable: {segment.path.name}")

    def materialize(self, dest: Path) -> None:
        """Write the surviving tree under ``dest`` (only what fsynced entries reach)."""
        with self.lock:
            def build(src: str, out: Path) -> None:
                out.mkdir(parents=True, exist_ok=True)
                for name, (ino, is_dir) in self.dirs.get(src, {}).items():
                    if is_dir:
                        build(os.path.join(src, name), out / name)
                    else:
                        (out / name).write_bytes(self.inodes.get(ino, b""))

            build(str(self.root), dest)


@pytest.mark.parametrize("syncfs_after", [2, 100])  # syncfs batches / fdatasync per file
def test_crash_during_group_commits_keeps_every_acknowledged_entry(tmp_path, monkeypatch,
                                                                   syncfs_after):
    root = tmp_path / "data"
    root.mkdir()
    image = DiskImage(root)
    image.everything(0)
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        image.fd_synced(fd)

    def fdatasync(fd: int) -> None:  # e.g. a full segment's, when it rolls
        real_fdatasync(fd)
        image.fd_synced(fd)

    def slow(record):
        def sync(fd: int) -> None:
            time.sleep(0.001)  # widen the window in which other groups write
            record(fd)
        return sync

    real_write = Segment.write

    def write(self, blob, sizes):  # a write is never imaged half done
        with image.lock:
            real_write(self, blob, sizes)

    monkeypatch.setattr(Segment, "write", write)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    service = SyncService(syncfs=slow(image.everything), fdatasync=slow(image.fd_synced),
                          syncfs_after=syncfs_after)
    groups = 6
    stores = [DiskLogStorage.open(root, f"g{k}@127.0.0.1:1", max_segment_size=4096,
                                  sync_service=service) for k in range(groups)]
    acked = [0] * groups
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer(k: int) -> None:
        rng = random.Random(k)
        index = 0
        try:
            while not stop.is_set():
                n = rng.randint(1, 4)
                stores[k].stage_append([data(i) for i in range(index + 1, index + n + 1)])
                index += n
                stores[k].sync()
                acked[k] = index  # acknowledged: must survive any crash from now on
                image.check_durable(stores[k]._segments[-1])
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(groups)]
    for t in threads:
        t.start()
    crashes = []
    for c in range(2):  # crash (take the surviving image) while commits are in flight
        wait_until(lambda c=c: failures or min(acked) > 30 * (c + 1))
        assert not failures, failures
        promised = list(acked)
        dest = tmp_path / f"crash{c}"
        image.materialize(dest)
        crashes.append((dest, promised))
    stop.set()
    for t in threads:
        t.join(WAIT_S)
    assert not failures, failures
    assert service.stats()["batches"] < sum(acked)  # commits were shared
    for store in stores:
        store.close()
    for dest, promised in crashes:
        for k in range(groups):
            recovered = DiskLogStorage.open(dest, f"g{k}@127.0.0.1:1", max_segment_size=4096,
                                            sync_service=SyncService())
            last = recovered.last_index()
            assert last >= promised[k], f"group {k} lost acknowledged entries"
            assert recovered.entries(1, last + 1) == [data(i) for i in range(1, last + 1)]
            recovered.close()


def test_syncfs_is_used_only_where_it_reports_write_errors():
    from zraft.storage.sync_service import _reports_errors

    assert _reports_errors("6.18.44-fc-v1147") and _reports_errors("5.8.0")
    assert not _reports_errors("5.4.0-150-generic") and not _reports_errors("4.19.0")
    assert not _reports_errors("garbage")


def test_an_unexpected_failure_in_a_sync_releases_every_waiter():
    gate = threading.Event()

    def fdatasync(fd: int) -> None:
        if fd == 100:
            assert gate.wait(WAIT_S)
            raise RuntimeError("bug")

    service = SyncService(syncfs=None, fdatasync=fdatasync)
    done: list[int] = []
    errors: list[OSError] = []
    raised: list[BaseException] = []

    def lead() -> None:
        try:
            service.sync([100])
        except RuntimeError as exc:
            raised.append(exc)

    leader = threading.Thread(target=lead, daemon=True)
    leader.start()
    wait_until(lambda: service.batches == 1)
    waiter = run(service, [5], done, errors, 5)
    wait_until(lambda: service.requests == 2)
    gate.set()
    leader.join(WAIT_S)
    waiter.join(WAIT_S)
    assert len(raised) == 1
    assert done == [5]  # the next batch ran: the service is not stuck
