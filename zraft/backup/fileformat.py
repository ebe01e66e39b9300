"""The backup file written by ``zraft snapshot save`` (format 1).

Layout (all integers big-endian)::

    magic     8 bytes   b"ZRBACKUP"
    length    4 bytes   n, the header's size (at most MAX_HEADER)
    header    n bytes   msgpack map, below
    bodies              every listed file's bytes, in the header's order
    checksum  32 bytes  SHA-256 of everything before it

Header: ``format`` (1), ``cluster_id`` (the source cluster), ``index``, ``term``,
``config_index``, ``config`` ([old, new] peer ids), ``backend``, ``source`` (the leader
that took it), ``created_ms``, and ``files``: ``[[path, size, sha256 hex], ...]``, the
snapshot directory's files as the snapshot manifest lists them (``sessions``: the session
table; ``data/...``: the backend's own snapshot files).

Rules: msgpack only (never pickle); `read_backup` checks magic, format, header shape,
paths (relative, no ``..``), the total size (a truncated file says so), the trailing
checksum and every file's sha256 before returning anything, and raises ``BackupCorrupt``
with one line otherwise.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

MAGIC = b"ZRBACKUP"
FORMAT = 1
MAX_HEADER = 16 << 20
MAX_FILES = 100_000
_LEN = struct.Struct(">I")
_DIGEST = 32
_BLOCK = 1 << 20


class BackupCorrupt(Exception):
    """The file is not a complete, intact backup (one-line message)."""


@dataclass(frozen=True)
class BackupFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class BackupHeader:
    cluster_id: str
    index: int
    term: int
    config_index: int
    config: tuple[tuple[str, ...], tuple[str, ...]]
    backend: str
    source: str
    created_ms: int
    files: tuple[BackupFile, ...]

    def to_map(self) -> dict[str, Any]:
        return {"format": FORMAT, "cluster_id": self.cluster_id, "index": self.index,
                "term": self.term, "config_index": self.config_index,
                "config": [list(self.config[0]), list(self.config[1])],
                "backend": self.backend, "source": self.source, "created_ms": self.created_ms,
                "files": [[f.path, f.size, f.sha256] for f in self.files]}

    @classmethod
    def from_map(cls, doc: Any) -> BackupHeader:
        if not isinstance(doc, dict):
            raise BackupCorrupt("header is not a map")
        if doc.get("format") != FORMAT:
            raise BackupCorrupt(f"unsupported format {str(doc.get('format'))[:20]}")
        try:
            old, new = doc["config"]
            files = tuple(BackupFile(*f) for f in doc["files"])
            header = cls(doc["cluster_id"], doc["index"], doc["term"], doc["config_index"],
                         (tuple(old), tuple(new)), doc["backend"], doc["source"],
                         doc["created_ms"], files)
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupCorrupt(f"malformed header ({type(exc).__name__})") from None
        header.check()
        return header

    def check(self) -> None:
        ints = (self.index, self.term, self.config_index, self.created_ms)
        if not all(type(v) is int and v >= 0 for v in ints):
            raise BackupCorrupt("malformed header (index, term or time)")
        texts = (self.cluster_id, self.backend, self.source, *self.config[0], *self.config[1])
        if not all(type(v) is str and len(v) <= 1024 for v in texts) or not self.config[0]:
            raise BackupCorrupt("malformed header (ids or configuration)")
        if len(self.files) > MAX_FILES:
            raise BackupCorrupt("too many files")
        for f in self.files:
            check_path(f.path)
            if type(f.size) is not int or f.size < 0 or type(f.sha256) is not str \
                    or len(f.sha256) != 64:
                raise BackupCorrupt("malformed file entry")

    @property
    def body_size(self) -> int:
        return sum(f.size for f in self.files)


def check_path(rel: Any) -> None:
    """A file path inside a snapshot directory: relative, no ``..``, no empty parts."""
    if type(rel) is not str or not 0 < len(rel) <= 1024 or rel.startswith("/") \
            or any(part in ("", ".", "..") for part in rel.split("/")) or "\\" in rel \
            or "\x00" in rel:
        raise BackupCorrupt("bad file path in header")


class BackupWriter:
    """Writes ``<path>.tmp``, then fsyncs and renames it to ``path`` (``finish``)."""

    def __init__(self, path: str | os.PathLike[str], header: BackupHeader) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self._fh: BinaryIO = open(self.tmp, "wb")  # noqa: SIM115 (closed by finish/abort)
        self._digest = hashlib.sha256()
        packed = msgpack.packb(header.to_map(), use_bin_type=True)
        self.write(MAGIC + _LEN.pack(len(packed)) + packed)

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self._digest.update(data)

    def finish(self) -> None:
        self._fh.write(self._digest.digest())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._fh.close()
        self.tmp.unlink(missing_ok=True)


def read_header(fh: BinaryIO) -> tuple[BackupHeader, int]:
    """The header and the offset of the first body byte (no checksum checked yet)."""
    start = fh.read(len(MAGIC) + _LEN.size)
    if len(start) < len(MAGIC) + _LEN.size or start[: len(MAGIC)] != MAGIC:
        raise BackupCorrupt("not a zraft backup (bad magic)")
    (n,) = _LEN.unpack(start[len(MAGIC):])
    if n > MAX_HEADER:
        raise BackupCorrupt("header too large")
    raw = fh.read(n)
    if len(raw) < n:
        raise BackupCorrupt("truncated (in the header)")
    try:
        doc = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:
        raise BackupCorrupt(f"unreadable header ({type(exc).__name__})") from None
    return BackupHeader.from_map(doc), len(start) + n


def read_backup(path: str | os.PathLike[str]) -> BackupHeader:
    """Verify the whole file (size, checksum, every file's sha256); its header."""
    try:
        with open(path, "rb") as fh:
            header, body_at = read_header(fh)
            expected = body_at + header.body_size + _DIGEST
            actual = os.fstat(fh.fileno()).st_size
            if actual < expected:
                raise BackupCorrupt(f"truncated: {actual} bytes, expected {expected}")
            if actual > expected:
                raise BackupCorrupt(f"{actual - expected} unexpected bytes at the end")
            fh.seek(0)
            digest = hashlib.sha256(fh.read(body_at))
            for f, data in _bodies(fh, header):
                file_digest = hashlib.sha256()
                for block in data:
                    file_digest.update(block)
                    digest.update(block)
                if file_digest.hexdigest() != f.sha256:
                    raise BackupCorrupt(f"checksum mismatch in {f.path}")
            if fh.read(_DIGEST) != digest.digest():
                raise BackupCorrupt("checksum mismatch")
    except OSError as exc:
        raise BackupCorrupt(f"cannot read it: {exc.strerror or exc}") from None
    return header


def iter_files(path: str | os.PathLike[str]
               ) -> Iterator[tuple[BackupFile, Iterator[bytes]]]:
    """Each file and its blocks, in order (call after `read_backup` verified the file)."""
    with open(path, "rb") as fh:
        header, _ = read_header(fh)
        yield from _bodies(fh, header)


def _bodies(fh: BinaryIO, header: BackupHeader
            ) -> Iterator[tuple[BackupFile, Iterator[bytes]]]:
    for f in header.files:
        blocks = _blocks(fh, f.size)
        yield f, blocks
        for _ in blocks:  # the caller may not have read it all
            pass


def _blocks(fh: BinaryIO, size: int) -> Iterator[bytes]:
    left = size
    while left:
        block = fh.read(min(left, _BLOCK))
        if not block:
            raise BackupCorrupt("truncated")
        left -= len(block)
        yield block
