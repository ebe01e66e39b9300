"""``restore``: seed a new cluster from a backup file (etcd's disaster-recovery path).

The new cluster has a new identity, the configuration the operator gives, and the data of
the file. Each new peer gets, in its node's data directory:
1. a snapshot in its snapshot store (``SnapshotStore``: the backup's files, a new manifest)
   at the backup's index and term, whose configuration is the new peers;
2. then its Raft metadata (``DiskLogStorage``): that snapshot point, term = the backup's
   term, no vote, the new cluster id, the backend. The log itself is empty.
Every peer then starts from the same snapshot and the same configuration: they elect a
leader among themselves and serve the data, with nothing sent between them.

Rules: the whole file is verified before anything is written; a peer that already has data
in the directory is refused (a restore never overwrites a live peer).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from zraft.backup.fileformat import BackupHeader, iter_files, read_backup
from zraft.core.entries import ClusterConfig, HardState, SnapshotMeta
from zraft.storage import DiskLogStorage, SnapshotStore
from zraft.storage.naming import peer_log_path, peer_snapshot_path


class RestoreRefused(Exception):
    """The target is not empty, or the arguments do not make a cluster (one line)."""


def derived_cluster_id(header: BackupHeader, peers: list[str]) -> str:
    """The new cluster's id when every member is restored separately: the same file and
    the same peers give the same id on every host (and never the source cluster's)."""
    text = "\n".join(["zraft-restore", header.cluster_id, str(header.index), str(header.term),
                      str(header.created_ms), *sorted(peers)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def seed_peer(data_dir: str | os.PathLike[str], peer_id: str, backup: str | os.PathLike[str],
              header: BackupHeader, peers: list[str], cluster_id: str) -> None:
    """Write peer ``peer_id``'s snapshot and metadata under ``data_dir`` (its node's
    ``log_dir`` and ``snapshot_dir``). ``header`` comes from ``read_backup(backup)``."""
    if peer_log_path(data_dir, peer_id).exists() or peer_snapshot_path(data_dir, peer_id).exists():
        raise RestoreRefused(f"{data_dir} already holds data of peer {peer_id}")
    meta = SnapshotMeta(header.index, header.term, header.index, ClusterConfig.stable(peers))
    pending = SnapshotStore.for_peer(data_dir, peer_id).create(meta)
    try:
        for f, blocks in iter_files(backup):
            target = pending.path / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as fh:
                for block in blocks:
                    fh.write(block)
        pending.commit()
    except BaseException:
        pending.abort()
        raise
    storage = DiskLogStorage.open(data_dir, peer_id, backend=header.backend,
                                  cluster_id=cluster_id)
    try:
        storage.stage_snapshot(meta)
        storage.stage_hard_state(HardState(header.term, None, 0))
        storage.sync()
    finally:
        storage.close()


def restore_member(backup: str | os.PathLike[str], data_dir: str | os.PathLike[str],
                   peers: list[str], member: str, cluster_id: str | None = None
                   ) -> tuple[BackupHeader, str]:
    """Seed one member (``member``, one of ``peers``) into its node's data directory."""
    if member not in peers:
        raise RestoreRefused(f"--member {member} is not one of --peers")
    header = read_backup(backup)
    cid = cluster_id or derived_cluster_id(header, peers)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    seed_peer(data_dir, member, backup, header, peers, cid)
    return header, cid
