"""Raft metadata of one peer: ``<log_dir>/<peerdir>/raft.meta``.

Rules:
- Content: magic ``ZRMETA01`` then one record (length, CRC32, payload) whose payload is a
  msgpack map with peer_id, backend, term, vote, first_index, snapshot
  ``[index, term, config_index, [old, new]]``, removed, and (absent in older files, read as
  0 or "") ``cluster_id`` (the cluster's identity, given at creation, never changed),
  ``recovering`` (see ``HardState``) and ``newest_segment``: the first index of the
  newest log segment created, written before any record goes into it, so recovery can
  tell a segment that was lost from one a crash never finished creating.
- Written atomically: write ``raft.meta.tmp``, fsync it, ``os.replace`` over ``raft.meta``,
  fsync the directory. Both fsyncs go through the node's SyncService when one is given,
  so the metadata writes of many groups (e.g. votes in an election storm) share them.
  A crash leaves either the old or the new file, never a mix; a left over temp file is
  ignored and removed on the next write or open.
- ``first_index`` is always ``snapshot.index + 1`` (kept for readers of the file).
- ``list_peers(log_dir)`` returns the metadata of every peer directory. A peer whose
  metadata is corrupt, truncated or unreadable, or missing although its log has segments,
  raises ``CorruptMetaError`` naming the file: a node must not start without a peer's data
  (and say "ready"). A directory with neither metadata nor segments (a create that died
  before writing anything) is skipped with a warning.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgpack

from zraft.core.entries import BLANK_CONFIG, ClusterConfig, HardState, SnapshotMeta
from zraft.storage.errors import CorruptMetaError
from zraft.storage.framing import HEADER_SIZE, fsync_dir, read_record
from zraft.storage.framing import frame as frame_record
from zraft.storage.sync_service import SyncService

log = logging.getLogger(__name__)

META_FILE = "raft.meta"
META_TMP = "raft.meta.tmp"
META_MAGIC = b"ZRMETA01"
META_VERSION = 1


@dataclass(frozen=True, slots=True)
class RaftMeta:
    peer_id: str
    backend: str | None = None
    term: int = 0
    vote: str | None = None
    snapshot: SnapshotMeta = field(default_factory=SnapshotMeta)
    removed: bool = False
    recovering: int = 0
    newest_segment: int = 0
    cluster_id: str = ""

    @property
    def first_index(self) -> int:
        return self.snapshot.index + 1

    @property
    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.recovering)

    def with_hard_state(self, hs: HardState) -> RaftMeta:
        return replace(self, term=hs.term, vote=hs.vote, recovering=hs.recovering)

    def to_map(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "version": META_VERSION,
            "peer_id": self.peer_id,
            "backend": self.backend,
            "term": self.term,
            "vote": self.vote,
            "first_index": self.first_index,
            "snapshot": [snap.index, snap.term, snap.config_index, list(map(list, snap.config))],
            "removed": self.removed,
            "recovering": self.recovering,
            "newest_segment": self.newest_segment,
            "cluster_id": self.cluster_id,
        }

    @staticmethod
    def from_map(raw: Any) -> RaftMeta:
        if not isinstance(raw, dict) or raw.get("version") != META_VERSION:
            raise ValueError("not a version 1 metadata map")
        index, term, config_index, config = raw["snapshot"]
        snap = SnapshotMeta(int(index), int(term), int(config_index),
                            ClusterConfig.from_wire(config) if config else BLANK_CONFIG)
        meta = RaftMeta(
            peer_id=str(raw["peer_id"]),
            backend=raw["backend"],
            term=int(raw["term"]),
            vote=raw["vote"],
            snapshot=snap,
            removed=bool(raw["removed"]),
            recovering=int(raw.get("recovering", 0)),
            newest_segment=int(raw.get("newest_segment", 0)),
            cluster_id=str(raw.get("cluster_id") or ""),
        )
        if raw.get("first_index") != meta.first_index:
            raise ValueError("first_index disagrees with the snapshot index")
        return meta


def encode_meta(meta: RaftMeta) -> bytes:
    return META_MAGIC + frame_record(msgpack.packb(meta.to_map(), use_bin_type=True))


def decode_meta(data: bytes, path: str = META_FILE) -> RaftMeta:
    if not data.startswith(META_MAGIC):
        raise CorruptMetaError(path, "bad magic")
    found = read_record(data, len(META_MAGIC))
    if found is None:
        raise CorruptMetaError(path, "truncated or checksum mismatch")
    payload, end = found
    if end != len(data):
        raise CorruptMetaError(path, f"{len(data) - end} trailing bytes")
    try:
        return RaftMeta.from_map(msgpack.unpackb(payload, raw=False, strict_map_key=False))
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptMetaError(path, str(exc)) from exc


def write_meta(peer_path: str | Path, meta: RaftMeta, sync: SyncService | None = None) -> None:
    """Atomically replace the metadata file (temp, fsync, rename, fsync dir)."""
    peer_path = Path(peer_path)
    tmp = peer_path / META_TMP
    data = encode_meta(meta)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync is None:
            os.fsync(fd)
        else:
            sync.sync([fd], metadata=True)
    finally:
        os.close(fd)
    os.replace(tmp, peer_path / META_FILE)
    if sync is None:
        fsync_dir(peer_path)
        return
    sync.sync_dir(peer_path)


def read_meta(peer_path: str | Path) -> RaftMeta:
    """The stored metadata; FileNotFoundError if there is none, CorruptMetaError if bad."""
    path = Path(peer_path) / META_FILE
    data = path.read_bytes()
    if len(data) < len(META_MAGIC) + HEADER_SIZE:
        raise CorruptMetaError(str(path), f"only {len(data)} bytes")
    return decode_meta(data, str(path))


def discard_temp_meta(peer_path: str | Path) -> bool:
    """Remove a temp file left by a crash during `write_meta`; True if there was one."""
    tmp = Path(peer_path) / META_TMP
    try:
        tmp.unlink()
    except FileNotFoundError:
        return False
    log.warning("removed unfinished metadata write %s", tmp)
    return True


def list_peers(log_dir: str | Path) -> list[RaftMeta]:
    """Metadata of every peer stored under `log_dir` (for restarting peers at node start)."""
    root = Path(log_dir)
    if not root.is_dir():
        return []
    found: list[RaftMeta] = []
    for child in sorted(root.iterdir()):
        if not child.is_dir():
            continue
        path = child / META_FILE
        try:
            found.append(read_meta(child))
        except FileNotFoundError:
            if _has_segments(child):
                raise CorruptMetaError(str(path), "missing although the log has segments "
                                       "(restore it from a backup, or move the peer's "
                                       "directory away to drop the peer)") from None
            log.warning("skipping %s: no %s and no log", child, META_FILE)
        except CorruptMetaError:
            raise
        except OSError as exc:
            raise CorruptMetaError(str(path), exc.strerror or str(exc)) from None
    return found


def _has_segments(peer_path: Path) -> bool:
    log_path = peer_path / "log"
    try:
        return any(p.suffix == ".seg" for p in log_path.iterdir())
    except OSError:
        return False
