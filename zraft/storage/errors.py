"""Storage exceptions.

Rules:
- Out-of-range requests raise subclasses of the core's ``StorageError`` (what the core and
  ``MemoryStorage`` use); damaged files raise ``DiskStorageError`` subclasses.
- A `CorruptLogError` (or `CorruptMetaError`) means durable data is damaged in a way
  recovery must not paper over; its message is one line naming the file and byte offset
  so the node can print it and exit with code 2. Nothing is deleted when one is raised.
"""

from __future__ import annotations

from zraft.core.storage import StorageError as RangeError


class DiskStorageError(Exception):
    """Base class for failures of the files themselves (not out-of-range requests)."""


class LogCompacted(RangeError):
    """The requested index is covered by the snapshot (no longer in the log)."""


class LogUnavailable(RangeError):
    """The requested index is past the durable end of the log, or an append leaves a gap."""


class CorruptLogError(DiskStorageError):
    """A log segment is damaged before its tail; the message names file and offset."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"corrupt log segment {path} at byte offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class CorruptMetaError(DiskStorageError):
    """The Raft metadata file cannot be read or fails its checksum."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"unreadable raft metadata {path}: {reason}")
        self.path = path
        self.reason = reason


class CorruptSnapshotError(DiskStorageError):
    """A snapshot directory does not match its manifest."""


class BackendMismatchError(DiskStorageError):
    """The peer's stored backend differs from the requested one (zraft_lib:
    backend_already_exists)."""
