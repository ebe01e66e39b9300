"""``snapshot_read``: a chunk of one file of one of a local peer's snapshots (a backup).

Rules: only a file listed in the snapshot's own manifest can be read (the manifest is
self-checked first), so no path a client sends reaches the file system unchecked; a
snapshot that is gone (replaced by newer ones while a backup downloads) is ``not_found``,
and the client starts its save again. A chunk is at most ``CHUNK_BYTES``.
"""

from __future__ import annotations

from pathlib import Path

from zraft.storage.errors import CorruptSnapshotError
from zraft.storage.naming import peer_snapshot_path
from zraft.storage.snapshots import read_manifest

CHUNK_BYTES = 1 << 20


class SnapshotGone(Exception):
    """The snapshot or the file is not (or no longer) there."""


def read_chunk(snapshot_dir: str | Path, peer_id: str, snapshot: str, rel: str,
               offset: int) -> bytes:
    """Up to ``CHUNK_BYTES`` of ``rel`` in the peer's snapshot ``snapshot`` from ``offset``
    (empty at the end). Raises ``SnapshotGone``."""
    snap = peer_snapshot_path(snapshot_dir, peer_id) / snapshot
    try:
        info = read_manifest(snap)
    except CorruptSnapshotError:
        raise SnapshotGone(f"snapshot {snapshot} is not there (any more)") from None
    if rel not in {f.path for f in info.files}:
        raise SnapshotGone(f"snapshot {snapshot} has no such file")
    try:
        with open(snap / rel, "rb") as fh:
            fh.seek(offset)
            return fh.read(CHUNK_BYTES)
    except OSError:
        raise SnapshotGone(f"snapshot {snapshot} is not there (any more)") from None
