"""Byte-level formats shared by the log and the metadata, plus the fsync helpers.

Rules:
- A record is ``length:u32 | crc32(payload):u32 | payload`` (big-endian). A length of 0 is
  never written, so a zero header means "no record here" (preallocated zero padding).
- An entry payload is the msgpack array ``[index, term, type, data, time]``; a CONFIG entry's
  data packs as ``[old, new]``. Entries are NamedTuples, so msgpack packs them directly.
- Every payload of an entry starts with the byte 0x95 (a 5-element fixarray); the corruption
  scanner uses that to reject most garbage offsets before computing a CRC.
- Durability helpers (`fsync_dir`, `preallocate`) live here so tests can count them.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from collections.abc import Iterable
from typing import Any

import msgpack

from zraft.core.entries import Entry

RECORD_HEADER = struct.Struct(">II")
HEADER_SIZE = RECORD_HEADER.size
#: Upper bound for one record; anything larger is garbage in a length field.
MAX_RECORD_SIZE = 1 << 30
ENTRY_MARKER = 0x95

SEGMENT_MAGIC = b"ZRSEG\x00\x00\x01"
SEGMENT_HEADER = struct.Struct(">8sQ")  # magic, first index
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size


def frame(payload: bytes) -> bytes:
    """Wrap one payload as a record."""
    return RECORD_HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def pack_entry(entry: Entry) -> bytes:
    return msgpack.packb(entry, use_bin_type=True)


def unpack_entry(payload: bytes | memoryview) -> Entry:
    """Decode an entry payload; raises ValueError on anything that is not a valid entry."""
    try:
        raw = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        entry = Entry.from_wire(raw)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ValueError(f"undecodable entry payload: {exc}") from exc
    if not (isinstance(entry.index, int) and isinstance(entry.term, int)) or entry.index < 1:
        raise ValueError("entry payload has a bad index or term")
    return entry


def encode_entries(entries: Iterable[Entry]) -> tuple[bytes, list[int]]:
    """Frame entries back to back; returns the bytes and each record's length."""
    parts: list[bytes] = []
    sizes: list[int] = []
    pack = RECORD_HEADER.pack
    crc = zlib.crc32
    for entry in entries:
        payload = msgpack.packb(entry, use_bin_type=True)
        parts.append(pack(len(payload), crc(payload)))
        parts.append(payload)
        sizes.append(HEADER_SIZE + len(payload))
    return b"".join(parts), sizes


def read_record(buf: bytes | memoryview, offset: int) -> tuple[bytes, int] | None:
    """The payload at `offset` and the offset after it, or None if no valid record is there."""
    if offset + HEADER_SIZE > len(buf):
        return None
    length, crc = RECORD_HEADER.unpack_from(buf, offset)
    start = offset + HEADER_SIZE
    if length == 0 or length > MAX_RECORD_SIZE or start + length > len(buf):
        return None
    payload = bytes(buf[start : start + length])
    if zlib.crc32(payload) != crc:
        return None
    return payload, start + length


def find_valid_entry_after(buf: bytes, offset: int, min_index: int) -> int | None:
    """Offset of the first valid entry record after `offset` with index >= min_index.

    Used after a bad record to tell a torn tail (nothing valid follows) from corruption in
    the middle of the log (valid records follow). Candidates must carry the entry marker
    byte right after the header, which skips almost every garbage offset cheaply.
    """
    pos = offset + 1
    end = len(buf)
    while True:
        marker = buf.find(bytes((ENTRY_MARKER,)), pos + HEADER_SIZE)
        if marker < 0 or marker > end:
            return None
        candidate = marker - HEADER_SIZE
        found = read_record(buf, candidate)
        if found is not None:
            try:
                entry = unpack_entry(found[0])
            except ValueError:
                entry = None
            if entry is not None and entry.index >= min_index:
                return candidate
        pos = candidate + 1


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename, create or unlink inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def preallocate(fd: int, offset: int, length: int) -> bool:
    """Reserve disk blocks (zero-filled) so appends do not change the file size."""
    if length <= 0 or not hasattr(os, "posix_fallocate"):
        return False
    try:
        os.posix_fallocate(fd, offset, length)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return False
        raise
    return True


def is_all_zero(buf: bytes, start: int = 0) -> bool:
    return buf.count(0, start) == len(buf) - start


def as_wire(obj: Any) -> Any:
    """NamedTuples to plain lists, for msgpack maps that must round-trip exactly."""
    if isinstance(obj, tuple):
        return [as_wire(x) for x in obj]
    return obj
