"""SyncService: one group commit for the logs of every group of a node.

Why: each group's log writer used to fdatasync its own segment, so a node with N groups
being written made about N fsyncs per batch time; on this machine 100 files cost 24 ms
with one fdatasync each and 1.8 ms with one syncfs(2). See docs/internals.md.

Rules:
- `sync(fds)` returns only once every byte written to those descriptors before the call
  is on disk (or raises OSError): the caller may then acknowledge it.
- Group commit without a sync thread: the first caller that finds no sync running does
  the sync itself, for its own files and those of every caller that arrived meanwhile;
  callers arriving while a sync runs wait for the next one (a sync that started before
  their writes cannot cover them), and one of them runs it. A lone writer thus syncs at
  once on its own thread (no hand-off, no batching delay).
- A batch of at most ``syncfs_after`` files is made durable with one fdatasync per file
  (the lone-writer path, as before); a larger batch with one ``syncfs(2)`` per file
  system holding its files. So a batch costs at most ``syncfs_after`` fsync calls,
  however many groups are in it, and fsyncs per second no longer grow with the number
  of active groups.
- syncfs caveats: it flushes every dirty file of that file system (other programs' too),
  and it reports a write-back error once per open file description (Linux >= 5.8), not
  per file: an error may surface in a batch that did not write the failing file, and the
  batch that did could then see none. So the first syncfs error fails its whole batch and
  switches the service to one fdatasync per file for the rest of the process: each
  descriptor then reports its own file's error (the kernel keeps an unseen error for
  descriptors opened later, too). Without a syncfs that reports errors (not Linux, or
  Linux before 5.8) it is fdatasync per file.
- ``metadata=True`` asks for fsync rather than fdatasync in the per-file path: for a
  directory (a create, rename or unlink in it) and the metadata file's temp copy.
- Counters (`stats`): requests, batches, fsync calls made (fdatasync + syncfs).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import platform
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

#: Batches with more files than this use syncfs (when available).
DEFAULT_SYNCFS_AFTER = 2


def _reports_errors(release: str) -> bool:
    """syncfs(2) returns write-back errors only since Linux 5.8 (before, it returns 0 even
    when data was lost): only then may it stand in for fdatasync."""
    parts = release.split(".")
    try:
        return (int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)) >= (5, 8)
    except (ValueError, IndexError):
        return False


def _load_syncfs() -> Callable[[int], None] | None:
    if sys.platform != "linux" or not _reports_errors(platform.release()):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        raw = libc.syncfs
    except (OSError, AttributeError):
        return None
    raw.argtypes = [ctypes.c_int]
    raw.restype = ctypes.c_int

    def syncfs(fd: int) -> None:
        if raw(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs: {os.strerror(err)}")

    return syncfs


_SYNCFS = _load_syncfs()


class SyncService:
    """Node-wide group commit; see the module docstring."""

    def __init__(self, syncfs_after: int = DEFAULT_SYNCFS_AFTER,
                 syncfs: Callable[[int], None] | None = _SYNCFS,
                 fdatasync: Callable[[int], None] | None = None) -> None:
        self.syncfs_after = syncfs_after
        self._syncfs = syncfs
        self._fdatasync = fdatasync
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[tuple[int, bool]] = []  # (descriptor, fsync its metadata too)
        self._gen = 1          # the batch that requests arriving now belong to
        self._done = 0         # the last batch finished
        self._running = False
        # batch -> (error of the whole batch, or of single files by descriptor)
        self._errors: dict[int, tuple[OSError | None, dict[int, OSError]]] = {}
        self._waiters: dict[int, int] = {}  # batch -> callers still to see its outcome
        self.requests = 0
        self.batches = 0
        self.fdatasyncs = 0
        self.syncfs_calls = 0
        self.largest_batch = 0

    @property
    def uses_syncfs(self) -> bool:
        return self._syncfs is not None

    def sync(self, fds: Sequence[int], *, metadata: bool = False) -> None:
        """Make what was written to ``fds`` durable (see the rules); OSError if not."""
        if not fds:
            return
        with self._cond:
            self.requests += 1
            if not self._running and not self._pending and len(fds) <= self.syncfs_after:
                # the lone writer: nobody to share with, sync its own files at once
                self._running = True
                gen = self._gen
                self._gen += 1
                lone = True
            else:
                lone = False
        if lone:
            try:
                self.batches += 1
                self.fdatasyncs += len(fds)
                for fd in fds:
                    if metadata:
                        os.fsync(fd)
                    else:
                        (self._fdatasync or os.fdatasync)(fd)
            finally:
                with self._cond:
                    self._running = False
                    self._done = gen
                    self._cond.notify_all()
            return
        with self._cond:
            gen = self._gen
            self._pending.extend((fd, metadata) for fd in fds)
            self._waiters[gen] = self._waiters.get(gen, 0) + 1
            while self._done < gen and self._running:
                self._cond.wait()
            if self._done < gen:  # nobody runs batch `gen`: this caller does
                self._running = True
                batch, self._pending = self._pending, []
                self._gen += 1
                leader = True
            else:
                leader = False
        if leader:
            outcome: tuple[OSError | None, dict[int, OSError]] | None = (
                OSError(errno.EIO, "log sync did not complete"), {})
            try:
                outcome = self._run(batch)
            finally:  # whatever happens, the waiters are released (with an error)
                with self._cond:
                    self._running = False
                    self._done = gen
                    if outcome is not None:
                        self._errors[gen] = outcome
                    self._cond.notify_all()
        with self._cond:
            error = None
            found = self._errors.get(gen)
            if found is not None:
                whole, per_file = found
                error = whole or next((per_file[fd] for fd in fds if fd in per_file), None)
            left = self._waiters[gen] - 1
            if left:
                self._waiters[gen] = left
            else:
                del self._waiters[gen]
                self._errors.pop(gen, None)
        if error is not None:
            raise OSError(error.errno, error.strerror or str(error))

    def sync_dir(self, path: str | os.PathLike[str]) -> None:
        """Make a create, rename or unlink inside directory ``path`` durable."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self.sync([fd], metadata=True)
        finally:
            os.close(fd)

    def _run(self, batch: list[tuple[int, bool]]) -> tuple[OSError | None,
                                                         dict[int, OSError]] | None:
        """Sync a batch: None, or (an error for all, errors of single descriptors)."""
        unique: dict[int, bool] = {}
        for fd, metadata in batch:
            unique[fd] = unique.get(fd, False) or metadata
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(unique))
        if self._syncfs is not None and len(unique) > self.syncfs_after:
            try:
                self._sync_filesystems(list(unique))
            except OSError as exc:
                return exc, {}
            return None
        fdatasync = self._fdatasync or os.fdatasync
        failed: dict[int, OSError] = {}
        for fd, metadata in unique.items():  # each file's error goes to its callers
            self.fdatasyncs += 1
            try:
                if metadata:
                    os.fsync(fd)
                else:
                    fdatasync(fd)
            except OSError as exc:
                failed[fd] = exc
        return (None, failed) if failed else None

    def _sync_filesystems(self, fds: list[int]) -> None:
        devices: dict[int, int] = {}
        for fd in fds:
            devices.setdefault(os.fstat(fd).st_dev, fd)
        syncfs = self._syncfs
        assert syncfs is not None
        for fd in devices.values():
            self.syncfs_calls += 1
            try:
                syncfs(fd)
            except OSError:
                log.error("syncfs failed: every later log sync of this process uses one "
                          "fdatasync per file, so each file reports its own write error")
                self._syncfs = None
                raise

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "batches": self.batches,
                "fsyncs": self.fdatasyncs + self.syncfs_calls,
                "fdatasyncs": self.fdatasyncs, "syncfs": self.syncfs_calls,
                "largest_batch": self.largest_batch,
                "mode": "syncfs" if self._syncfs is not None else "fdatasync"}


#: The service a DiskLogStorage uses unless given another (a node passes its own).
SHARED_SYNC = SyncService()

__all__ = ["DEFAULT_SYNCFS_AFTER", "SHARED_SYNC", "SyncService"]
