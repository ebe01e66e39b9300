"""One node per data directory: an exclusive lock, and the node's identity recorded there.

Rules:
- ``claim(cfg)`` takes an exclusive ``fcntl.flock`` on ``zraft.lock`` in ``node.log_dir``
  and in ``node.snapshot_dir`` (once if they are the same directory), without waiting.
  The lock lives as long as the returned ``DataDirClaim`` (``release()``) or the process:
  the kernel drops it when the process dies, so a crashed node never leaves a stale lock.
  The lock file holds the owner's pid and address, for the error message only.
- The identity is ``node.json`` in ``node.log_dir``: the address the node listens on,
  and the cluster id of each of its peers (from their ``raft.meta``). Written
  (atomically, fsynced) at the first start and refreshed at every start and stop; a
  directory from before this file existed takes its address from its peers' ids.
- A second node on a locked directory, a node whose ``node.listen`` is not the address
  the directory records, or a peer whose ``raft.meta`` names another cluster than the one
  ``node.json`` recorded for it, gets ``ConfigError`` with one line (what, which file,
  what to do): the node exits 2 and touches nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from zraft.config import ConfigError, NodeConfig
from zraft.ids import PeerId
from zraft.saferepr import safe_repr
from zraft.storage.framing import fsync_dir
from zraft.storage.meta import RaftMeta, list_peers

LOCK_FILE = "zraft.lock"
IDENTITY_FILE = "node.json"
IDENTITY_VERSION = 1
MAX_IDENTITY_BYTES = 4 * 1024 * 1024


class DataDirClaim:
    """The locks a node holds on its data directories, and its identity file."""

    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self._fds: list[int] = []

    def acquire(self) -> None:
        dirs = [("node.log_dir", self.cfg.log_dir), ("node.snapshot_dir", self.cfg.snapshot_dir)]
        seen: set[str] = set()
        try:
            for key, directory in dirs:
                real = os.path.realpath(directory)
                if real not in seen:
                    seen.add(real)
                    self._fds.append(_lock(key, directory, self.cfg.listen))
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Drop the locks (idempotent); the lock files stay (removing one would let a
        third node lock a new file while a second still holds the old one)."""
        while self._fds:
            with contextlib.suppress(OSError):
                os.close(self._fds.pop())

    @property
    def held(self) -> bool:
        return bool(self._fds)


def claim(cfg: NodeConfig) -> DataDirClaim:
    """Lock the node's data directories and check (then record) its identity; ConfigError
    with one line if another node holds them or they belong to another node."""
    held = DataDirClaim(cfg)
    held.acquire()
    try:
        check_identity(cfg)
        record_identity(cfg)
    except BaseException:
        held.release()
        raise
    return held


def _lock(key: str, directory: str, listen: str) -> int:
    path = os.path.join(directory, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"{key} {directory}: cannot open {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _read_owner(fd)
        os.close(fd)
        raise ConfigError(f"{key} {directory} is in use by another node ({owner}{path} is "
                          "locked): stop that node, or give this one its own data "
                          "directory") from None
    except OSError as exc:
        os.close(fd)
        raise ConfigError(f"{key} {directory}: cannot lock {path}: {exc.strerror}") from None
    with contextlib.suppress(OSError):  # the owner, for the message of whoever comes next
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {listen}\n".encode(), 0)
    return fd


def _read_owner(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        return ""
    if len(text) == 2 and text[0].isdigit():
        return f"pid {text[0]} at {_short(text[1])}: "
    return ""


# ---------------------------------------------------------------- identity


def identity_path(cfg: NodeConfig) -> Path:
    return Path(cfg.log_dir) / IDENTITY_FILE


def read_identity(cfg: NodeConfig) -> dict[str, Any] | None:
    """The recorded identity, None if there is none; ConfigError if it is unreadable."""
    path = identity_path(cfg)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_IDENTITY_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        doc = json.loads(data) if len(data) <= MAX_IDENTITY_BYTES else None
    except (ValueError, RecursionError):
        doc = None
    if (not isinstance(doc, dict) or not isinstance(doc.get("listen"), str)
            or not isinstance(doc.get("peers", {}), dict)):
        raise ConfigError(f"{path} is not a zraft node identity: restore it, or remove it "
                          "if this directory belongs to this node")
    return doc


def _stored_address(peers: list[RaftMeta]) -> str | None:
    """The address in the ids of the peers stored here (a directory without node.json)."""
    for meta in peers:
        try:
            return PeerId.parse(meta.peer_id).node
        except ValueError:
            continue
    return None


def _short(text: str, limit: int = 80) -> str:
    """``text`` (read from disk) cut to ``limit`` printable characters for a message."""
    text = "".join(c if c.isprintable() else "?" for c in text[:limit + 1])
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _same_address(a: str, b: str) -> bool:
    """Whether two ``host:port`` name the same address (``[::1]:7`` is ``::1:7``)."""
    try:
        return PeerId.parse(f"n@{a}") == PeerId.parse(f"n@{b}")
    except ValueError:
        return a == b


def check_identity(cfg: NodeConfig) -> None:
    path = identity_path(cfg)
    doc = read_identity(cfg)
    peers = list_peers(cfg.log_dir)
    recorded = doc["listen"] if doc is not None else _stored_address(peers)
    where = str(path) if doc is not None else f"the ids of the peers in {cfg.log_dir}"
    if recorded is not None and not _same_address(recorded, cfg.listen):
        shown = _short(recorded)
        raise ConfigError(f"data directory {cfg.log_dir} belongs to the node at {shown} "
                          f"({where}), not {cfg.listen}: set listen = \"{shown}\", "
                          "or give this node its own data directory")
    known = doc.get("peers", {}) if doc is not None else {}
    for meta in peers:
        was = known.get(meta.peer_id)
        if isinstance(was, str) and was and meta.cluster_id and was != meta.cluster_id:
            raise ConfigError(f"peer {meta.peer_id} in {cfg.log_dir} is of cluster "
                              f"{safe_repr(meta.cluster_id, 60)}, but {path} records "
                              f"{safe_repr(was, 60)}: its directory was replaced with "
                              "another cluster's; put the right one back, or move it away "
                              "to drop the peer")


def record_identity(cfg: NodeConfig) -> None:
    """Write node.json (atomically): the address and each stored peer's cluster id."""
    path = identity_path(cfg)
    old = read_identity(cfg) or {}
    peers = {str(k): v for k, v in old.get("peers", {}).items() if isinstance(v, str)}
    for meta in list_peers(cfg.log_dir):
        if meta.cluster_id:
            peers[meta.peer_id] = meta.cluster_id
    doc = {"version": IDENTITY_VERSION, "listen": cfg.listen, "peers": peers}
    tmp = path.with_name(IDENTITY_FILE + ".tmp")
    # fsynced before and after the rename: a power cut leaves the old file or the new one,
    # never an empty one that would keep the node from starting
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


__all__ = [
    "IDENTITY_FILE",
    "LOCK_FILE",
    "DataDirClaim",
    "check_identity",
    "claim",
    "read_identity",
    "record_identity",
]
