"""SimpleBackend: a Backend whose whole state is one msgpack value (docs/backends.md).

A subclass writes ``apply`` (and ``query``), ``get_state`` and ``set_state``; this class
does the rest of the protocol: snapshots as one msgpack file with a format version,
``install_snapshot`` with version checks, no-op snapshot hooks, and no temporary data
(``apply_in_session`` refuses with ``BadCommand`` unless overridden, ``expire_session``
deletes nothing).

Rules:
- ``snapshot()`` packs ``get_state()`` at once, on the state machine's thread, so the
  snapshot is the state at that index whatever ``apply`` does next; only writing the bytes
  runs on another thread. It costs one msgpack pack of the whole state per snapshot, and
  memory for those bytes: fine for states of a few tens of MB; a bigger state wants its own
  copy-on-write snapshot (the dict backend's).
- The file holds ``{"format": "zraft-simple", "version": snapshot_version, "state": ...}``.
  A snapshot of an older version goes through ``upgrade_state(version, state)`` (default:
  refuse); one of a newer version (written by a newer release of the backend on another
  node) is refused with ``SnapshotCorrupted`` naming both versions: that peer stops, loudly,
  instead of misreading the state (docs/backends.md, "Snapshot versions").
- ``get_state`` must return msgpack-clean values (None, bool, int, float, str, bytes,
  lists, maps, ``zraft.NOT_FOUND``): a tuple comes back as a list, a set cannot be packed
  (the snapshot then fails, logged, and the log keeps every entry meanwhile).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

from zraft.fsm.backend import BadCommand, SnapshotCorrupted, SnapshotJob
from zraft.fsm.codec import packb, unpackb

STATE_FILE = "state.msgpack"
FORMAT = "zraft-simple"


class SimpleBackend:
    """Base class: see the module docstring. Subclasses set ``snapshot_version`` when the
    shape of ``get_state()`` changes, and read older shapes in ``upgrade_state``."""

    snapshot_version: int = 1

    def init(self, peer_id: str) -> None:
        self.peer_id = peer_id

    # -- what a subclass writes -------------------------------------------------------------

    def apply(self, command: Any) -> Any:
        raise BadCommand(f"{type(self).__name__} has no writes")

    def query(self, query: Any) -> Any:
        raise BadCommand(f"{type(self).__name__} has no queries")

    def get_state(self) -> Any:
        """The whole replicated state as one msgpack value."""
        raise NotImplementedError(f"{type(self).__name__}.get_state")

    def set_state(self, state: Any) -> None:
        """Replace the whole state with ``state`` (a value ``get_state`` returned, after a
        msgpack round trip: tuples are lists)."""
        raise NotImplementedError(f"{type(self).__name__}.set_state")

    def upgrade_state(self, version: int, state: Any) -> Any:
        """Turn the state of an older snapshot (``version`` < ``snapshot_version``) into
        the current shape. Default: refuse."""
        raise SnapshotCorrupted(f"{type(self).__name__} cannot read snapshot version "
                                f"{version} (it reads {self.snapshot_version})")

    # -- temporary data: none unless a subclass says otherwise ------------------------------

    def apply_in_session(self, command: Any, session_id: str) -> Any:
        raise BadCommand(f"{type(self).__name__} has no temporary (session-owned) data")

    def expire_session(self, session_id: str) -> Iterable[Hashable]:
        return ()

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot(self) -> SnapshotJob:
        data = packb({"format": FORMAT, "version": self.snapshot_version,
                      "state": self.get_state()})
        # the snapshot store hashes and fsyncs every file when it commits the snapshot
        return SnapshotJob("async", lambda directory: (directory / STATE_FILE).write_bytes(data))

    def snapshot_done(self) -> None:
        pass

    def snapshot_failed(self, reason: str) -> None:
        pass

    def install_snapshot(self, directory: Path) -> None:
        path = Path(directory) / STATE_FILE
        try:
            doc = unpackb(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise SnapshotCorrupted(f"{path}: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT \
                or type(doc.get("version")) is not int or "state" not in doc:
            raise SnapshotCorrupted(f"{path}: not a {FORMAT} snapshot")
        version, state = doc["version"], doc["state"]
        if version > self.snapshot_version:
            raise SnapshotCorrupted(
                f"{type(self).__name__} reads snapshot versions up to {self.snapshot_version}, "
                f"this one is version {version} (written by a newer release of the backend: "
                "upgrade it on this node)")
        if version < self.snapshot_version:
            state = self.upgrade_state(version, state)
        self.set_state(state)


__all__ = ["FORMAT", "STATE_FILE", "SimpleBackend"]
