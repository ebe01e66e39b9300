"""A process-wide cap on open segment files: the least recently used clean ones are closed.

Why: ten thousand groups with a segment file each would need ten thousand descriptors
(``ulimit -n`` is often 1024); only the groups being written or read need theirs open.

Rules:
- A `Segment` asks for its descriptor with `acquire` (opening the file again if it was
  closed) and gives it back with `release`; between the two it is *pinned* and never
  closed, so a pread/pwrite/fdatasync can never hit a descriptor another thread closed
  (and the kernel may have reused). One lock guards every open, close and pin count.
- Beyond ``limit`` open files, the least recently used segments that are neither pinned
  nor dirty (written but not yet synced) are closed. A dirty segment stays open until
  its sync: its durability is only ever checked through the descriptor that wrote it
  (write-back errors are reported per open file), so that descriptor must live until
  then. The cap can thus be passed while many groups have writes in flight.
- Closing a clean segment loses nothing: its bytes are on disk (or in the page cache,
  already synced); reopening costs one ``open``.
"""

from __future__ import annotations

import os
import resource
import threading
from collections import OrderedDict
from typing import Protocol


class CachedFile(Protocol):
    path: os.PathLike[str] | str
    fd: int
    pins: int
    dirty: bool


def default_limit() -> int:
    """A quarter of the soft ``RLIMIT_NOFILE`` (sockets and backends need the rest), at
    most 1024 and at least 16."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        soft = 1024
    if soft == resource.RLIM_INFINITY:
        soft = 4096
    return max(16, min(1024, soft // 4))


class FdCache:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("FdCache limit must be >= 1")
        self.limit = limit
        self._lock = threading.Lock()
        self._open: OrderedDict[CachedFile, None] = OrderedDict()  # LRU first
        #: counters for tests and node_status
        self.reopens = 0
        self.closes = 0

    def adopt(self, item: CachedFile) -> None:
        """Track a file opened by its owner (``item.fd`` >= 0)."""
        with self._lock:
            self._open[item] = None
            self._trim_locked(keep=item)

    def acquire(self, item: CachedFile) -> int:
        """The open descriptor of ``item``, pinned until `release`."""
        with self._lock:
            if item.fd < 0:
                item.fd = os.open(item.path, os.O_RDWR)
                self.reopens += 1
                self._open[item] = None
                item.pins += 1
                self._trim_locked(keep=item)
            else:
                item.pins += 1
                self._open.move_to_end(item)
            return item.fd

    def release(self, item: CachedFile) -> None:
        with self._lock:
            item.pins -= 1

    def close(self, item: CachedFile) -> None:
        """The owner is done with ``item`` (closed or deleted)."""
        with self._lock:
            self._open.pop(item, None)
            if item.fd >= 0:
                fd, item.fd = item.fd, -1
                os.close(fd)

    @property
    def open_files(self) -> int:
        return len(self._open)

    def _trim_locked(self, keep: CachedFile) -> None:
        excess = len(self._open) - self.limit
        if excess <= 0:
            return
        victims = []
        for item in self._open:
            if item is not keep and item.pins == 0 and not item.dirty:
                victims.append(item)
                if len(victims) == excess:
                    break
        for item in victims:
            del self._open[item]
            fd, item.fd = item.fd, -1
            os.close(fd)
            self.closes += 1


#: The cache every DiskLogStorage uses unless given another.
SEGMENT_FILES = FdCache(default_limit())

__all__ = ["SEGMENT_FILES", "FdCache", "default_limit"]
