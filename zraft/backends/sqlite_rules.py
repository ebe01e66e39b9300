"""The SQLite backend's boundary: request shapes, limits, and what SQL may do.

Nothing here trusts SQL text: what a statement may do is decided by SQLite itself, through
an authorizer consulted while the statement is compiled (every statement is compiled anew:
the connections keep no statement cache), never by parsing the text.

- Writes (``WriteRules``): plain DDL/DML on the ``main`` database. Refused: PRAGMA,
  ATTACH/DETACH, BEGIN/COMMIT/SAVEPOINT (the backend owns transactions), TEMP objects (they
  live in one connection and no snapshot), changes to the backend's own ``_zraft_*``
  tables, and the functions whose answer is not a function of the database and the
  statement (``NONDETERMINISTIC``). The time functions are replaced by versions that read
  the entry's time instead of the clock (``install_entry_clock``).
- Reads (``ReadRules``): SELECT only (plus functions and recursive CTEs); the read
  connection is also opened read-only with ``PRAGMA query_only``.
- Work: a progress handler stops any statement after ``MAX_VM_STEPS`` virtual machine
  steps (deterministic: the same statement on the same database takes the same steps).
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Callable
from typing import Any, NamedTuple

from zraft.fsm.backend import BadCommand

MAX_SQL_CHARS = 100_000
MAX_PARAMS = 1_000
MAX_ROWS_IN = 10_000  # execmany rows, tx statements
MAX_TEXT_BYTES = 16 << 20  # one str/bytes parameter or result value
MAX_ROWS_OUT = 100_000
MAX_RESULT_BYTES = 32 << 20
STEP_CHECK = 1_000  # the progress handler runs every this many VM steps
MAX_VM_STEPS = 10_000_000  # about half a second of SQLite work
INTERNAL_PREFIX = "_zraft"

# answers that depend on the connection or on chance, not on the database and statement
NONDETERMINISTIC = {
    "random": "random() differs on every replica: pass the value as a parameter",
    "randomblob": "randomblob() differs on every replica: pass the value as a parameter",
    "changes": "changes() depends on the connection's history: use RETURNING or the reply",
    "total_changes": "total_changes() depends on the connection's history",
    "last_insert_rowid": "last_insert_rowid() depends on the connection's history: use "
                         "RETURNING or the reply's last_row_id",
    "load_extension": "load_extension() is not allowed",
    "sqlite_offset": "sqlite_offset() depends on the file layout",
}
# time functions: 'now' (and no time value at all) means the entry's time on writes
_TIME_FUNCTIONS = {"date": 0, "time": 0, "datetime": 0, "julianday": 0, "unixepoch": 0,
                   "strftime": 1, "timediff": None}
_NOW_FUNCTIONS = {"current_date": "%Y-%m-%d", "current_time": "%H:%M:%S",
                  "current_timestamp": "%Y-%m-%d %H:%M:%S"}

_A = sqlite3
_DML = {_A.SQLITE_INSERT: "insert", _A.SQLITE_UPDATE: "update", _A.SQLITE_DELETE: "delete"}
_DDL_TABLE = {_A.SQLITE_CREATE_TABLE, _A.SQLITE_DROP_TABLE, _A.SQLITE_CREATE_INDEX,
              _A.SQLITE_DROP_INDEX, _A.SQLITE_CREATE_TRIGGER, _A.SQLITE_DROP_TRIGGER,
              _A.SQLITE_CREATE_VTABLE, _A.SQLITE_DROP_VTABLE}
_DDL_OTHER = {_A.SQLITE_CREATE_VIEW, _A.SQLITE_DROP_VIEW, _A.SQLITE_REINDEX,
              _A.SQLITE_ANALYZE}
_READ_ONLY = {_A.SQLITE_SELECT, _A.SQLITE_READ, _A.SQLITE_FUNCTION, _A.SQLITE_RECURSIVE}
_REFUSED = {
    _A.SQLITE_PRAGMA: "PRAGMA is not allowed",
    _A.SQLITE_ATTACH: "ATTACH is not allowed",
    _A.SQLITE_DETACH: "DETACH is not allowed",
    _A.SQLITE_TRANSACTION: "BEGIN/COMMIT/ROLLBACK are not allowed: use a tx write",
    _A.SQLITE_SAVEPOINT: "SAVEPOINT is not allowed: use a tx write",
}


class Touches(NamedTuple):
    """What one compiled write statement does."""

    tables: frozenset[str]  # tables changed (watch triggers)
    dropped: frozenset[str]  # tables dropped or altered (ownership check)
    inserted: bool  # a top-level INSERT (last_row_id is meaningful)


def _table_arg(action: int, arg1: Any, arg2: Any) -> Any:
    if action in (_A.SQLITE_CREATE_INDEX, _A.SQLITE_DROP_INDEX, _A.SQLITE_CREATE_TRIGGER,
                  _A.SQLITE_DROP_TRIGGER):
        return arg2
    if action == _A.SQLITE_ALTER_TABLE:
        return arg2
    return arg1


class WriteRules:
    """The write connection's authorizer; records what the statement touches."""

    def __init__(self) -> None:
        self.internal = False  # the backend's own statements: everything allowed
        self.denied: str | None = None
        self.tables: set[str] = set()  # tables changed (watch triggers)
        self.dropped: set[str] = set()  # tables dropped or altered (ownership check)
        self.inserted = False  # a top-level INSERT (last_row_id is meaningful)
        self.temp_drop = False
        self.compiled = False  # the authorizer ran: the statement was compiled now

    def reset(self) -> None:
        self.denied = None
        self.tables, self.dropped, self.inserted = set(), set(), False
        self.temp_drop = self.compiled = False

    def touches(self) -> Touches:
        return Touches(frozenset(self.tables), frozenset(self.dropped), self.inserted)

    def __call__(self, action: int, arg1: Any, arg2: Any, db: Any, source: Any) -> int:
        if self.internal:
            return _A.SQLITE_OK
        self.compiled = True
        reason = self._check(action, arg1, arg2, db, source)
        if reason is None:
            return _A.SQLITE_OK
        self.denied = self.denied or reason
        return _A.SQLITE_DENY

    def _check(self, action: int, arg1: Any, arg2: Any, db: Any, source: Any) -> str | None:
        if action in _READ_ONLY:
            if action == _A.SQLITE_FUNCTION and isinstance(arg2, str):
                if arg2.lower() in _TRIGGER_ONLY and not (
                        isinstance(source, str) and source.startswith(INTERNAL_PREFIX)):
                    return f"{arg2.lower()}() belongs to zraft"
                return NONDETERMINISTIC.get(arg2.lower())
            return None
        if action in _REFUSED:
            return _REFUSED[action]
        if action == _A.SQLITE_DROP_TEMP_TRIGGER and isinstance(arg1, str) \
                and arg1.startswith(INTERNAL_PREFIX):
            self.temp_drop = True  # dropping a table drops the ownership triggers on it
            return None
        if self.temp_drop and action == _A.SQLITE_DELETE and arg1 == "sqlite_temp_master":
            return None  # ...from the temp schema table
        if db == "temp" or action in _TEMP_ACTIONS:
            return "TEMP objects are not allowed (they are in no snapshot)"
        name = _table_arg(action, arg1, arg2)
        if isinstance(source, str) and source.startswith(INTERNAL_PREFIX) \
                and db == "main" and action in _DML:
            return None  # the ownership triggers (TEMP: users cannot create or name them)
        if any(isinstance(n, str) and n.lower().startswith(INTERNAL_PREFIX)
               for n in (name, arg1)):
            return f"tables named {INTERNAL_PREFIX}* belong to zraft"
        if action in _DML:
            if not str(name).lower().startswith("sqlite_"):
                self.tables.add(str(name).lower())
            if action == _A.SQLITE_INSERT and source is None:
                self.inserted = True
            return None
        if action in _DDL_TABLE or action == _A.SQLITE_ALTER_TABLE:
            if isinstance(name, str) and not name.lower().startswith("sqlite_"):
                self.tables.add(name.lower())
                if action in (_A.SQLITE_DROP_TABLE, _A.SQLITE_ALTER_TABLE,
                              _A.SQLITE_DROP_VTABLE):
                    self.dropped.add(name)
            return None
        if action in _DDL_OTHER:
            return None
        return f"this kind of statement is not allowed (authorizer action {action})"


