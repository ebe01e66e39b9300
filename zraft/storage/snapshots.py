"""SnapshotStore: snapshot directories of one peer, ``<snapshot_dir>/<peerdir>/snapshots/``.

Layout::

    snapshots/snapshot-<index>-<term>/MANIFEST.json   meta + every file's size and sha256
    snapshots/snapshot-<index>-<term>/data/...        whatever the backend wrote
    snapshots/snapshot-<index>-<term>/<extra files>   e.g. the replicated session tables
    snapshots/archive-<index>-<term>.tar              only with snapshot_backup = true
    snapshots/tmp-<n>/                                being written or received

Rules:
- A snapshot is built in a ``tmp-`` directory: the backend writes into ``data/``, the
  caller adds other files as bytes, then `commit` fsyncs every file, writes the manifest
  last and renames the directory into place (atomic), then fsyncs ``snapshots/``. A
  directory named ``snapshot-*`` therefore always had a complete manifest when created.
- The manifest (JSON) carries its own sha256, so a torn or edited manifest is detected;
  `verify` also checks every listed file (size, sha256) and refuses unlisted files.
- `latest` is the newest snapshot (by index, then term) whose manifest is valid.
- `install` takes a received directory, verifies it first, then renames it into place
  (the sha256s a transfer computed while receiving stand in for reading the files again).
- After a commit or install, older snapshot directories are removed (all but the newest
  ``retain - 1`` of them; ``retain`` defaults to 1). With ``backup`` each new snapshot is
  also archived to ``archive-<index>-<term>.tar`` and every archive is kept.
- `clean` (start-up) removes ``tmp-`` leftovers and the same older snapshots; a directory
  newer than the latest valid one (bad manifest) is left in place, unused, with a warning.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from zraft.core.entries import ClusterConfig, SnapshotMeta
from zraft.storage.errors import CorruptSnapshotError
from zraft.storage.framing import fsync_dir
from zraft.storage.naming import peer_snapshot_path

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.json"
MANIFEST_FORMAT = 1
DATA_DIR = "data"
_SNAPSHOT_RE = re.compile(r"^snapshot-(\d+)-(\d+)$")
_ARCHIVE_RE = re.compile(r"^archive-(\d+)-(\d+)\.tar$")
_TMP_PREFIX = "tmp-"
# one counter per process, not per store: the state machine and the snapshot receiver each
# open a store on the same directory, and a receiver that takes a name and removes the
# directory until its transfer completes must not see it handed out again (it was: the
# follower's own snapshot took the receiver's name and the transfer failed at its rename)
_TMP_COUNTER = itertools.count(1)


@dataclass(frozen=True, slots=True)
class ManifestFile:
    path: str  # relative, with "/" separators
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    path: Path
    meta: SnapshotMeta
    files: tuple[ManifestFile, ...]

    @property
    def data_dir(self) -> Path:
        return self.path / DATA_DIR

    def file(self, rel: str) -> Path:
        return self.path / rel


def snapshot_dir_name(meta: SnapshotMeta) -> str:
    return f"snapshot-{meta.index}-{meta.term}"


# ---------------------------------------------------------------------- manifest


def _manifest_body(meta: SnapshotMeta, files: list[ManifestFile]) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "index": meta.index,
        "term": meta.term,
        "config_index": meta.config_index,
        "config": [list(meta.config.old), list(meta.config.new)],
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files],
    }


def _body_digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def read_manifest(snap_dir: Path) -> SnapshotInfo:
    """Parse and self-check a manifest (not the files); raises CorruptSnapshotError."""
    path = snap_dir / MANIFEST
    try:
        doc = json.loads(path.read_bytes())
        checksum = doc.pop("sha256")
        if doc.get("format") != MANIFEST_FORMAT or _body_digest(doc) != checksum:
            raise ValueError("manifest checksum mismatch")
        old, new = doc["config"]
        meta = SnapshotMeta(int(doc["index"]), int(doc["term"]), int(doc["config_index"]),
                            ClusterConfig(tuple(old), tuple(new)))
        files = tuple(ManifestFile(str(f["path"]), int(f["size"]), str(f["sha256"]))
                      for f in doc["files"])
    except FileNotFoundError:
        raise CorruptSnapshotError(f"{snap_dir}: no {MANIFEST}") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptSnapshotError(f"{path}: unreadable manifest: {exc}") from exc
    for f in files:
        if f.path.startswith("/") or ".." in f.path.split("/") or f.path == MANIFEST:
            raise CorruptSnapshotError(f"{path}: bad file path {f.path!r}")
    return SnapshotInfo(snap_dir, meta, files)


def _hash_file(path: Path, sync: bool) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
        if sync:
            os.fsync(fh.fileno())
    return size, digest.hexdigest()


def _relative_files(root: Path) -> list[str]:
    found = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            rel = Path(dirpath, name).relative_to(root).as_posix()
            if rel != MANIFEST:
                found.append(rel)
    return sorted(found)


def verify(snap_dir: str | os.PathLike[str],
           known_digests: Mapping[str, bytes] | None = None) -> SnapshotInfo:
    """Check a snapshot dir against its manifest: every file, size and sha256, no extras.
    ``known_digests`` (relative path -> sha256) are files whose bytes the caller has just
    hashed itself (a received transfer): those are compared, not read again."""
    known = known_digests or {}
    snap_dir = Path(snap_dir)
    info = read_manifest(snap_dir)
    listed = {f.path: f for f in info.files}
    present = _relative_files(snap_dir)
    extra = sorted(set(present) - set(listed))
    if extra:
        raise CorruptSnapshotError(f"{snap_dir}: files not in the manifest: {extra}")
    for rel, expected in listed.items():
        path = snap_dir / rel
        if not path.is_file():
            raise CorruptSnapshotError(f"{path}: missing")
        if rel in known:
            size, digest = path.stat().st_size, known[rel].hex()
        else:
            size, digest = _hash_file(path, sync=False)
        if size != expected.size or digest != expected.sha256:
            raise CorruptSnapshotError(f"{path}: size or sha256 does not match the manifest")
    match = _SNAPSHOT_RE.match(snap_dir.name)
    if match and (int(match[1]), int(match[2])) != (info.meta.index, info.meta.term):
        raise CorruptSnapshotError(f"{snap_dir}: name disagrees with manifest meta")
    return info


# ---------------------------------------------------------------------- pending snapshot


class PendingSnapshot:
    """A snapshot being written: the backend fills ``data_dir``, the caller adds files."""

    def __init__(self, store: SnapshotStore, path: Path, meta: SnapshotMeta) -> None:
        self.store = store
        self.path = path
        self.meta = meta
        self.info: SnapshotInfo | None = None
        self.data_dir.mkdir()

    @property
    def data_dir(self) -> Path:
        return self.path / DATA_DIR

    def add_file(self, rel: str, data: bytes) -> None:
        """Write one extra file (e.g. a session table) next to ``data/``."""
        target = self.path / rel
        base = self.path.resolve()
        resolved = target.resolve()
        if resolved == base or not resolved.is_relative_to(base) or rel == MANIFEST:
            raise ValueError(f"{rel!r} is not a valid snapshot file name")
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(data)

    def commit(self) -> SnapshotInfo:
        self.info = self.store.commit(self)
        return self.info

    def abort(self) -> None:
        self.store.abort(self)

    def __enter__(self) -> PendingSnapshot:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


# ---------------------------------------------------------------------- store


class SnapshotStore:
    """``retain`` snapshot directories are kept (the newest ones); raise it above 1 to let
    a transfer of the previous snapshot finish while a new one is committed."""

    def __init__(self, root: str | os.PathLike[str], backup: bool = False,
                 retain: int = 1) -> None:
        self.root = Path(root)
        self.backup = backup
        self.retain = max(1, retain)
        if not self.root.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.root.parent)

    @classmethod
    def for_peer(cls, snapshot_dir: str | os.PathLike[str], peer_id: str,
                 backup: bool = False, retain: int = 1) -> SnapshotStore:
        return cls(peer_snapshot_path(snapshot_dir, peer_id), backup, retain)

    # -- writing -----------------------------------------------------------------------------

    def new_tmp_dir(self) -> Path:
        """A fresh empty directory inside the store (for a build or a transfer)."""
        while True:
            path = self.root / f"{_TMP_PREFIX}{os.getpid()}-{next(_TMP_COUNTER)}"
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue

    def create(self, meta: SnapshotMeta) -> PendingSnapshot:
        return PendingSnapshot(self, self.new_tmp_dir(), meta)

    def commit(self, pending: PendingSnapshot) -> SnapshotInfo:
        """Hash and fsync every file, write the manifest, rename into place."""
        files = []
        for rel in _relative_files(pending.path):
            size, digest = _hash_file(pending.path / rel, sync=True)
            files.append(ManifestFile(rel, size, digest))
        body = _manifest_body(pending.meta, files)
        body["sha256"] = _body_digest(dict(body))
        manifest = pending.path / MANIFEST
        with open(manifest, "wb") as fh:
            fh.write(json.dumps(body, indent=1, sort_keys=True).encode())
            fh.flush()
            os.fsync(fh.fileno())
        for dirpath, _dirs, _names in os.walk(pending.path):
            fsync_dir(dirpath)
        return self._place(pending.path, SnapshotInfo(pending.path, pending.meta, tuple(files)))

    def abort(self, pending: PendingSnapshot) -> None:
        shutil.rmtree(pending.path, ignore_errors=True)

    def install(self, received: str | os.PathLike[str],
                known_digests: Mapping[str, bytes] | None = None) -> SnapshotInfo:
        """Verify a received snapshot directory, then move it into place atomically
        (``known_digests``: see ``verify``)."""
        received = Path(received)
        info = verify(received, known_digests)
        if received.parent.resolve() != self.root.resolve():
            staged = self.new_tmp_dir()
            staged.rmdir()
            shutil.copytree(received, staged)
            for rel in _relative_files(staged):
                _hash_file(staged / rel, sync=True)
            for dirpath, _dirs, _names in os.walk(staged):
                fsync_dir(dirpath)
            received = staged
        return self._place(received, info)

    def _place(self, src: Path, info: SnapshotInfo) -> SnapshotInfo:
        target = self.root / snapshot_dir_name(info.meta)
        if target.exists():
            try:
                existing = verify(target)
            except CorruptSnapshotError:
                log.warning("replacing damaged snapshot %s", target)
                shutil.rmtree(target)
            else:
                shutil.rmtree(src, ignore_errors=True)
                return existing
        os.rename(src, target)
        fsync_dir(self.root)
        placed = SnapshotInfo(target, info.meta, info.files)
        if self.backup:
            self._archive(placed)
        self._remove_older(placed.meta)
        return placed

    def _archive(self, info: SnapshotInfo) -> Path:
        name = f"archive-{info.meta.index}-{info.meta.term}.tar"
        tmp = self.root / f"{_TMP_PREFIX}{name}"
        with tarfile.open(tmp, "w") as tar:
            tar.add(info.path, arcname=info.path.name)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        final = self.root / name
        os.replace(tmp, final)
        fsync_dir(self.root)
        return final

    def _remove_older(self, newest: SnapshotMeta) -> None:
        older = [path for key, path in self._snapshot_dirs() if key < (newest.index, newest.term)]
        for path in older[: max(0, len(older) - (self.retain - 1))]:
            shutil.rmtree(path, ignore_errors=True)

    # -- reading -----------------------------------------------------------------------------

    def _snapshot_dirs(self) -> list[tuple[tuple[int, int], Path]]:
        found = []
        for child in self.root.iterdir():
            match = _SNAPSHOT_RE.match(child.name)
            if match and child.is_dir():
                found.append(((int(match[1]), int(match[2])), child))
        return sorted(found)

    def latest(self) -> SnapshotInfo | None:
        """The newest snapshot with a valid manifest (files are not re-hashed)."""
        for _key, path in reversed(self._snapshot_dirs()):
            try:
                return read_manifest(path)
            except CorruptSnapshotError as exc:
                log.warning("ignoring snapshot: %s", exc)
        return None

    def verify(self, snap_dir: str | os.PathLike[str]) -> SnapshotInfo:
        return verify(snap_dir)

    def archives(self) -> list[Path]:
        found = []
        for child in self.root.iterdir():
            match = _ARCHIVE_RE.match(child.name)
            if match:
                found.append(((int(match[1]), int(match[2])), child))
        return [path for _key, path in sorted(found)]

    # -- start-up ----------------------------------------------------------------------------

    def clean(self) -> SnapshotInfo | None:
        """Remove tmp leftovers and snapshots older than the latest valid one; return it."""
        for child in self.root.iterdir():
            if child.name.startswith(_TMP_PREFIX):
                log.info("removing unfinished snapshot %s", child)
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        latest = self.latest()
        if latest is not None:
            self._remove_older(latest.meta)
            for key, path in self._snapshot_dirs():
                if key > (latest.meta.index, latest.meta.term):
                    log.warning("snapshot %s has no valid manifest; left in place, unused",
                                path)
        fsync_dir(self.root)
        return latest
