"""Secret files (the cluster cookie, the TLS private key): refuse ones others can read, write
new ones private.

- ``check_private(path, key)`` raises ``ConfigError`` with one line naming the file and
  the ``chmod 600`` to run when group or others may read or write it (execute bits alone
  leak nothing). A node calls it
  for every secret file its config names before it starts (``python -m zraft.node`` and
  ``zraft.Node`` alike), so a cookie left world-readable is found at the first start,
  not after someone else has read it.
- ``write_private(path, text)`` creates a file that is 0600 from its first byte (created
  with that mode, not chmod-ed after: no window in which another user can open it).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from zraft.config import ConfigError

PRIVATE_MODE = 0o600


def check_private(path: str | os.PathLike[str], key: str) -> None:
    """ConfigError if ``path`` (named by the config key ``key``) is readable or writable
    by group or others. A missing file is left to whoever reads it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
        how = "readable" if mode & (stat.S_IRGRP | stat.S_IROTH) else "writable"
        raise ConfigError(f"{key} {os.fspath(path)} is {how} by group or others "
                          f"(mode {stat.S_IMODE(mode):04o}): run chmod 600 {os.fspath(path)}")


def write_private(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a new or existing file, leaving it mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)  # an existing file keeps its mode through O_CREAT
        data = text.encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def private_files(cfg: object) -> list[tuple[str, str]]:
    """``(config key, path)`` of every secret file a node config names."""
    found = []
    cookie_file = getattr(cfg, "cookie_file", "")
    if cookie_file:  # checked even when node.cookie overrides it: it is a secret still
        found.append(("node.cookie_file", str(Path(cookie_file))))
    client_cookie_file = getattr(cfg, "client_cookie_file", "")
    if client_cookie_file:
        found.append(("node.client_cookie_file", str(Path(client_cookie_file))))
    tls_key = getattr(cfg, "tls_key", "")
    if tls_key:
        found.append(("node.tls_key", str(Path(tls_key))))
    return found


__all__ = ["PRIVATE_MODE", "check_private", "private_files", "write_private"]
