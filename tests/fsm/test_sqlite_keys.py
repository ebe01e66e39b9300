"""Key reads of the sqlite backend (``["get", table, key]``, ``sqlite_keys``): the row,
the watch keys, the declaration of a key-value table (``["watch_keys", table]``), and the
trigger keys writes give for the rows they change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fsm.test_sqlite_backend import T0, Log, backend
from zraft.backends.sqlite import SqliteBackend
from zraft.fsm.backend import ApplyResult, BadCommand


def triggers(log: Log, command: Any) -> tuple[Any, ...]:
    log.index += 1
    log.b.at_index(log.index)
    answer = log.b.apply(command, time_ms=T0)
    assert isinstance(answer, ApplyResult)
    return answer.trigger_keys


@pytest.fixture
def kv() -> Log:
    out = Log(backend())
    out.write(["exec", "CREATE TABLE kv(k TEXT PRIMARY KEY, v)"])
    out.write(["exec", "INSERT INTO kv VALUES ('a', 1), ('b', 2)"])
    assert out.write(["watch_keys", "kv"]) == {"table": "kv", "key": "k"}
    return out


def test_get_reads_one_row_and_watches_its_key(kv: Log) -> None:
    answer = kv.b.query(["get", "kv", "a"])
    assert answer.value == {"columns": ["k", "v"], "rows": [["a", 1]]}
    assert answer.watch_keys == (("key", "kv", "a"), ("keys", "kv"))
    assert kv.b.query(["get", "KV", "zz"]).value == {"columns": ["k", "v"], "rows": []}


def test_a_table_not_declared_is_watched_whole() -> None:
    log = Log(backend())
    log.write(["exec", "CREATE TABLE kv(k TEXT PRIMARY KEY, v)"])
    assert log.b.query(["get", "kv", "a"]).watch_keys == ("kv",)
    assert triggers(log, ["exec", "INSERT INTO kv VALUES ('a', 1)"]) == ("kv",)  # no cost
    log.write(["watch_keys", "KV"])
    assert log.b.query(["get", "kv", "a"]).watch_keys == (("key", "kv", "a"), ("keys", "kv"))
    assert log.write(["watch_keys", "kv", False]) == {"table": "kv", "key": None}
    assert triggers(log, ["exec", "INSERT INTO kv VALUES ('b', 1)"]) == ("kv",)
    assert log.b.query(["get", "kv", "a"]).watch_keys == ("kv",)


def test_writes_name_the_rows_they_change(kv: Log) -> None:
    assert triggers(kv, ["exec", "UPDATE kv SET v = 6 WHERE k = 'a'"]) == (
        "kv", ("key", "kv", "a"))
    assert triggers(kv, ["exec", "INSERT INTO kv VALUES ('c', 3)"]) == (
        "kv", ("key", "kv", "c"))
    assert triggers(kv, ["exec", "UPDATE kv SET k = 'd' WHERE k = 'c'"]) == (
        "kv", ("key", "kv", "c"), ("key", "kv", "d"))
    assert triggers(kv, ["exec", "INSERT OR REPLACE INTO kv VALUES ('a', 9)"]) == (
        "kv", ("key", "kv", "a"))
    assert triggers(kv, ["exec", "INSERT INTO kv VALUES ('e', 1) ON CONFLICT(k) DO "
                                 "UPDATE SET v = 0"]) == ("kv", ("key", "kv", "e"))
    deleted = triggers(kv, ["exec", "DELETE FROM kv"])  # no truncate shortcut
    assert deleted[0] == "kv" and sorted(deleted[1:]) == [("key", "kv", k) for k in "abde"]
    # a write that fails changes nothing: no key; the next write's keys are its own
    with pytest.raises(BadCommand):
        kv.b.apply(["tx", [["INSERT INTO kv VALUES ('x', 1)"], ["INSERT INTO kv VALUES "
                                                                 "('x', 2)"]]], time_ms=T0)
    assert triggers(kv, ["exec", "INSERT INTO kv VALUES ('y', 1)"]) == (
        "kv", ("key", "kv", "y"))
    # other tables: unaffected
    kv.write(["exec", "CREATE TABLE other(k TEXT PRIMARY KEY)"])
    assert triggers(kv, ["exec", "INSERT INTO other VALUES ('a')"]) == ("other",)


def test_keys_are_compared_as_sqlite_stores_them() -> None:
    log = Log(backend())
    log.write(["exec", "CREATE TABLE n(id INTEGER PRIMARY KEY, v)"])
    log.write(["exec", "CREATE TABLE b(k BLOB PRIMARY KEY, v) WITHOUT ROWID"])
    log.write(["watch_keys", "n"])
    log.write(["watch_keys", "b"])
    assert log.b.query(["get", "n", "7"]).watch_keys[0] == ("key", "n", 7)
    assert triggers(log, ["exec", "INSERT INTO n VALUES (7, 'x')"]) == ("n", ("key", "n", 7))
    assert log.b.query(["get", "n", 7.0]).value["rows"] == [[7, "x"]]
    assert log.b.query(["get", "b", b"\x00"]).watch_keys[0] == ("key", "b", b"\x00")
    assert triggers(log, ["exec", "INSERT INTO b VALUES (?, 1)", [b"\x00"]]) == (
        "b", ("key", "b", b"\x00"))


def test_drop_alter_and_expiry_fire_key_watches(kv: Log) -> None:
    kv.index += 1
    kv.b.at_index(kv.index)
    kv.b.apply_in_session(["exec", "INSERT INTO kv VALUES ('lock', 'me')"], "sid-1")
    kv.index += 1
    kv.b.at_index(kv.index)
    assert kv.b.expire_session("sid-1") == ["kv", ("key", "kv", "lock")]
    assert triggers(kv, ["exec", "ALTER TABLE kv ADD COLUMN w"]) == ("kv", ("keys", "kv"))
    assert triggers(kv, ["exec", "DROP TABLE kv"]) == ("kv", ("keys", "kv"))
    # a new table of that name starts undeclared
    kv.write(["exec", "CREATE TABLE kv(k TEXT PRIMARY KEY, v)"])
    assert triggers(kv, ["exec", "INSERT INTO kv VALUES ('a', 1)"]) == ("kv",)
    kv.write(["watch_keys", "kv"])
    assert triggers(kv, ["exec", "DELETE FROM kv WHERE k = 'a'"]) == (
        "kv", ("key", "kv", "a"))


def test_the_declaration_survives_a_restart_and_a_failed_tx(tmp_path: Path) -> None:
    log = Log(backend(tmp_path / "db"))
    log.write(["exec", "CREATE TABLE kv(k TEXT PRIMARY KEY, v)"])
    log.write(["watch_keys", "kv"])
    # a statement that rolls the whole transaction back: the calls before it run again
    log.write(["exec", "CREATE TABLE t(a)"])
    assert log.fails(["exec", "INSERT OR ROLLBACK INTO kv VALUES ('a', 1), ('a', 2)"]) \
        == "IntegrityError: UNIQUE constraint failed: kv.k"
    assert triggers(log, ["exec", "INSERT INTO kv VALUES ('b', 1)"]) == (
        "kv", ("key", "kv", "b"))
    log.b.close()
    again = Log(backend(tmp_path / "db"))  # a restarted replica: from _zraft_keyed
    again.index = log.index
    assert triggers(again, ["exec", "UPDATE kv SET v = 2"]) == ("kv", ("key", "kv", "b"))
    again.b.close()


@pytest.mark.parametrize(("query", "reason"), [
    (["get", "kv"], "a key read is"),
    (["get", 5, "a"], "a table name is a str"),
    (["get", "kv", None], "not nil"),
    (["get", "kv", [1]], "a parameter is"),
    (["get", "nope", "a"], "no such table: nope"),
    (["get", "pair", 1], "PRIMARY KEY is one column"),
    (["get", "nokey", 1], "PRIMARY KEY is one column"),
    (["watch_keys", "pair"], "PRIMARY KEY is one column"),
    (["watch_keys", "nope"], "no such table"),
    (["watch_keys", "kv", 1], "a key watch declaration is"),
    (["watch_keys"], "a key watch declaration is"),
    (["watch_keys", "_zraft_owned"], "belong to zraft"),
    (["get", "_zraft_replies", 1], "belong to zraft"),
])
def test_bad_key_reads_are_refused(kv: Log, query: Any, reason: str) -> None:
    kv.write(["exec", "CREATE TABLE pair(a, b, v, PRIMARY KEY (a, b))"])
    kv.write(["exec", "CREATE TABLE nokey(a, b)"])
    with pytest.raises(BadCommand, match=reason):
        if query[0] == "get":
            kv.b.query(query)
        else:
            kv.b.apply(query, time_ms=T0)


def test_clients_cannot_call_the_trigger_functions(kv: Log) -> None:
    for sql in ("INSERT INTO kv VALUES ('z', zraft_key_changed('kv', 'a'))",
                "INSERT INTO kv VALUES ('z', zraft_owner())"):
        assert "belongs to zraft" in kv.fails(["exec", sql])


def test_replicas_with_and_without_key_reads_hold_the_same_bytes(tmp_path: Path) -> None:
    """Key reads leave no trace: the database, its stored replies and its snapshot are
    the same on a replica that served key reads as on one that did not."""
    logs = [Log(backend(tmp_path / name)) for name in ("a", "b")]
    commands = [["exec", "CREATE TABLE kv(k TEXT PRIMARY KEY, v)"], ["watch_keys", "kv"],
                ["execmany", "INSERT INTO kv VALUES (?, ?)", [["a", 1], ["b", 2]]],
                ["exec", "UPDATE kv SET v = v + 1"], ["exec", "DELETE FROM kv WHERE k = 'b'"]]
    for i, command in enumerate(commands):
        for log in logs:
            log.write(command)
        if i == 0:
            logs[0].b.query(["get", "kv", "a"])
    files = []
    for log in logs:
        job = log.b.snapshot()
        (out := tmp_path / f"snap-{len(files)}").mkdir()
        job.write(out)
        log.b.snapshot_done()
        files.append((out / "db.sqlite").read_bytes())
    assert files[0] == files[1]
    stored = [log.b.query(["query", "SELECT count(*) FROM kv"]).value for log in logs]
    assert stored[0] == stored[1]
    for log in logs:
        assert isinstance(log.b, SqliteBackend)
        log.b.close()
