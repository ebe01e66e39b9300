"""The sqlite backend in-process: writes, reads, the boundary, determinism, temporary rows,
snapshots while writes go on, and a restart that replays the log only after the database's
stored index (through the real StateMachine)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.fsm.fsm_helpers import Feeder
from zraft.backends import sqlite_rules, sqlite_store
from zraft.backends.sqlite import SqliteBackend
from zraft.fsm import commands as cmd
from zraft.fsm.backend import ApplyResult, BadCommand
from zraft.fsm.machine import StateMachine
from zraft.fsm.registry import load_backend

T0 = 1_700_000_000_123  # 2023-11-14 22:13:20.123 UTC


def backend(directory: Path | None = None) -> SqliteBackend:
    b = SqliteBackend()
    if directory is not None:
        b.attach_directory(directory)
    b.init("p1")
    return b


class Log:
    """Feeds a backend as the state machine does: at_index, then the call."""

    def __init__(self, b: SqliteBackend) -> None:
        self.b, self.index = b, 0

    def write(self, command: Any, time_ms: int = T0) -> Any:
        self.index += 1
        self.b.at_index(self.index)
        answer = self.b.apply(command, time_ms=time_ms)
        assert isinstance(answer, ApplyResult)
        return answer.result

    def fails(self, command: Any) -> str:
        self.index += 1
        self.b.at_index(self.index)
        with pytest.raises(BadCommand) as info:
            self.b.apply(command, time_ms=T0)
        return str(info.value)


def rows(b: SqliteBackend, sql: str, params: Any = None) -> list[list[Any]]:
    return b.query(["query", sql, params]).value["rows"]


@pytest.fixture
def log() -> Log:
    b = backend()
    out = Log(b)
    out.write(["exec", "CREATE TABLE t(k TEXT PRIMARY KEY, v)"])
    return out


def test_sqlite_is_a_builtin_name_on_the_default_allowlist() -> None:
    from zraft.config import NodeConfig

    assert "sqlite" in NodeConfig().backends
    assert isinstance(load_backend("sqlite", ["sqlite"]), SqliteBackend)


def test_exec_execmany_and_returning(log: Log) -> None:
    assert log.write(["exec", "INSERT INTO t VALUES (?, ?)", ["a", 1]]) == {
        "rows_affected": 1, "last_row_id": 1}
    assert log.write(["execmany", "INSERT INTO t VALUES (:k, :v)",
                      [{"k": "b", "v": 2}, {"k": "c", "v": None}]]) == {
        "rows_affected": 2, "last_row_id": 3}
    assert log.write(["exec", "UPDATE t SET v = v + 1 WHERE v IS NOT NULL RETURNING k, v"]) \
        == {"rows_affected": 2, "last_row_id": None, "columns": ["k", "v"],
            "rows": [["a", 2], ["b", 3]]}
    answer = log.b.query(["query", "SELECT k, v FROM t WHERE k > ? ORDER BY k", ["a"]])
    assert answer.value == {"columns": ["k", "v"], "rows": [["b", 3], ["c", None]]}
    assert answer.watch_keys == ("t",)


def test_a_failed_tx_leaves_nothing_and_says_why(log: Log) -> None:
    log.write(["exec", "INSERT INTO t VALUES ('a', 1)"])
    reason = log.fails(["tx", [["INSERT INTO t VALUES ('b', 2)"],
                               ["UPDATE t SET v = 9 WHERE k = 'a'"],
                               ["INSERT INTO t VALUES ('a', 3)"]]])
    assert reason == "IntegrityError: UNIQUE constraint failed: t.k"
    assert rows(log.b, "SELECT k, v FROM t") == [["a", 1]]
    assert log.write(["tx", [["INSERT INTO t VALUES ('b', 2)"], ["DELETE FROM t WHERE k = ?",
                                                                 ["a"]]]]) == [
        {"rows_affected": 1, "last_row_id": 2}, {"rows_affected": 1, "last_row_id": None}]


@pytest.mark.parametrize(("command", "reason"), [
    ("exec", "a sqlite write is"),
    (["exec"], "unknown sqlite write"),
    (["exec", 5], "SQL must be a str"),
    (["exec", "x" * (sqlite_rules.MAX_SQL_CHARS + 1)], "SQL longer than"),
    (["exec", "SELECT ?", [1.5j]], "a parameter is nil"),
    (["exec", "SELECT ?", [[1]]], "a parameter is nil"),
    (["exec", "SELECT ?", [2**64]], "fit in 64 bits"),
    (["exec", "SELECT ?", list(range(sqlite_rules.MAX_PARAMS + 1))], "more than"),
    (["exec", "SELECT :a", {1: 2}], "map of str"),
    (["exec", "SELECT 1", "params"], "parameters are a list"),
    (["execmany", "SELECT ?", 3], "rows is a list"),
    (["tx", [["SELECT 1", [], "extra"]]], "a tx statement is"),
    (["tx", [[]]], "a tx statement is"),
    (["exec", "SELECT 1; SELECT 2"], "only execute one statement"),
    (["exec", "SELECT random()"], "random() differs"),
    (["exec", "INSERT INTO t VALUES (hex(randomblob(4)), 1)"], "randomblob() differs"),
    (["exec", "INSERT INTO t VALUES ('x', last_insert_rowid())"], "last_insert_rowid()"),
    (["exec", "INSERT INTO t VALUES ('x', changes())"], "changes()"),
    (["exec", "PRAGMA journal_mode = DELETE"], "PRAGMA is not allowed"),
    (["exec", "ATTACH DATABASE '/tmp/x.db' AS x"], "ATTACH is not allowed"),
    (["exec", "BEGIN"], "use a tx write"),
    (["exec", "SAVEPOINT a"], "use a tx write"),
    (["exec", "CREATE TEMP TABLE x(a)"], "TEMP objects"),
    (["exec", "DELETE FROM _zraft_applied"], "belong to zraft"),
    (["exec", "CREATE TABLE _zraft_mine(a)"], "belong to zraft"),
    (["exec", "CREATE TRIGGER _zraft_own_74 AFTER INSERT ON t BEGIN "
              "DELETE FROM _zraft_owned; END"], "belong to zraft"),
    (["exec", "INSERT INTO nowhere VALUES (1)"], "OperationalError: no such table: nowhere"),
    # the texts of the backend's own statements (compiled and cached as internal) are
    # compiled again for a client, and refused
    (["exec", "COMMIT"], "use a tx write"),
    (["exec", "BEGIN IMMEDIATE"], "use a tx write"),
    (["exec", "INSERT OR REPLACE INTO _zraft_replies VALUES (?, ?, ?)", [9, 9, b""]],
     "belong to zraft"),
])
def test_hostile_writes_are_refused_and_change_nothing(log: Log, command: Any,
                                                       reason: str) -> None:
    before = sqlite_store.applied(log.b._db)
    assert reason in log.fails(command)
    assert rows(log.b, "SELECT count(*) FROM t") == [[0]]
    # a refused statement is still an applied entry (once its shape was valid)
    assert sqlite_store.applied(log.b._db) >= before


def test_runaway_statements_stop_at_the_work_limit(log: Log, monkeypatch: Any) -> None:
    monkeypatch.setattr(log.b._budget, "limit", 200_000)
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    assert "SQLite steps" in log.fails(["exec", endless + "INSERT INTO t SELECT x, x FROM c"])
    with pytest.raises(BadCommand, match="SQLite steps"):
        log.b.query(["query", endless + "SELECT count(*) FROM c"])
    assert rows(log.b, "SELECT count(*) FROM t") == [[0]]


@pytest.mark.parametrize("sql", [
    "DELETE FROM t", "INSERT INTO t VALUES (1, 2)", "UPDATE t SET v = 1", "DROP TABLE t",
    "CREATE TABLE x(a)", "PRAGMA query_only = 0", "ATTACH DATABASE ':memory:' AS m",
    "BEGIN IMMEDIATE", "SELECT random()",
    "WITH x AS (SELECT 1) INSERT INTO t SELECT 'k', 1 FROM x",
])
def test_a_read_cannot_write(log: Log, sql: str) -> None:
    with pytest.raises(BadCommand, match="not allowed"):
        log.b.query(["query", sql])
    assert rows(log.b, "SELECT count(*) FROM t") == [[0]]
    assert log.write(["exec", "INSERT INTO t VALUES ('k', 1)"])["rows_affected"] == 1


def test_the_read_connection_is_read_only_below_the_authorizer(log: Log) -> None:
    """Enforced twice: even with the authorizer gone, the connection cannot write."""
    log.b._commit()
    log.b._ro.set_authorizer(None)
    with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only|query_only"):
        log.b._ro.execute("INSERT INTO t VALUES ('x', 1)")


def test_bad_queries() -> None:
    b = backend()
    for query, reason in ((["gets", "k"], "a sqlite read is"), (["query", 1], "SQL must"),
                          (["query", "SELECT * FROM nowhere"], "no such table")):
        with pytest.raises(BadCommand, match=reason):
            b.query(query)


def test_now_is_the_entry_time_so_replicas_agree(tmp_path: Path) -> None:
    replicas = [backend(tmp_path / "a"), backend(tmp_path / "b")]
    script = [["exec", "CREATE TABLE e(id INTEGER PRIMARY KEY, at TEXT DEFAULT "
                       "CURRENT_TIMESTAMP, d, j, s, u)"],
              ["exec", "INSERT INTO e(d, j, s, u) VALUES (date('now'), julianday('now'), "
                       "strftime('%s', 'now'), unixepoch())"],
              ["exec", "INSERT INTO e(d, j, s) VALUES (datetime('now', '+1 day'), time(), "
                       "current_date || ' ' || current_time)"]]
    for b in replicas:
        log = Log(b)
        for command in script:
            log.write(command, time_ms=T0)
        b.close()
    files = [(tmp_path / name / sqlite_store.LIVE).read_bytes() for name in "ab"]
    b = backend(tmp_path / "a")
    assert rows(b, "SELECT at, d, j, s, u FROM e ORDER BY id") == [
        ["2023-11-14 22:13:20", "2023-11-14", 2460263.4259273494, "1700000000", 1700000000],
        ["2023-11-14 22:13:20", "2023-11-15 22:13:20", "22:13:20", "2023-11-14 22:13:20",
         None]]
    assert files[0] == files[1]


def test_temporary_rows_belong_to_their_session(log: Log) -> None:
    b = log.b
    log.index += 1
    b.at_index(log.index)
    b.apply_in_session(["exec", "INSERT INTO t VALUES ('s1', 1)"], "sid-1")
    b.apply_in_session(["execmany", "INSERT INTO t VALUES (?, 2)", [["s2a"], ["s2b"]]], "sid-2")
    log.write(["exec", "INSERT INTO t VALUES ('keep', 3)"])
    log.write(["exec", "DELETE FROM t WHERE k = 's2a'"])  # deleted early: forgotten
    assert b.temporary_count() == 2
    log.index += 1
    b.at_index(log.index)
    assert b.expire_session("sid-2") == ["t"]
    assert rows(b, "SELECT k FROM t ORDER BY k") == [["keep"], ["s1"]]
    # a table dropped and made again does not lose rows to the old session
    log.write(["exec", "DROP TABLE t"])
    log.write(["exec", "CREATE TABLE t(k, v)"])
    log.write(["exec", "INSERT INTO t VALUES ('new', 1)"])
    assert b.expire_session("sid-1") == []
    assert rows(b, "SELECT k FROM t") == [["new"]] and b.temporary_count() == 0


def test_snapshot_is_the_state_when_taken_while_writes_go_on(log: Log, tmp_path: Path) -> None:
    log.write(["exec", "INSERT INTO t VALUES ('a', 1)"])
    job = log.b.snapshot()
    assert job.mode == "async"
    log.write(["exec", "INSERT INTO t VALUES ('b', 2)"])  # after the snapshot point
    (tmp_path / "snap").mkdir()
    job.write(tmp_path / "snap")
    log.b.snapshot_done()
    log.write(["exec", "INSERT INTO t VALUES ('c', 3)"])
    other = backend(tmp_path / "follower")
    other.install_snapshot(tmp_path / "snap")
    assert rows(other, "SELECT k FROM t ORDER BY k") == [["a"]]
    assert sqlite_store.snapshot_index(tmp_path / "snap") == (2, 1)


def test_install_replaces_a_database_ahead_of_nothing(tmp_path: Path) -> None:
    """A follower's own rows vanish when the leader's snapshot is installed over them."""
    leader, follower = backend(tmp_path / "l"), backend(tmp_path / "f")
    Log(leader).write(["exec", "CREATE TABLE x(a)"])
    (tmp_path / "snap").mkdir()
    leader.snapshot().write(tmp_path / "snap")
    leader.snapshot_done()
    follower.install_snapshot(tmp_path / "snap")
    assert rows(follower, "SELECT name FROM sqlite_schema WHERE name = 'x'") == [["x"]]


def _machine(b: SqliteBackend) -> tuple[StateMachine, Feeder]:
    machine = StateMachine(b, "p1@127.0.0.1:9000", max_log_count=0)
    return machine, Feeder(machine)


def test_restart_replays_only_after_the_stored_index(tmp_path: Path, monkeypatch: Any) -> None:
    """Through the real StateMachine: a restarted peer (its snapshot, then the log after
    it) runs no SQL for the entries its database already holds, answers them with the
    stored replies (a session's cached reply too) without checking their commands again
    (a malformed one is refused as when it ran), and runs the rest."""
    live = tmp_path / "live"
    machine, feed = _machine(backend(live))
    entries = [feed.entry(cmd.encode_write(["exec", "CREATE TABLE c(n INTEGER)"]), T0)]
    machine.apply(entries)
    (tmp_path / "snap" / "data").mkdir(parents=True)
    image = machine.take_snapshot()
    image.write(tmp_path / "snap")
    machine.snapshot_done(image)
    tail = [cmd.encode_connect("s", 60_000),
            cmd.encode_write(["exec", "INSERT INTO c VALUES (1)"]),
            cmd.encode_session_write("s", 1, 0, ["exec", "INSERT INTO c VALUES (2)"]),
            cmd.encode_write(["exec"]),  # malformed: no call counted, no reply stored
            cmd.encode_write(["execmany", "INSERT INTO c VALUES (?)", [[4], [5]]]),
            cmd.encode_write(["exec", "INSERT INTO c VALUES ('x', 'y')"])]  # bad_command
    log, first = list(entries), []
    for data in tail:
        log.append(feed.entry(data, T0))
        first += machine.apply([log[-1]]).replies
    machine.backend.close()
    # the restart: a new backend on the same files, the snapshot, then the whole log
    restarted = backend(live)
    calls: list[str] = []
    restarted._db.set_trace_callback(calls.append)
    machine2, _ = _machine(restarted)
    kept = restarted._db
    machine2.restore(tmp_path / "snap")
    assert restarted._db is kept  # the snapshot was not copied over the newer database
    parsed: list[Any] = []
    real_parse = sqlite_rules.parse_write
    monkeypatch.setattr(sqlite_rules, "parse_write",
                        lambda c: (parsed.append(c), real_parse(c))[1])
    batch = machine2.apply(log)
    assert parsed == [["exec"]]  # only the malformed command, which has no stored reply
    assert [c for c in calls if "INTO c" in c] == []  # nothing ran again
    assert [(r.result, r.error) for r in batch.replies] == [(r.result, r.error)
                                                            for r in first]
    assert "bad_command" in (batch.replies[-1].error or "")
    assert batch.replies[1].result == {"rows_affected": 1, "last_row_id": 1}
    assert machine2.sessions.to_bytes() == machine.sessions.to_bytes()
    feed2 = Feeder(machine2)
    machine2.apply([feed2.entry(cmd.encode_write(["exec", "INSERT INTO c VALUES (3)"]), T0)])
    assert rows(restarted, "SELECT n FROM c ORDER BY n") == [[1], [2], [3], [4], [5]]
    assert sqlite_store.applied(restarted._db)[0] == len(log) + 1


def test_restart_without_stored_replies_rebuilds_from_the_log(tmp_path: Path,
                                                              monkeypatch: Any) -> None:
    """The database is further ahead of the machine than the kept replies reach: it starts
    over from empty and the log replays everything (correct, only slower)."""
    monkeypatch.setattr(sqlite_store, "KEEP_REPLIES", 2)
    live = tmp_path / "live"
    machine, feed = _machine(backend(live))
    log = []
    for data in (["exec", "CREATE TABLE c(n)"], *(["exec", f"INSERT INTO c VALUES ({i})"]
                                                  for i in range(4))):
        log.append(feed.entry(cmd.encode_write(data), T0))
        machine.apply([log[-1]])
    machine.backend.close()
    restarted = backend(live)
    machine2, _ = _machine(restarted)
    batch = machine2.apply(log)
    assert all(r.error is None for r in batch.replies)
    assert rows(restarted, "SELECT count(*) FROM c") == [[4]]


def test_environment_errors_stop_the_replica(log: Log, monkeypatch: Any) -> None:
    """A disk error cannot be a result (the other replicas did not meet it): every later
    call on this replica raises, instead of going on with a database that differs."""
    from zraft.backends.sqlite import SqliteFailed

    class Full(sqlite3.OperationalError):
        sqlite_errorname = "SQLITE_FULL"

    def boom() -> None:
        raise Full("database or disk is full")

    log.index += 1
    log.b.at_index(log.index)
    with pytest.raises(SqliteFailed):
        log.b._transaction(boom, set())
    with pytest.raises(SqliteFailed, match="failed earlier"):
        log.b.apply(["exec", "INSERT INTO t VALUES ('a', 1)"])
    with pytest.raises(SqliteFailed):
        log.b.query(["query", "SELECT 1"])


def test_watch_keys_follow_the_schema_when_a_statement_comes_from_the_cache(log: Log) -> None:
    """The write connection caches compiled statements; what one changes (its trigger
    keys) is what it did when compiled for the current schema, on every replica alike."""
    def keys(command: Any) -> tuple[Any, ...]:
        log.index += 1
        log.b.at_index(log.index)
        return log.b.apply(command).trigger_keys

    drop = ["exec", "DROP TABLE IF EXISTS u"]
    assert keys(["exec", "CREATE TABLE u(a)"]) == ("u",)
    assert keys(drop) == ("u",)
    assert keys(drop) == ()  # the same text, now dropping nothing
    assert keys(["exec", "CREATE TABLE IF NOT EXISTS u(a)"]) == ("u",)
    assert keys(drop) == ("u",)
    assert keys(drop) == ()
    fresh = backend()  # a replica whose connection never compiled these
    fresh.at_index(1)
    assert fresh.apply(drop).trigger_keys == ()


@pytest.mark.parametrize("rollback", [
    ["exec", "INSERT OR ROLLBACK INTO t VALUES ('a', 3)"],
    ["tx", [["INSERT INTO t VALUES ('z', 0)"],
            ["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
             "INSERT INTO t SELECT 'r' || x, x FROM c"]]],
])
def test_a_statement_that_rolls_back_the_whole_transaction_keeps_the_earlier_calls(
        log: Log, rollback: Any, monkeypatch: Any) -> None:
    """Writes are committed in groups; SQLite rolls back the whole open transaction on an
    interrupt or INSERT OR ROLLBACK: the calls before it in that transaction run again."""
    monkeypatch.setattr(log.b._budget, "limit", 200_000)
    log.write(["exec", "INSERT INTO t VALUES ('a', 1)"])
    log.index += 1
    log.b.at_index(log.index)
    log.b.apply_in_session(["exec", "INSERT INTO t VALUES ('tmp', 2)"], "sid")
    assert log.b._db.in_transaction and len(log.b._pending) >= 2
    log.fails(rollback)
    log.write(["exec", "INSERT INTO t VALUES ('b', 4)"])
    assert rows(log.b, "SELECT k, v FROM t ORDER BY k") == [["a", 1], ["b", 4], ["tmp", 2]]
    log.index += 1
    log.b.at_index(log.index)
    assert log.b.expire_session("sid") == ["t"]  # the redone write still belongs to it
    assert rows(log.b, "SELECT k FROM t ORDER BY k") == [["a"], ["b"]]
