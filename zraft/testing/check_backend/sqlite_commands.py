"""The conformance checker's commands for the sqlite backend (``backend = "sqlite"``).

Every shape the backend takes: schema changes (also of a table that then disappears, so
rows owned by a session lose their table), exec/execmany/tx with positional and named
parameters, RETURNING, constraint failures (a tx that fails half-way, INSERT OR ROLLBACK),
the time functions
('now' is the entry's time), refused statements (random(), PRAGMA, TEMP objects, writes in
a query), and queries over the tables. Temporary writes come from the checker itself (it
sends some of these writes with ``temporary=True``).
"""

from __future__ import annotations

import random
from typing import Any

from zraft.testing.check_backend.ops import Op, query, write

_TABLES = ("t", "u")
_KEYS = ("a", "b", "c", "d", "k/1", "\u00e9")
_VALUES: tuple[Any, ...] = (0, 1, -7, 2**40, "v", "", b"\x00\xff", None, 1.5)


def _insert(rng: random.Random) -> list[Any]:
    table = rng.choice(_TABLES)
    return [f"INSERT INTO {table}(k, v) VALUES (?, ?)", [rng.choice(_KEYS), rng.choice(_VALUES)]]


def sqlite_commands(rng: random.Random) -> Op:
    r = rng.random()
    table = rng.choice(_TABLES)
    if r < 0.08:
        return write(["exec", f"CREATE TABLE IF NOT EXISTS {table}(k TEXT UNIQUE, v, "
                              "at TEXT DEFAULT CURRENT_TIMESTAMP)"])
    if r < 0.10:
        return write(["exec", f"DROP TABLE IF EXISTS {table}"])
    if r < 0.35:
        return write(["exec", *_insert(rng)])
    if r < 0.42:
        return write(["execmany", f"INSERT OR REPLACE INTO {table}(k, v) VALUES (?, ?)",
                      [[rng.choice(_KEYS), rng.choice(_VALUES)]
                       for _ in range(rng.randint(0, 3))]])
    if r < 0.50:
        return write(["tx", [_insert(rng) for _ in range(rng.randint(1, 3))]])
    if r < 0.56:
        return write(["exec", f"UPDATE {table} SET v = :v, at = datetime('now') "
                              "WHERE k = :k RETURNING k, v, at",
                      {"k": rng.choice(_KEYS), "v": rng.choice(_VALUES)}])
    if r < 0.60:
        return write(["exec", f"DELETE FROM {table} WHERE k = ?", [rng.choice(_KEYS)]])
    if r < 0.62:  # a conflict rolls back the whole open transaction (earlier writes too)
        return write(["exec", f"INSERT OR ROLLBACK INTO {table}(k, v) VALUES (?, 1)",
                      [rng.choice(_KEYS)]])
    if r < 0.66:
        return write(rng.choice((
            ["exec", "SELECT random()"], ["exec", "PRAGMA user_version = 3"],
            ["exec", "CREATE TEMP TABLE x(a)"], ["exec", "BEGIN"], ["exec", 5],
            ["exec", "SELECT 1; SELECT 2"], ["nonsense"], "exec",
            ["exec", f"INSERT INTO {table}(k) VALUES (?)", [[1]]])))
    if r < 0.90:
        return query(["query", f"SELECT k, v, at FROM {table} ORDER BY k"])
    if r < 0.95:
        return query(["query", f"SELECT count(*), total(length(k)) FROM {table}"])
    return query(rng.choice((["query", f"DELETE FROM {table}"], ["query", "SELECT random("
                             ") > 2"], ["query", 1])))
