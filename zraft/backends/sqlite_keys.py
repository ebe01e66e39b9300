"""Watches on the keys of a key-value table: the sqlite backend's ``["get", table, key]``.

A *key-value table* is a table whose PRIMARY KEY is one column (``k TEXT PRIMARY KEY``,
``id INTEGER PRIMARY KEY``, ``WITHOUT ROWID`` too), declared with the write
``["watch_keys", table]`` (``["watch_keys", table, false]`` undoes it; dropping the table
too). ``["get", table, key]`` reads the row whose primary key is ``key`` (0 or 1 row, in
the form of a ``query`` answer); watched, on a declared table it fires ``data_changed``
once when that row is inserted, updated or deleted (also by a session expiry deleting a
temporary row, and when the table is dropped or altered), and not for other rows. On a
table not declared, the watch is on the whole table (it fires at any change to it).

How: the declaration adds TEMP triggers AFTER INSERT / UPDATE / DELETE on the table that
call ``zraft_key_changed(table, key)``, and records the table in ``_zraft_keyed`` (made
with the database, ``sqlite_store``); the backend collects the keys a write changed and
adds ``("key", table, key)`` to its trigger keys (``("keys", table)`` when the table is
dropped or altered). The declaration is a
write, so every replica has the same triggers from the same log entry on (made again from
``_zraft_keyed`` when a connection opens): a statement does the same work everywhere,
which the step limit (``sqlite_rules.MAX_VM_STEPS``) needs, and a new leader fires the
same watches. Only declared tables pay for the triggers (a function call per changed row).

Keys compare as SQLite stores them: the key is converted by the column's type affinity
first (``'7'`` for an INTEGER key is 7). A ``REPLACE`` that deletes a row because of
another UNIQUE column does not run delete triggers (SQLite's rule without recursive
triggers): that row's watch does not fire; on the primary key itself it fires (the insert).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from zraft.backends import sqlite_rules as rules
from zraft.fsm.backend import BadCommand

KEY_FUNCTION = "zraft_key_changed"
MAX_TABLE_NAME = 200
_AFFINITY_COLUMNS = ("i INTEGER", "t TEXT", "b BLOB", "r REAL", "n NUMERIC")


def is_get(query: Any) -> bool:
    return type(query) is list and len(query) > 0 and query[0] == "get"


def is_declaration(command: Any) -> bool:
    return type(command) is list and len(command) > 0 and command[0] == "watch_keys"


def parse_get(query: Any) -> tuple[str, Any]:
    if len(query) != 3:
        raise BadCommand("a key read is [\"get\", table, key]")
    table, key = _table_name(query[1]), query[2]
    if key is None:
        raise BadCommand("the key of a key read is not nil")
    return table, rules.params([key])[0]


def affinity(declared: str) -> str:
    """SQLite's column affinity of a declared type (its documented rules, in order)."""
    t = declared.upper()
    if "INT" in t:
        return "i"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "t"
    if "BLOB" in t or not t:
        return "b"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "r"
    return "n"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class KeyWatches:
    """The key triggers of one write connection, and the keys changed since the last
    ``drain``. ``run`` executes the backend's own statements on the write connection,
    ``read`` on the read connection."""

    def __init__(self, calc: sqlite3.Connection) -> None:
        self.changed: list[tuple[str, ...] | tuple[str, str, Any]] = []
        self._calc = calc  # a private in-memory connection: converts keys by affinity
        calc.execute(f"CREATE TEMP TABLE IF NOT EXISTS aff({', '.join(_AFFINITY_COLUMNS)})")

    # -------------------------------------------------------------- write side

    def attach(self, db: sqlite3.Connection) -> None:
        """A new write connection: the function its triggers call."""
        db.create_function(KEY_FUNCTION, 2, self._key_changed)

    def restore(self, run: Callable[..., Any]) -> None:
        """Make the declared tables' triggers (they are per connection)."""
        for table, column in run("SELECT tbl, col FROM _zraft_keyed ORDER BY tbl").fetchall():
            self._make_triggers(run, table, column)

    def _key_changed(self, table: str, key: Any) -> None:
        self.changed.append(("key", table, key))

    def drain(self) -> list[Any]:
        """The trigger keys of the changes since the last call (each once, in order)."""
        changed, self.changed = self.changed, []
        return list(dict.fromkeys(changed))

    def declare(self, run: Callable[..., Any], command: list[Any]) -> dict[str, Any]:
        """``["watch_keys", table]`` / ``["watch_keys", table, false]``: in the open
        transaction (BadCommand undoes it)."""
        if len(command) not in (2, 3) or (len(command) == 3 and type(command[2]) is not bool):
            raise BadCommand("a key watch declaration is [\"watch_keys\", table] or "
                             "[\"watch_keys\", table, false]")
        table = _table_name(command[1])
        column = self._key_column(run, table)[0]
        lower = table.lower()
        if len(command) == 3 and not command[2]:
            self._drop_triggers(run, lower)
            run("DELETE FROM _zraft_keyed WHERE tbl = ?", (lower,))
            return {"table": table, "key": None}
        self._make_triggers(run, lower, column)
        run("INSERT OR REPLACE INTO _zraft_keyed VALUES (?, ?)", (lower, column))
        return {"table": table, "key": column}

    def _make_triggers(self, run: Callable[..., Any], table: str, column: str) -> None:
        tag, name, lit, col = table.encode().hex(), _quote(table), _literal(table), \
            _quote(column)
        call = f"SELECT {KEY_FUNCTION}({lit}, %s.{col})"
        run(f"CREATE TEMP TRIGGER IF NOT EXISTS _zraft_key_ins_{tag} AFTER INSERT ON "
            f"main.{name} BEGIN {call % 'new'}; END")
        run(f"CREATE TEMP TRIGGER IF NOT EXISTS _zraft_key_upd_{tag} AFTER UPDATE ON "
            f"main.{name} BEGIN {call % 'old'}; {call % 'new'} WHERE new.{col} IS NOT "
            f"old.{col}; END")
        run(f"CREATE TEMP TRIGGER IF NOT EXISTS _zraft_key_del_{tag} AFTER DELETE ON "
            f"main.{name} BEGIN {call % 'old'}; END")

    def _drop_triggers(self, run: Callable[..., Any], table: str) -> None:
        tag = table.encode().hex()
        for kind in ("ins", "upd", "del"):
            run(f"DROP TRIGGER IF EXISTS temp._zraft_key_{kind}_{tag}")

    def schema_changed(self, run: Callable[..., Any], table: str, exists: bool) -> None:
        """``table`` was dropped or altered: every key watch on it fires; if it is gone,
        so is its declaration (a new table of that name starts undeclared)."""
        lower = table.lower()
        if run("SELECT 1 FROM _zraft_keyed WHERE tbl = ?", (lower,)).fetchone() is None:
            return
        self.changed.append(("keys", lower))
        if not exists:
            self._drop_triggers(run, lower)
            run("DELETE FROM _zraft_keyed WHERE tbl = ?", (lower,))

    # -------------------------------------------------------------- read side

    def prepare_get(self, query: list[Any], read: Callable[..., Any]
                    ) -> tuple[str, list[Any], tuple[Any, ...]]:
        """The SQL and parameters of a key read, and its watch keys."""
        table, key = parse_get(query)
        lower = table.lower()
        column, declared = self._key_column(read, table)
        key = self._convert(affinity(declared or ""), key)
        sql = f"SELECT * FROM main.{_quote(table)} WHERE {_quote(column)} = ?"
        keyed = read("SELECT 1 FROM _zraft_keyed WHERE tbl = ?", (lower,)).fetchone() \
            is not None
        return sql, [key], (("key", lower, key), ("keys", lower)) if keyed else (lower,)

    def _key_column(self, read: Callable[..., Any], table: str) -> tuple[str, str]:
        info = read("SELECT name, type, pk FROM main.pragma_table_info(?)",
                    (table,)).fetchall()
        if not info:
            raise BadCommand(f"no such table: {table[:100]}")
        keys = [(name, declared) for name, declared, pk in info if pk]
        if len(keys) != 1:
            raise BadCommand("key watches need a table whose PRIMARY KEY is one column")
        return keys[0]

    def _convert(self, column: str, value: Any) -> Any:
        """``value`` as SQLite stores it in a column of that affinity."""
        calc = self._calc
        calc.execute(f"INSERT INTO temp.aff({column}) VALUES (?)", (value,))
        try:
            return calc.execute(f"SELECT {column} FROM temp.aff").fetchone()[0]
        finally:
            calc.execute("DELETE FROM temp.aff")


def _table_name(table: Any) -> str:
    if type(table) is not str or not table or len(table) > MAX_TABLE_NAME:
        raise BadCommand(f"a table name is a str of 1 to {MAX_TABLE_NAME} characters")
    if table.lower().startswith(rules.INTERNAL_PREFIX):
        raise BadCommand(f"tables named {rules.INTERNAL_PREFIX}* belong to zraft")
    return table


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


__all__ = ["KEY_FUNCTION", "KeyWatches", "affinity", "is_declaration", "is_get", "parse_get"]
