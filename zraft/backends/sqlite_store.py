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
same pages (the layout depends on how writes were grouped into commits, and a header's
change counter on when each checkpointed). A snapshot is the backup copy rebuilt by
``VACUUM`` (its layout a function of the content), with the change counter, the schema
cookie and "version-valid-for" set to 1 (``normalize_header``): equal states give equal
files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import struct
from pathlib import Path

from zraft.fsm.backend import SnapshotCorrupted

LIVE = "live.db"
SNAPSHOT_FILE = "db.sqlite"
FORMAT = 1
KEEP_REPLIES = 10_000  # replies kept for the entries this far behind the newest
STATEMENT_CACHE = 128  # compiled statements the write connection keeps

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS _zraft_applied(id INTEGER PRIMARY KEY CHECK (id = 0), "
    "format INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO _zraft_applied VALUES (0, 1)",
    "CREATE TABLE IF NOT EXISTS _zraft_replies(idx INTEGER, step INTEGER, reply BLOB, "
    "PRIMARY KEY (idx, step)) WITHOUT ROWID",
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
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
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


_LAST = "SELECT idx, step FROM _zraft_replies ORDER BY idx DESC, step DESC LIMIT 1"


def applied(conn: sqlite3.Connection) -> tuple[int, int]:
    """The (index, call) of the last write: its reply is the newest one kept (pruning keeps
    the last ``KEEP_REPLIES`` entries), written in the same transaction as its data."""
    row = conn.execute(_LAST).fetchone()
    return (row[0], row[1]) if row else (0, 0)


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
    docstring)."""
    one = struct.pack(">I", 1)
    with open(path, "r+b") as f:
        if os.fstat(f.fileno()).st_size >= 100:
            for offset in (24, 40, 92):
                f.seek(offset)
                f.write(one)
        f.flush()
        os.fsync(f.fileno())


def write_copy(source: sqlite3.Connection, directory: Path) -> None:
    """Copy ``source``'s database, as its open read transaction sees it, to a snapshot."""
    target = Path(directory) / SNAPSHOT_FILE
    dst = sqlite3.connect(target, isolation_level=None)
    try:
        source.backup(dst)
        # rebuilt from its content: the page layout of the live database depends on how
        # its writes were grouped into commits, which differs between replicas
        dst.execute("PRAGMA journal_mode=DELETE")
        dst.execute("VACUUM")
    finally:
        dst.close()
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
    if row is None or row[0] != FORMAT:
        raise SnapshotCorrupted(f"{path}: format {row[0] if row else None}; this code reads "
                                f"format {FORMAT}")
    return index


def replace_live(directory: Path, snapshot_dir: Path) -> None:
    """Make the snapshot the live database: copy, fsync, atomic rename (the connections
    to the old one are closed by the caller)."""
    tmp = directory / (LIVE + ".tmp")
    shutil.copyfile(Path(snapshot_dir) / SNAPSHOT_FILE, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    remove_live(directory)  # the old WAL must not be applied to the new file
    os.replace(tmp, directory / LIVE)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
