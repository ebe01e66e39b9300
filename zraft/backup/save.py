"""``save``: a linearizable snapshot of a group, from its leader, into one backup file.

1. ``snapshot_save`` goes to the leader (the light session follows ``not_leader``): the
   leader confirms its leadership with a quorum (a read index), waits until it has applied
   that index, and takes a snapshot then, so the snapshot holds every write acknowledged
   before the save began. It answers the snapshot's directory name and manifest.
2. Each listed file is read from the leader's node in chunks (``snapshot_read``), checked
   against the manifest's size and sha256, and written into the backup file
   (``fileformat``) with the leader's cluster id.
3. A snapshot replaced while downloading (the node keeps two) is ``not_found``: the save
   starts again, at most ``ATTEMPTS`` times.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from zraft.backup.fileformat import BackupFile, BackupHeader, BackupWriter, check_path
from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.client.light_session import LightSession
from zraft.errors import ZRaftError

ATTEMPTS = 3


class SaveFailed(ZRaftError):
    code = "save_failed"


def save(session: LightSession, path: str | os.PathLike[str], timeout: float,
         pool: ConnectionPool) -> BackupHeader:
    """Write a backup of the group to ``path``; its header."""
    for attempt in range(ATTEMPTS):
        manifest, answered = api._run(session, "snapshot_save", lambda name: [name],
                                      timeout, pool)
        leader = answered.leader
        try:
            return _download(leader, manifest, path, timeout, pool)
        except ZRaftError as exc:
            if exc.code != "not_found" or attempt == ATTEMPTS - 1:
                raise
            session = answered
    raise AssertionError("unreachable")


def _download(leader: str, manifest: Any, path: str | os.PathLike[str], timeout: float,
              pool: ConnectionPool) -> BackupHeader:
    try:
        files = tuple(BackupFile(str(p), int(s), str(d)) for p, s, d in manifest["files"])
        for f in files:
            check_path(f.path)
        old, new = manifest["config"]
        cluster_id = api.stat(leader, timeout, pool=pool).get("cluster_id") or ""
        header = BackupHeader(str(cluster_id), int(manifest["index"]), int(manifest["term"]),
                              int(manifest["config_index"]), (tuple(old), tuple(new)),
                              str(manifest["backend"]), leader, int(time.time() * 1000), files)
        name = str(manifest["name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SaveFailed(f"the leader's answer is malformed ({type(exc).__name__})") from None
    writer = BackupWriter(path, header)
    try:
        for f in files:
            digest = hashlib.sha256()
            offset = 0
            while offset < f.size:
                chunk = api._single(leader, "snapshot_read",
                                    lambda peer, f=f, o=offset: [peer, name, f.path, o],
                                    timeout, pool)
                if type(chunk) is not bytes or not chunk:
                    raise SaveFailed(f"{f.path}: short read at {offset} of {f.size} bytes")
                chunk = chunk[: f.size - offset]
                digest.update(chunk)
                writer.write(chunk)
                offset += len(chunk)
            if digest.hexdigest() != f.sha256:
                raise SaveFailed(f"{f.path}: sha256 does not match the snapshot manifest")
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return header
