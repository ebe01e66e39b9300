"""The sqlite backend's snapshot path: a snapshot is one file rebuilt from the pinned state
(nothing else left in its directory); an install copies it without waiting for the disk,
behind a marker that makes a restart discard a database that may not have reached it."""

from __future__ import annotations

import time
from pathlib import Path

from tests.fsm.test_sqlite_backend import Log, backend, rows
from zraft.backends import sqlite_store


def _snapshot(b: object, directory: Path) -> Path:
    directory.mkdir()
    b.snapshot().write(directory)  # type: ignore[attr-defined]
    b.snapshot_done()  # type: ignore[attr-defined]
    return directory


def test_a_snapshot_directory_holds_the_database_file_only(tmp_path: Path) -> None:
    log = Log(backend(tmp_path / "live"))
    log.write(["exec", "CREATE TABLE t(k TEXT PRIMARY KEY, v)"])
    log.write(["exec", "INSERT INTO t VALUES ('a', 1)"])
    snap = _snapshot(log.b, tmp_path / "snap")
    assert [p.name for p in snap.iterdir()] == [sqlite_store.SNAPSHOT_FILE]
    assert snap.joinpath(sqlite_store.SNAPSHOT_FILE).read_bytes()[18:20] == b"\x01\x01"


def test_an_install_is_settled_and_a_restart_discards_an_unsettled_one(tmp_path: Path) -> None:
    leader = Log(backend(tmp_path / "leader"))
    leader.write(["exec", "CREATE TABLE t(k TEXT PRIMARY KEY, v)"])
    leader.write(["exec", "INSERT INTO t VALUES ('a', 1)"])
    snap = _snapshot(leader.b, tmp_path / "snap")
    live = tmp_path / "follower"
    follower = backend(live)
    follower.install_snapshot(snap)
    assert rows(follower, "SELECT k FROM t") == [["a"]]
    deadline = time.monotonic() + 10
    while (live / sqlite_store.UNSYNCED).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not (live / sqlite_store.UNSYNCED).exists()  # fsynced: the marker is gone
    follower.close()
    kept = backend(live)
    assert kept._stored == (2, 1)  # kept at a restart
    kept.close()
    # a stop before the thread fsynced the copy: the restart does not trust it
    (live / sqlite_store.UNSYNCED).touch()
    restarted = backend(live)
    assert restarted._stored == (0, 0)
    assert not (live / sqlite_store.UNSYNCED).exists()
    restarted.install_snapshot(snap)  # as the node does next: its last snapshot
    assert rows(restarted, "SELECT k FROM t") == [["a"]]
