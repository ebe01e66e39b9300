"""Peer directory names.

Rule: ``peer_dir_name(peer_id)`` is ``<name>-<hash>`` where ``name`` is the peer id's name
part (before ``@``) with every character outside ``[A-Za-z0-9._-]`` replaced by ``_``, cut
to 32 characters (a leading dot becomes ``_``), and ``hash`` is the first 12 hex digits of
the SHA-256 of the whole peer id (UTF-8). The name keeps directories readable; the hash
keeps them unique and deterministic (two ids differing only in unsafe characters or in
host:port still get distinct directories). The real peer id is stored in the metadata,
so nothing ever parses a directory name back.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
NAME_LIMIT = 32


def peer_dir_name(peer_id: str) -> str:
    name = peer_id.split("@", 1)[0]
    safe = _UNSAFE.sub("_", name)[:NAME_LIMIT] or "peer"
    if safe.startswith("."):
        safe = "_" + safe[1:]
    digest = hashlib.sha256(peer_id.encode("utf-8")).hexdigest()[:12]
    return f"{safe}-{digest}"


def peer_log_path(log_dir: str | Path, peer_id: str) -> Path:
    """``<log_dir>/<peerdir>``: holds the metadata file and the ``log/`` segments."""
    return Path(log_dir) / peer_dir_name(peer_id)


def peer_snapshot_path(snapshot_dir: str | Path, peer_id: str) -> Path:
    """``<snapshot_dir>/<peerdir>/snapshots``."""
    return Path(snapshot_dir) / peer_dir_name(peer_id) / "snapshots"