# the backend's own functions, for its TEMP triggers only (a client calling one could
# report changes that did not happen)
_TRIGGER_ONLY = {"zraft_key_changed", "zraft_owner"}

_TEMP_ACTIONS = {_A.SQLITE_CREATE_TEMP_INDEX, _A.SQLITE_CREATE_TEMP_TABLE,
                 _A.SQLITE_CREATE_TEMP_TRIGGER, _A.SQLITE_CREATE_TEMP_VIEW,
                 _A.SQLITE_DROP_TEMP_INDEX, _A.SQLITE_DROP_TEMP_TABLE,
                 _A.SQLITE_DROP_TEMP_TRIGGER, _A.SQLITE_DROP_TEMP_VIEW}


class ReadRules:
    """The read connection's authorizer: SELECT only; records the tables read (watches)."""

    def __init__(self) -> None:
        self.denied: str | None = None
        self.tables: set[str] = set()
        self.internal = False  # the backend's own BEGIN/ROLLBACK around a read

    def reset(self) -> None:
        self.denied, self.tables = None, set()

    def __call__(self, action: int, arg1: Any, arg2: Any, db: Any, source: Any) -> int:
        if self.internal:
            return _A.SQLITE_OK
        if action in _READ_ONLY:
            if action == _A.SQLITE_FUNCTION and isinstance(arg2, str) \
                    and arg2.lower() in NONDETERMINISTIC:
                self.denied = self.denied or NONDETERMINISTIC[arg2.lower()]
                return _A.SQLITE_DENY  # a read's answer is a function of the state too
            if action == _A.SQLITE_READ and isinstance(arg1, str) \
                    and not arg1.lower().startswith(INTERNAL_PREFIX):
                self.tables.add(arg1.lower())
            return _A.SQLITE_OK
        self.denied = self.denied or "a query can only read (SELECT)"
        return _A.SQLITE_DENY


