"""The SQLite backend's files: the live database, its internal tables, snapshot copies.

Layout: ``<directory>/live.db`` (+ ``-wal``/``-shm``, WAL mode); a snapshot is one file,
``<snapshot>/data/db.sqlite``, written by the backup API from a read transaction.

Durability (``PRAGMA synchronous=NORMAL`` in WAL mode): a commit is not fsynced, a
checkpoint is. After a power loss the database is consistent but may lack the last
commits; since every commit also stores the applied index (its reply's key in
``_zraft_replies``), the database and its index go back together and the Raft log, which
is durable, replays what is missing. The one case the log cannot replay is an index below
the last local snapshot (the log before it is compacted): the backend then installs that
snapshot instead (``covers``). ``FULL`` would fsync the WAL at every write for nothing
the log does not already give.

Snapshot bytes: two replicas that applied the same entries hold the same rows, but not the
same pages (the layout depends on the database's history: a replica that installed a
snapshot continues from its compact layout, the stored reply blocks are rewritten at each
commit, and a header's change counter depends on when each checkpointed). A snapshot is
the database rebuilt from its content (``VACUUM INTO``: its layout a function of the
content) with the change counter, the schema cookie and "version-valid-for" set to 1
(``normalize_header``): equal states give equal files. The rebuild reads a page copy made
by the backup API from the read transaction that pins the snapshot's state (``VACUUM
INTO`` cannot run inside a transaction, and would see later writes); it was ``VACUUM`` of
that copy, which wrote the content three times (a temporary database, the rollback
journal, the file) instead of once.

Install (``replace_live``): the snapshot file is copied beside the live database (the
snapshot itself stays in the node's store, to be sent on or restored) and renamed over it,
without waiting for the copy to reach the disk: an ``UNSYNCED`` marker, durable before the
rename, says the live database may be incomplete after a power loss, until a thread has
fsynced it (``settle_live``). A database found with the marker at start is discarded
(``discard_unsynced``): the node then installs its last snapshot again, or replays the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import struct
import threading
from collections.abc import Callable
from pathlib import Path

from zraft.backends import sqlite_replies as replies
from zraft.fsm.backend import SnapshotCorrupted
from zraft.storage.framing import fsync_dir

log = logging.getLogger(__name__)

LIVE = "live.db"
UNSYNCED = "live.unsynced"  # marker: the live database may not be on disk yet
SNAPSHOT_FILE = "db.sqlite"
FORMAT = 2  # the stored replies in blocks (sqlite_replies); 1: a row per reply
READS = (1, 2)  # the formats this code reads
KEEP_REPLIES = 10_000  # replies kept for the entries this far behind the newest
STATEMENT_CACHE = 128  # compiled statements the write connection keeps

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS _zraft_applied(id INTEGER PRIMARY KEY CHECK (id = 0), "
    "format INTEGER NOT NULL)",
    f"INSERT OR IGNORE INTO _zraft_applied VALUES (0, {FORMAT})",
    # a database of format 1 is read as it is, and written as format 2 from now on
    f"UPDATE _zraft_applied SET format = {FORMAT} WHERE format < {FORMAT}",
    "CREATE TABLE IF NOT EXISTS _zraft_replies(idx INTEGER, step INTEGER, reply BLOB, "
    "PRIMARY KEY (idx, step)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS _zraft_reply_blocks(blk INTEGER PRIMARY KEY, "
    "calls BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _zraft_owned(tbl TEXT, rid INTEGER, sid TEXT NOT NULL, "
    "PRIMARY KEY (tbl, rid)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS _zraft_owned_sid ON _zraft_owned(sid, tbl, rid)",
    # key-value tables declared for key watches (sqlite_keys)
    "CREATE TABLE IF NOT EXISTS _zraft_keyed(tbl TEXT PRIMARY KEY, col TEXT NOT NULL) "
    "WITHOUT ROWID",
)


def open_writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, cached_statements=STATEMENT_CACHE,
                           check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    for statement in SCHEMA:
        conn.execute(statement)
    return conn


def open_reader(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                           cached_statements=0, check_same_thread=False)
    conn.execute("PRAGMA query_only=ON")
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    return conn


def applied(conn: sqlite3.Connection) -> tuple[int, int]:
    """The (index, call) of the last write: its reply is the newest one kept (pruning keeps
    the last ``KEEP_REPLIES`` entries), written in the same transaction as its data."""
    return replies.applied(conn)


def covers(stored: tuple[int, int], base: int) -> bool:
    """Can a machine at ``base`` replay up to the database's ``stored`` index by skipping
    (the replies of every call after ``base`` are still kept)?"""
    return stored[0] <= base or stored[0] - KEEP_REPLIES < base + 1


def remove_live(directory: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / (LIVE + suffix))


def normalize_header(path: Path) -> None:
    """Change counter, schema cookie and version-valid-for := 1 (see the module
    docstring). Not fsynced: the snapshot store fsyncs every file it commits."""
    one = struct.pack(">I", 1)
    with open(path, "r+b") as f:
        if os.fstat(f.fileno()).st_size >= 100:
            for offset in (24, 40, 92):
                f.seek(offset)
                f.write(one)


def write_copy(source: sqlite3.Connection, directory: Path) -> None:
    """Write ``source``'s database, as its open read transaction sees it, to a snapshot:
    a page copy (the backup API), rebuilt from its content into the snapshot file."""
    target = Path(directory) / SNAPSHOT_FILE
    pinned = Path(directory) / (SNAPSHOT_FILE + ".pinned")
    copy = sqlite3.connect(pinned, isolation_level=None)
    try:
        source.backup(copy)
        copy.execute("VACUUM INTO ?", (str(target),))
    finally:
        copy.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(pinned) + suffix)
    normalize_header(target)


def snapshot_index(directory: Path) -> tuple[int, int]:
    """The applied index stored in a snapshot; SnapshotCorrupted if it is not one of ours."""
    path = Path(directory) / SNAPSHOT_FILE
    if not path.is_file():
        raise SnapshotCorrupted(f"{path} is missing")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            row = conn.execute("SELECT format FROM _zraft_applied").fetchone()
            index = applied(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise SnapshotCorrupted(f"{path} is not a zraft sqlite snapshot: {exc}") from None
    if row is None or row[0] not in READS:
        raise SnapshotCorrupted(f"{path}: format {row[0] if row else None}; this code reads "
                                f"formats {READS}")
    return index


def replace_live(directory: Path, snapshot_dir: Path) -> None:
    """Make the snapshot the live database: the marker (durable first), a copy (in the
    kernel), an atomic rename; ``settle_live`` makes it durable and removes the marker
    (the connections to the old database are closed by the caller)."""
    (directory / UNSYNCED).touch()
    fsync_dir(directory)
    tmp = directory / (LIVE + ".tmp")
    shutil.copyfile(Path(snapshot_dir) / SNAPSHOT_FILE, tmp)
    with open(tmp, "r+b") as f:  # WAL mode already: no journal_mode change (fsyncs) at open
        f.seek(18)
        f.write(b"\x02\x02")
    remove_live(directory)  # the old WAL must not be applied to the new file
    os.replace(tmp, directory / LIVE)


def settle_live(directory: Path, lock: threading.Lock,
                still_current: Callable[[], bool]) -> None:
    """fsync the live database and its directory, then remove the marker if no later
    install replaced the database meanwhile (``still_current``, asked under ``lock``, which
    the installs hold to count themselves). Runs on a thread of its own; errors leave the
    marker (safe)."""
    try:
        fd = os.open(directory / LIVE, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(directory)
        with lock:
            if still_current():
                os.unlink(directory / UNSYNCED)
    except OSError as exc:
        log.warning("sqlite backend: the installed database was not settled: %s", exc)


def discard_unsynced(directory: Path) -> bool:
    """At start: a live database that may not have reached the disk is removed (True)."""
    if not (directory / UNSYNCED).exists():
        return False
    remove_live(directory)
    os.unlink(directory / UNSYNCED)
    fsync_dir(directory)
    return True
