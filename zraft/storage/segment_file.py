"""One segment file of the log: ``<peerdir>/log/<first index, 20 digits>.seg``.

Rules:
- Layout: a 16-byte header (magic ``ZRSEG\\0\\0\\1`` + first index as u64) then records back
  to back (see `framing`); the rest of the file is zero padding from preallocation.
- Preallocation grows with the segment: a new segment reserves ``INITIAL_ALLOCATION``
  (64 KiB, or the maximum if smaller) and an append past the reserved space doubles it,
  up to ``max_size`` (or the end of a record larger than that). An idle group then holds
  64 KiB of log, not the 10 MB maximum; a busy one pays a size change (one metadata
  commit in its next fdatasync) about eight times per 10 MB segment.
- Record k of the file holds entry ``first_index + k``; ``offsets[k]`` is where it starts
  and ``end`` is where the next record will go. Only the last segment of a log is written.
- Reads use ``os.pread`` (positional, so they never disturb the writer) and check CRCs.
- `truncate_from` cuts the file at a record boundary and re-zeroes the rest, so no stale
  record can reappear on recovery; `scan_segment` is the recovery reader.
"""

from __future__ import annotations

import logging
import os
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from zraft.core.entries import Entry
from zraft.storage.errors import CorruptLogError
from zraft.storage.fd_cache import SEGMENT_FILES, FdCache
from zraft.storage.framing import (
    HEADER_SIZE,
    MAX_RECORD_SIZE,
    RECORD_HEADER,
    SEGMENT_HEADER,
    SEGMENT_HEADER_SIZE,
    SEGMENT_MAGIC,
    find_valid_entry_after,
    is_all_zero,
    preallocate,
    unpack_entry,
)
from zraft.storage.sync_service import SHARED_SYNC, SyncService

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".seg"
#: Space a new segment reserves (then doubled as it fills, up to the maximum size).
INITIAL_ALLOCATION = 64 * 1024


def allocation_for(needed: int, max_size: int) -> int:
    """Bytes to reserve for a segment whose data ends at ``needed``: the smallest
    ``INITIAL_ALLOCATION * 2**k`` that holds it, capped at ``max_size`` (never below
    ``needed``: one record may be larger than the maximum)."""
    size = min(INITIAL_ALLOCATION, max_size)
    while size < needed and size < max_size:
        size *= 2
    return max(min(size, max_size), needed)


def segment_name(first_index: int) -> str:
    return f"{first_index:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    stem = name[: -len(SEGMENT_SUFFIX)]
    if name.endswith(SEGMENT_SUFFIX) and len(stem) == 20 and stem.isdigit():
        return int(stem)
    return None


