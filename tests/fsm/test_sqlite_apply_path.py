"""The sqlite backend's write path: no savepoint for a one-statement write (a failure is
undone by rolling back the open transaction and running its earlier calls again), replies
stored in blocks (the same bytes however writes were grouped into commits), a database of
format 1 (a row per reply) still replayed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fsm.test_sqlite_backend import T0, Log, backend, rows
from zraft.backends import sqlite_store
from zraft.backends.sqlite import SqliteBackend
from zraft.fsm.backend import ApplyResult, BadCommand
from zraft.fsm.codec import unpackb


@pytest.fixture
def log() -> Log:
    out = Log(backend())
    out.write(["exec", "CREATE TABLE t(k TEXT PRIMARY KEY, v)"])
    return out


@pytest.mark.parametrize("failing", [
    ["exec", "INSERT OR FAIL INTO t SELECT column1, column2 FROM "
             "(VALUES ('p1', 1), ('p2', 2), ('a', 0))"],
    ["exec", "UPDATE OR FAIL t SET k = 'same' WHERE k IN ('a', 'b')"],
])
def test_a_statement_that_fails_partway_leaves_nothing_and_keeps_the_earlier_calls(
        log: Log, failing: Any) -> None:
    """OR FAIL keeps the rows a statement changed before its error: the write answers the
    error and none of them stays, while the calls before it in the open transaction do."""
    log.write(["exec", "INSERT INTO t VALUES ('a', 1)"])
    log.write(["exec", "INSERT INTO t VALUES ('b', 2)"])
    assert log.b._db.in_transaction and len(log.b._pending) >= 2
    assert "UNIQUE constraint failed" in log.fails(failing)
    log.write(["exec", "INSERT INTO t VALUES ('c', 3)"])
    assert rows(log.b, "SELECT k, v FROM t ORDER BY k") == [["a", 1], ["b", 2], ["c", 3]]


def test_a_refused_statement_does_not_roll_back_the_open_transaction(log: Log) -> None:
    """Refused while compiled, a statement never ran: nothing to undo, nothing run again."""
    log.write(["exec", "INSERT INTO t VALUES ('a', 1)"])
    calls: list[str] = []
    log.b._db.set_trace_callback(calls.append)
    assert "not allowed" in log.fails(["exec", "INSERT INTO t VALUES (random(), 1)"])
    assert not [c for c in calls if "ROLLBACK" in c or "INTO t" in c]
    assert rows(log.b, "SELECT k FROM t") == [["a"]]


def _script(n: int) -> list[Any]:
    out: list[Any] = [["exec", "CREATE TABLE t(k TEXT PRIMARY KEY, v)"]]
    for i in range(n):
        if i % 50 == 7:  # a reply too big for its block
            out.append(["exec", "INSERT INTO t VALUES (?, ?) RETURNING v", [f"k{i}", "x" * 3000]])
        elif i % 40 == 3:
            out.append(["exec", "INSERT INTO t VALUES ('k1', 0)"])  # fails: UNIQUE
        else:
            out.append(["exec", "INSERT OR REPLACE INTO t VALUES (?, ?)", [f"k{i % 30}", i]])
    return out


def _apply(b: SqliteBackend, script: list[Any], read_every: int) -> list[Any]:
    answers = []
    for index, command in enumerate(script, 1):
        b.at_index(index)
        try:
            answer = b.apply(command, time_ms=T0)
            assert isinstance(answer, ApplyResult)
            answers.append(answer.result)
        except BadCommand as exc:  # the answer is the error
            answers.append(str(exc))
        if read_every and index % read_every == 0:
            rows(b, "SELECT count(*) FROM t")  # a read commits
    return answers


def test_stored_replies_are_the_same_bytes_however_writes_were_committed(
        tmp_path: Path, monkeypatch: Any) -> None:
    """Two replicas apply the same log, one committing at every write (a read after each),
    the other in groups: their snapshots are equal files, across reply blocks, big
    replies and pruning; and a restart answers the kept entries from the stored replies
    without running their SQL."""
    monkeypatch.setattr(sqlite_store, "KEEP_REPLIES", 90)
    script = _script(200)
    replicas = [backend(tmp_path / "each"), backend(tmp_path / "grouped")]
    answers = [_apply(replicas[0], script, 1), _apply(replicas[1], script, 0)]
    assert answers[0] == answers[1]
    for name, b in zip(("each", "grouped"), replicas, strict=True):
        (tmp_path / f"snap-{name}").mkdir()
        b.snapshot().write(tmp_path / f"snap-{name}")
        b.snapshot_done()
    snaps = [(tmp_path / f"snap-{n}" / sqlite_store.SNAPSHOT_FILE).read_bytes()
             for n in ("each", "grouped")]
    assert snaps[0] == snaps[1]
    replicas[1].close()
    # a restart whose last snapshot is at entry 130: entries 131-201 come from the replies
    early = tmp_path / "snap-130"
    early.mkdir()
    b = backend(tmp_path / "early")
    _apply(b, script[:130], 0)
    b.snapshot().write(early)
    b.snapshot_done()
    restarted = backend(tmp_path / "grouped")
    ran: list[str] = []
    restarted._db.set_trace_callback(ran.append)
    restarted.install_snapshot(early)
    replayed = []
    for index in range(131, len(script) + 1):
        restarted.at_index(index)
        try:
            replayed.append(restarted.apply(script[index - 1], time_ms=T0).result)
        except BadCommand as exc:
            replayed.append(str(exc))
    assert replayed == answers[1][130:]
    assert not [c for c in ran if "INTO t" in c]
    assert restarted.backend_stats()["replayed_calls"] == len(script) - 130


def test_a_database_of_format_1_is_replayed(tmp_path: Path) -> None:
    """Format 1 kept a row per reply in _zraft_replies: its index and replies are read."""
    b = backend(tmp_path / "db")
    script = _script(80)
    answers = _apply(b, script, 0)
    b.close()
    conn = sqlite_store.open_writer(tmp_path / "db" / sqlite_store.LIVE)
    with conn:
        conn.execute("BEGIN")
        for (calls,) in conn.execute("SELECT calls FROM _zraft_reply_blocks").fetchall():
            for idx, step, reply in unpackb(calls):
                if reply is not None:
                    conn.execute("INSERT INTO _zraft_replies VALUES (?, ?, ?)",
                                 (idx, step, reply))
        conn.execute("DELETE FROM _zraft_reply_blocks")
        conn.execute("UPDATE _zraft_applied SET format = 1")
        conn.execute("COMMIT")
    conn.close()
    restarted = backend(tmp_path / "db")
    assert restarted._stored == (len(script), 1)
    replayed = _apply(restarted, script, 0)
    assert replayed == answers
    assert restarted.backend_stats()["replayed_calls"] == len(script)
    restarted.at_index(len(script) + 1)
    restarted.apply(["exec", "INSERT INTO t VALUES ('new', 1)"], time_ms=T0)
    assert rows(restarted, "SELECT v FROM t WHERE k = 'new'") == [[1]]