class StepBudget:
    """Progress handler: stops a statement after MAX_VM_STEPS steps (then "interrupted")."""

    def __init__(self, limit: int = MAX_VM_STEPS) -> None:
        self.limit, self.used = limit, 0

    def reset(self) -> None:
        self.used = 0

    def __call__(self) -> int:
        self.used += STEP_CHECK
        return 1 if self.used > self.limit else 0

    @property
    def exhausted(self) -> bool:
        return self.used > self.limit


def install_entry_clock(conn: sqlite3.Connection, calc: sqlite3.Connection,
                        now: Callable[[], int]) -> None:
    """Replace the time functions of ``conn``: 'now' is the entry's time ``now()`` (ms since
    the epoch, UTC), the rest is computed by SQLite's own functions on ``calc`` (a private
    in-memory connection). Registered as non-deterministic, so SQLite keeps them out of
    indexes, CHECK constraints and generated columns, where a stored value would depend on
    the day it was computed."""
    available = {name for (name,) in calc.execute("SELECT name FROM pragma_function_list")}

    def now_text() -> str:
        stamp = datetime.datetime.fromtimestamp(now() / 1000, datetime.UTC)
        return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]

    for name, position in _TIME_FUNCTIONS.items():
        if name in available:
            conn.create_function(name, -1, _time_function(name, position, calc, now_text))
    for name, fmt in _NOW_FUNCTIONS.items():
        conn.create_function(name, 0, _now_function(fmt, now))