class Segment:
    """A segment file and the offset of each of its records. Its descriptor comes from a
    `FdCache` (closed while the segment is idle and clean, reopened on use)."""

    def __init__(self, path: Path, fd: int, first_index: int, offsets: array, end: int,
                 allocated: int, max_size: int, cache: FdCache) -> None:
        self.path = path
        self.fd = fd
        self.first_index = first_index
        self.offsets = offsets
        self.end = end
        self.allocated = allocated
        self.max_size = max_size
        self.dirty = False
        self.pins = 0
        self.cache = cache
        cache.adopt(self)

    @classmethod
    def create(cls, directory: Path, first_index: int, max_size: int,
               cache: FdCache = SEGMENT_FILES, sync: SyncService = SHARED_SYNC) -> Segment:
        """A new empty segment: header written, space preallocated, file and dir fsynced
        (through ``sync``, so segments created by many groups at once share fsyncs)."""
        path = directory / segment_name(first_index)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.pwrite(fd, SEGMENT_HEADER.pack(SEGMENT_MAGIC, first_index), 0)
            allocated = SEGMENT_HEADER_SIZE
            target = allocation_for(SEGMENT_HEADER_SIZE, max_size)
            if preallocate(fd, SEGMENT_HEADER_SIZE, target - SEGMENT_HEADER_SIZE):
                allocated = target
            sync.sync([fd], metadata=True)
        except BaseException:
            os.close(fd)
            raise
        sync.sync_dir(directory)
        return cls(path, fd, first_index, array("Q"), SEGMENT_HEADER_SIZE, allocated,
                   max_size, cache)

    @classmethod
    def reopen(cls, path: Path, first_index: int, offsets: array, end: int, max_size: int,
               cache: FdCache = SEGMENT_FILES) -> Segment:
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, first_index, offsets, end, size, max_size, cache)

    @property
    def count(self) -> int:
        return len(self.offsets)

    @property
    def last_index(self) -> int:
        """Index of the last record, or first_index - 1 when empty."""
        return self.first_index + len(self.offsets) - 1

    def record_span(self, index: int) -> tuple[int, int]:
        k = index - self.first_index
        start = self.offsets[k]
        stop = self.offsets[k + 1] if k + 1 < len(self.offsets) else self.end
        return start, stop

    def acquire_fd(self) -> int:
        """The descriptor, pinned open until `release_fd` (for a sync done elsewhere)."""
        return self.cache.acquire(self)

    def release_fd(self) -> None:
        self.cache.release(self)

    def write(self, blob: bytes, sizes: list[int]) -> None:
        """Append framed records (not yet durable: `sync` makes them so)."""
        fd = self.cache.acquire(self)
        try:
            self.dirty = True  # before any byte: the cache must not close it until synced
            new_end = self.end + len(blob)
            if new_end > self.allocated:
                self._grow(fd, new_end)
            view = memoryview(blob)
            at = self.end
            while view:  # a regular file may still take a short write (e.g. disk nearly full)
                written = os.pwrite(fd, view, at)
                view = view[written:]
                at += written
        finally:
            self.cache.release(self)
        pos = self.end
        offsets = self.offsets
        for size in sizes:
            offsets.append(pos)
            pos += size
        self.end = pos
        self.allocated = max(self.allocated, pos)

    def _grow(self, fd: int, needed: int) -> None:
        """Reserve zeroed space for data up to ``needed`` (doubling, see the module doc);
        the size change becomes durable with the next fdatasync of the data."""
        target = allocation_for(needed, self.max_size)
        if preallocate(fd, self.allocated, target - self.allocated):
            self.allocated = target

    def mark_synced(self) -> None:
        self.dirty = False

    def sync(self) -> bool:
        if not self.dirty:
            return False
        fd = self.cache.acquire(self)
        try:
            os.fdatasync(fd)
        finally:
            self.cache.release(self)
        self.dirty = False
        return True

    def read(self, lo: int, hi: int) -> list[Entry]:
        """Entries [lo, hi) of this segment, from disk, checking each CRC."""
        if lo >= hi:
            return []
        start = self.offsets[lo - self.first_index]
        stop = self.record_span(hi - 1)[1]
        fd = self.cache.acquire(self)
        try:
            buf = os.pread(fd, stop - start, start)
        finally:
            self.cache.release(self)
        out: list[Entry] = []
        pos = 0
        for index in range(lo, hi):
            length, crc = RECORD_HEADER.unpack_from(buf, pos)
            payload = buf[pos + HEADER_SIZE : pos + HEADER_SIZE + length]
            if len(payload) != length or zlib.crc32(payload) != crc:
                raise CorruptLogError(str(self.path), start + pos, "checksum mismatch on read")
            entry = unpack_entry(payload)
            if entry.index != index:
                raise CorruptLogError(str(self.path), start + pos,
                                      f"read index {entry.index}, expected {index}")
            out.append(entry)
            pos += HEADER_SIZE + length
        return out

    def truncate_from(self, index: int) -> None:
        """Drop records >= index: cut the file there, zero-fill again, fsync (size changed)."""
        k = index - self.first_index
        if k >= len(self.offsets):
            return
        new_end = self.offsets[k]
        del self.offsets[k:]
        self.end = new_end
        self._cut(new_end)

    def repair_tail(self, good_end: int) -> None:
        """Recovery: wipe a torn tail after the last good record."""
        self._cut(good_end)

    def _cut(self, new_end: int) -> None:
        """Cut the file at ``new_end``, reserve zeroed space again (as much as a segment
        of that length would have), fsync: no stale record can reappear on recovery."""
        fd = self.cache.acquire(self)
        try:
            os.ftruncate(fd, new_end)
            self.allocated = new_end
            target = allocation_for(new_end, self.max_size)
            if preallocate(fd, new_end, target - new_end):
                self.allocated = target
            os.fsync(fd)
            self.dirty = False
        finally:
            self.cache.release(self)

    def close(self) -> None:
        self.cache.close(self)

    def delete(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


@dataclass
class SegmentScan:
    """What recovery found in one file."""

    path: Path
    first_index: int
    entries: list[Entry] = field(default_factory=list)
    offsets: array = field(default_factory=lambda: array("Q"))
    good_end: int = SEGMENT_HEADER_SIZE
    bad_offset: int | None = None
    bad_reason: str = ""
    #: True when the damage cannot be a torn write (e.g. a CRC-valid record out of order).
    definitely_corrupt: bool = False
    valid_after_bad: int | None = None
    header_ok: bool = True
    #: the bad record is a prefix of a record followed only by zeros (or the end of the
    #: file): what a write cut short by a crash leaves. Anything else at the tail (a
    #: complete record failing its checksum, data after the zeros) is damage to bytes that
    #: may have been synced, hence acknowledged.
    torn: bool = False

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.entries) - 1

    def error(self) -> CorruptLogError:
        offset = self.bad_offset if self.bad_offset is not None else 0
        reason = self.bad_reason
        if self.valid_after_bad is not None:
            reason += f" (valid records follow at byte offset {self.valid_after_bad})"
        return CorruptLogError(str(self.path), offset, reason)


