"""The state machine's part of a snapshot directory.

Layout written by ``SnapshotImage.write(directory)`` (the storage layer adds ``info``):

    <directory>/sessions    msgpack [version, index, term, time, session table bytes]
    <directory>/data/       whatever the backend's snapshot job writes

Rules:
- An image is captured on the state machine's thread (``StateMachine.take_snapshot``); its
  session bytes are a finished copy, and the backend's job reads an immutable view, so
  ``write`` may run on another thread when the job is async (sync jobs: on the state
  machine's thread, before the next apply).
- ``read_machine_state`` refuses a missing or damaged file with ``SnapshotCorrupted``.
- After a write the freed heap is handed back to the OS (``heap_trim``, rate-limited).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from zraft.fsm.backend import SnapshotCorrupted, SnapshotJob
from zraft.fsm.codec import packb, unpackb
from zraft.fsm.heap_trim import request_trim

SESSIONS_FILE = "sessions"
DATA_DIR = "data"
_FORMAT_VERSION = 1


class SnapshotImage(NamedTuple):
    """Everything needed to write a snapshot of the machine at ``index``."""

    index: int
    term: int
    time: int
    sessions: bytes
    job: SnapshotJob

    @property
    def is_async(self) -> bool:
        return self.job.mode == "async"

    def write(self, directory: Path) -> None:
        """Write the session table and run the backend job into ``directory``."""
        directory = Path(directory)
        (directory / DATA_DIR).mkdir(parents=True, exist_ok=True)
        payload = packb([_FORMAT_VERSION, self.index, self.term, self.time, self.sessions])
        (directory / SESSIONS_FILE).write_bytes(payload)
        self.job.write(directory / DATA_DIR)
        request_trim()


class MachineState(NamedTuple):
    index: int
    term: int
    time: int
    sessions: bytes


def read_machine_state(directory: Path) -> MachineState:
    path = Path(directory) / SESSIONS_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SnapshotCorrupted(f"cannot read {path}: {exc}") from exc
    try:
        version, index, term, time, sessions = unpackb(raw)
    except Exception as exc:
        raise SnapshotCorrupted(f"{path} is corrupted ({type(exc).__name__})") from exc
    if version != _FORMAT_VERSION:
        raise SnapshotCorrupted(f"{path}: unsupported format version {version!r}")
    if not all(type(v) is int for v in (index, term, time)) or not isinstance(sessions, bytes):
        raise SnapshotCorrupted(f"{path}: malformed header")
    return MachineState(index, term, time, sessions)


__all__ = ["DATA_DIR", "SESSIONS_FILE", "MachineState", "SnapshotImage", "read_machine_state"]