def _time_function(name: str, position: int | None, calc: sqlite3.Connection,
                   now_text: Callable[[], str]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        values = list(args)
        if position is None:  # timediff(a, b): both are time values
            values = [now_text() if _is_now(v) else v for v in values]
        elif len(values) <= position:
            values.append(now_text())
        elif _is_now(values[position]):
            values[position] = now_text()
        marks = ",".join("?" * len(values))
        return calc.execute(f"SELECT {name}({marks})", values).fetchone()[0]
    return call


def _now_function(fmt: str, now: Callable[[], int]) -> Callable[[], str]:
    def call() -> str:
        stamp = datetime.datetime.fromtimestamp(now() / 1000, datetime.UTC)
        return stamp.strftime(fmt)
    return call


def _is_now(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == "now"


# ------------------------------------------------------------------ request shapes

def sql_text(value: Any) -> str:
    if type(value) is not str:
        raise BadCommand("SQL must be a str")
    if len(value) > MAX_SQL_CHARS:
        raise BadCommand(f"SQL longer than {MAX_SQL_CHARS} characters")
    return value


def params(value: Any) -> list[Any] | dict[str, Any]:
    """Positional (a list) or named (a map of str) parameters of SQL values."""
    if value is None:
        return []
    if type(value) is list:
        if len(value) > MAX_PARAMS:
            raise BadCommand(f"more than {MAX_PARAMS} parameters")
        for v in value:
            _scalar(v)
        return value  # (decoded from the command for this call only: not shared)
    if type(value) is dict:
        if len(value) > MAX_PARAMS:
            raise BadCommand(f"more than {MAX_PARAMS} parameters")
        out: dict[str, Any] = {}
        for k, v in value.items():
            if type(k) is not str:
                raise BadCommand("named parameters are a map of str")
            out[k] = _scalar(v)
        return out
    raise BadCommand("parameters are a list, a map of str, or nil")


_SCALARS = (type(None), int, float, str, bytes, bool)


def _scalar(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is bytes:  # the common cases first
        if len(value) > MAX_TEXT_BYTES:
            raise BadCommand(f"a parameter longer than {MAX_TEXT_BYTES} bytes")
        return value
    if kind not in _SCALARS:
        raise BadCommand("a parameter is nil, an int, a float, a str or bytes, not "
                         f"{kind.__name__[:40]}")
    if kind is int and not -(2**63) <= value < 2**63:
        raise BadCommand("an int parameter must fit in 64 bits")
    if kind in (str, bytes) and len(value) > MAX_TEXT_BYTES:
        raise BadCommand(f"a parameter longer than {MAX_TEXT_BYTES} bytes")
    return value


def rows_in(value: Any, what: str) -> list[Any]:
    if type(value) is not list:
        raise BadCommand(f"{what} is a list")
    if len(value) > MAX_ROWS_IN:
        raise BadCommand(f"more than {MAX_ROWS_IN} {what}")
    return value


def parse_write(command: Any) -> tuple[str, list[tuple[str, Any]]]:
    """``(kind, [(sql, params), ...])`` for exec / execmany / tx; BadCommand otherwise."""
    if type(command) is not list or not command:
        raise BadCommand("a sqlite write is [\"exec\", sql, params], [\"execmany\", sql, "
                         "rows] or [\"tx\", [[sql, params], ...]]")
    head = command[0]
    if head == "exec" and len(command) in (2, 3):
        return "exec", [(sql_text(command[1]), params(command[2] if len(command) == 3
                                                        else None))]
    if head == "execmany" and len(command) == 3:
        sql = sql_text(command[1])
        return "execmany", [(sql, params(row)) for row in rows_in(command[2], "rows")]
    if head == "tx" and len(command) == 2:
        statements = []
        for item in rows_in(command[1], "statements"):
            if type(item) is not list or len(item) not in (1, 2):
                raise BadCommand("a tx statement is [sql] or [sql, params]")
            statements.append((sql_text(item[0]), params(item[1] if len(item) == 2
                                                         else None)))
        return "tx", statements
    raise BadCommand("unknown sqlite write: use exec, execmany or tx")


def parse_query(query: Any) -> tuple[str, Any]:
    if type(query) is list and len(query) in (2, 3) and query[0] == "query":
        return sql_text(query[1]), params(query[2] if len(query) == 3 else None)
    raise BadCommand("a sqlite read is [\"query\", sql, params] or [\"get\", table, key]")


def error_text(exc: BaseException) -> str:
    """``ClassName: message`` of an SQL error, the same on every replica."""
    return f"{type(exc).__name__}: {str(exc)[:300]}"


# errors that say something about this machine, not the statement: a replica that meets
# one cannot know the result the others reached, so the backend stops (see sqlite.py)
ENVIRONMENT_ERRORS = frozenset({
    "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CORRUPT", "SQLITE_CANTOPEN", "SQLITE_NOMEM",
    "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_READONLY", "SQLITE_NOTADB", "SQLITE_PERM",
    "SQLITE_PROTOCOL", "SQLITE_NOLFS",
})


def is_environment_error(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", None) or ""
    return "_".join(name.split("_")[:2]) in ENVIRONMENT_ERRORS