def scan_segment(path: Path, first_index: int) -> SegmentScan:
    """Read every record of a segment file, stopping at the first bad one."""
    data = path.read_bytes()
    scan = SegmentScan(path, first_index)
    if len(data) < SEGMENT_HEADER_SIZE:
        scan.header_ok = False
        _mark_bad(scan, data, 0, f"file of {len(data)} bytes has no complete header")
        return scan
    magic, header_first = SEGMENT_HEADER.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC or header_first != first_index:
        scan.header_ok = False
        _mark_bad(scan, data, 0, "bad segment header")
        return scan
    pos = SEGMENT_HEADER_SIZE
    expected = first_index
    size = len(data)
    entries = scan.entries
    offsets = scan.offsets
    while True:
        if pos + HEADER_SIZE > size:
            if not is_all_zero(data, pos):
                _mark_bad(scan, data, pos, "partial record header at end of file")
            break
        length, crc = RECORD_HEADER.unpack_from(data, pos)
        if length == 0:
            if crc != 0 or not is_all_zero(data, pos):
                _mark_bad(scan, data, pos, "zero-length record followed by data")
            break
        start = pos + HEADER_SIZE
        if length > MAX_RECORD_SIZE or start + length > size:
            _mark_bad(scan, data, pos, f"record of {length} bytes runs past end of file")
            break
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc:
            _mark_bad(scan, data, pos, "checksum mismatch")
            break
        try:
            entry = unpack_entry(payload)
        except ValueError as exc:
            _mark_bad(scan, data, pos, str(exc), definite=True)
            break
        if entry.index != expected:
            _mark_bad(scan, data, pos, f"record holds index {entry.index}, expected {expected}",
                      definite=True)
            break
        entries.append(entry)
        offsets.append(pos)
        expected += 1
        pos = start + length
        scan.good_end = pos
    return scan


#: A record whose last non-zero byte is at least this far before its declared end counts as
#: cut short (torn); a shorter run of zeros may be the record's own last bytes (msgpack ends
#: an entry with its time stamp), so a checksum failure there counts as damage.
TORN_ZERO_RUN = 4


def _mark_bad(scan: SegmentScan, data: bytes, offset: int, reason: str,
              definite: bool = False) -> None:
    scan.bad_offset = offset
    scan.bad_reason = reason
    scan.definitely_corrupt = definite
    min_index = scan.first_index + len(scan.entries)
    scan.valid_after_bad = find_valid_entry_after(data, offset, min_index)
    scan.torn = not definite and _cut_short(data, offset)


def _cut_short(data: bytes, offset: int) -> bool:
    """Is the record at ``offset`` an unfinished write: its bytes stop (zeros or the end of
    the file follow) at least TORN_ZERO_RUN bytes before the end its header declares, and
    nothing non-zero follows? A header itself cut short counts too."""
    last_nonzero = len(data.rstrip(b"\0"))
    if last_nonzero <= offset:
        return True  # only zeros from here: nothing was written (or the header's start)
    if offset + HEADER_SIZE > len(data):
        return True  # the file ends inside the header
    length, _crc = RECORD_HEADER.unpack_from(data, offset)
    if length == 0 or length > MAX_RECORD_SIZE:
        return False
    declared_end = offset + HEADER_SIZE + length
    return declared_end - last_nonzero >= TORN_ZERO_RUN
