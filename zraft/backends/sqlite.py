"""``backend = "sqlite"``: a replicated SQLite database whose state lives on disk.

Writes (applied on every replica, in log order, in a transaction committed every
``COMMIT_EVERY`` calls and before any read or snapshot; a write of several statements
in a savepoint, a one-statement write without: ``_undo_call`` says how a failure is undone):

- ``["exec", sql, params]``: one statement; ``["execmany", sql, [params, ...]]``: the
  statement once per row; ``["tx", [[sql, params], ...]]``: the statements in order, all
  or nothing. ``params`` is a list (``?``) or a map of str (``:name``), or nil.
  The answer is ``{"rows_affected": n, "last_row_id": id | None}`` (a list of them for
  ``tx``), plus ``"columns"`` and ``"rows"`` for a statement with ``RETURNING``. An SQL
  error answers ``bad_command: IntegrityError: UNIQUE constraint failed: t.k`` (the
  class and SQLite's message: the same on every replica) and the write has no effect
  (a ``tx``: none of its statements).
- Temporary writes (``temporary=True`` in a session): rows they insert belong to the
  session and are deleted when it ends (rowid tables that exist before the write).

Reads: ``["query", sql, params]`` answers ``{"columns": [...], "rows": [[...], ...]}``,
through the leader (``query``) or on any replica (``query_local``), from a read-only
connection: a read cannot write. A watched read fires ``data_changed`` when a write
changes one of the tables it read. ``["get", table, key]`` reads one row by its primary
key and, watched, fires for that row only on a table declared with the write
``["watch_keys", table]`` (``sqlite_keys``).

Determinism, limits and files: ``sqlite_rules`` and ``sqlite_store``. The time functions
read the entry's time stamp (the leader's clock when it accepted the write, in the log),
``random()`` and other functions whose answer differs per replica are refused.

Restart: every write stores its reply keyed by its log index (``sqlite_replies``: in
blocks of entries, the last ``KEEP_REPLIES`` entries) in the same transaction as its
data, so the newest reply is the database's applied index. A node that restarts keeps
its database; the entries the log replays up to the stored index are answered from the
stored replies without running their SQL. The index comes from the state machine's
``at_index`` hook; ``attach_directory`` (called by the node before ``init``) says where
the live database lives (a private temporary directory if no node calls it, e.g. in tests
and the conformance checker).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, NamedTuple

from zraft.backends import sqlite_keys as keys
from zraft.backends import sqlite_replies as replies
from zraft.backends import sqlite_rules as rules
from zraft.backends import sqlite_store as store
from zraft.fsm import codec
from zraft.fsm.backend import ApplyResult, BadCommand, QueryResult, SnapshotJob
from zraft.fsm.codec import unpackb

log = logging.getLogger(__name__)
COMMIT_EVERY = 64  # calls per commit at most (a read or a snapshot commits first)
COMPILED_KEPT = 8 * store.STATEMENT_CACHE
SQL_KEY_CHARS = 256  # a longer SQL text is keyed by its digest in the compiled record


class SqliteFailed(RuntimeError):
    """The database met an error of this machine (disk full, I/O, corruption): this replica
    cannot know what the others applied, so it refuses everything from then on."""


class SqliteBackend:
    """See the module docstring."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._own_dir: Path | None = None
        self._db: sqlite3.Connection | None = None
        self._ro: sqlite3.Connection | None = None
        self._calc = sqlite3.connect(":memory:", check_same_thread=False)
        self._write_rules = rules.WriteRules()
        self._read_rules = rules.ReadRules()
        self._budget = rules.StepBudget()
        self._time_ms = 0
        self._index = 0  # log index of the entry being applied (at_index)
        self._step = 0  # mutating calls so far within that entry
        self._stored: tuple[int, int] = (0, 0)  # the database's applied (index, step)
        self._committed: tuple[int, int] = (0, 0)  # ... as committed to its file
        self._base: int | None = None  # the machine's index before its first entry
        self._owner: str | None = None  # session of the temporary write in progress
        self._owned_triggers: set[str] = set()
        self._failed: str | None = None
        self._replayed_calls = 0
        self._pending: list[_Call] = []  # calls in the open transaction
        self._temp_count: int | None = None
        self._owner_wrote = False
        self._snapshot_conn: sqlite3.Connection | None = None
        self._snapshot_lock = threading.Lock()
        self._settle_lock = threading.Lock()  # installs vs the thread making one durable
        self._installs = 0
        self._tag = f" /* zraft {secrets.token_hex(8)} */"
        # what the authorizer recorded for each statement text when it was compiled (a
        # statement served from the connection's cache is not authorized again)
        self._compiled: OrderedDict[tuple[str | bytes, int], rules.Touches] = OrderedDict()
        self._version: int | None = None  # the schema version, None: read it again
        self._replies = replies.ReplyLog(self._x, lambda: store.KEEP_REPLIES)
        self._commit_now = False  # a failed call rolled the transaction back: commit
        self._pack = codec.packer().pack  # (apply runs on one thread)
        self._keys = keys.KeyWatches(self._calc)  # key reads' triggers (sqlite_keys)

    # ---------------------------------------------------------------- lifecycle

    def attach_directory(self, directory: Path) -> None:
        """Where the live database lives (the node calls it before ``init``)."""
        self._dir = Path(directory)

    def init(self, peer_id: str) -> None:
        if self._dir is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="zraft-sqlite-"))
            weakref.finalize(self, shutil.rmtree, self._own_dir, True)
            self._dir = self._own_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        if store.discard_unsynced(self._dir):
            log.info("sqlite backend: the database installed before the stop may not have "
                     "reached the disk: discarded")
        self._open()
        self._base = None  # decided by the first entry (or an install_snapshot)

    def _open(self) -> None:
        assert self._dir is not None
        self._temp_count = None
        db = store.open_writer(self._dir / store.LIVE)
        db.set_authorizer(self._write_rules)
        db.set_progress_handler(self._budget, rules.STEP_CHECK)
        db.create_function("zraft_owner", 0, lambda: self._owner)
        rules.install_entry_clock(db, self._calc, lambda: self._time_ms)
        ro = store.open_reader(self._dir / store.LIVE)
        ro.set_authorizer(self._read_rules)
        ro.set_progress_handler(self._budget, rules.STEP_CHECK)
        self._db, self._ro = db, ro
        self._stored = self._committed = store.applied(db)
        self._pending = []
        self._replies.forget()
        self._version = None
        self._compiled.clear()  # a new connection: nothing compiled yet
        self._owned_triggers = set()
        self._keys.attach(db)
        self._restore_triggers()

    def _restore_triggers(self) -> None:
        with self._internal():
            tables = [t for (t,) in self._x("SELECT DISTINCT tbl FROM _zraft_owned")]
        for table in tables:
            self._ensure_triggers(table)
        self._keys.restore(self._x)  # the declared key-value tables' (sqlite_keys)

    def _close(self, discard: bool = False) -> None:
        """``discard``: the database is about to be replaced: its open transaction is
        rolled back, and the checkpoint SQLite makes when its last connection closes is
        not fsynced (it was most of an install's time on a busy disk)."""
        if discard and self._db is not None:
            with contextlib.suppress(sqlite3.Error), self._internal():
                if self._db.in_transaction:
                    self._x("ROLLBACK")
                self._x("PRAGMA synchronous=OFF")
            self._pending = []
            self._replies.forget()
        elif self._db is not None and self._failed is None:
            self._commit()
        for conn in (self._ro, self._db):
            if conn is not None:
                conn.close()
        self._db = self._ro = None

    def close(self) -> None:
        """Release the files (tests and tools; a node's peer just stops)."""
        self._close()

    # ---------------------------------------------------------------- index hook

    def at_index(self, index: int) -> None:
        """The state machine's next calls belong to log entry ``index``."""
        if self._base is None:
            self._begin_replay(index - 1)
        self._index, self._step = index, 0

    def _begin_replay(self, base: int) -> None:
        """The machine's first entry follows ``base`` and no snapshot was installed, so
        ``base`` is 0 (install_snapshot decides otherwise): the database may be ahead (a
        restart without a snapshot). If the stored replies cannot cover the entries up to
        it, start over from empty: the log from index 1 replays everything."""
        self._base = base
        if base > 0 and self._stored[0] != base:
            self._failed = (f"the state machine starts after entry {base} without a "
                            f"snapshot, the database is at {self._stored[0]}")
            raise SqliteFailed(self._failed)
        if self._stored[0] > base and not store.covers(self._stored, base):
            log.info("sqlite backend: database at %d, machine at %d: rebuilding from the log",
                     self._stored[0], base)
            self._close(discard=True)
            assert self._dir is not None
            store.remove_live(self._dir)
            self._open()

    # ---------------------------------------------------------------- writes

    def apply(self, command: Any, *, time_ms: int = 0) -> Any:
        return self._write(command, None, time_ms)

    def apply_in_session(self, command: Any, session_id: str, *, time_ms: int = 0) -> Any:
        return self._write(command, session_id, time_ms)

    def _write(self, command: Any, owner: str | None, time_ms: int) -> Any:
        self._check_failed()
        if (stored := self._stored_reply()) is not None:  # a restart's replay: no parsing
            return stored
        if keys.is_declaration(command):  # ["watch_keys", table]: sqlite_keys
            kind, statements = "watch_keys", [("", command)]
        else:
            kind, statements = rules.parse_write(command)
        replayed = self._replayed()
        if replayed is not None:
            status, value, tables = replayed
            if status == "error":
                raise BadCommand(value)
            return ApplyResult(value, tuple(tables))
        self._time_ms = time_ms
        touched: set[str] = set()
        self._keys.changed.clear()
        if owner is not None:
            self._owner_wrote = True
            self._prepare_ownership()
        self._owner = owner
        try:
            status, value = self._transaction(
                lambda seen: self._run(kind, statements, seen), touched,
                len(statements) > 1)
        finally:
            self._owner = None
        if status == "error":
            raise BadCommand(value)
        if self._keys.changed:  # rows of tables with key reads (sqlite_keys)
            return ApplyResult(value, (*sorted(touched), *self._keys.drain()))
        return ApplyResult(value, tuple(sorted(touched)))

    def _run(self, kind: str, statements: list[tuple[str, Any]], touched: set[str]) -> Any:
        db = self._db
        assert db is not None
        if kind == "watch_keys":
            return self._keys.declare(self._x, statements[0][1])
        results = []
        for sql, args in statements:
            version = self._schema_version()  # a cached statement is valid for it only
            self._write_rules.reset()
            self._budget.reset()
            try:
                cursor = db.execute(sql, args)
                rows = cursor.fetchall() if cursor.description else None
            except sqlite3.Error as exc:
                if self._write_rules.denied is None:
                    self._touches(sql, version)  # compiled (so cached), failed to run
                raise self._sql_error(exc, self._write_rules.denied) from None
            seen = self._touches(sql, version)
            if self._write_rules.compiled or not seen.tables or seen.dropped:
                self._version = None  # compiled now (DDL?), or DDL that did nothing
            touched |= seen.tables
            for table in sorted(seen.dropped):
                self._forget_table(table)
            result: dict[str, Any] = {
                "rows_affected": max(cursor.rowcount, 0),
                "last_row_id": cursor.lastrowid if seen.inserted
                and cursor.rowcount > 0 else None}
            if rows is not None:
                result["columns"] = [d[0] for d in cursor.description]
                result["rows"] = [list(r) for r in rows]
            results.append(result)
        if kind == "exec":
            return results[0]
        if kind == "execmany":
            return {"rows_affected": sum(r["rows_affected"] for r in results),
                    "last_row_id": next((r["last_row_id"] for r in reversed(results)
                                         if r["last_row_id"] is not None), None)}
        return results

    def _touches(self, sql: str, version: int) -> rules.Touches:
        """What ``sql`` touches, as the authorizer recorded it when the statement was
        compiled for this schema ``version``: now, or earlier if the connection's cache
        served it (the cache keeps the most recently run ``STATEMENT_CACHE`` texts, this
        the most recent ``COMPILED_KEPT``; a schema change makes SQLite compile a cached
        statement again). Compiled without a single authorizer call (CREATE TABLE IF NOT
        EXISTS of a table that exists): it touches nothing."""
        # a long text is keyed by its digest: the texts themselves (up to MAX_SQL_CHARS
        # each) would make this hold up to COMPILED_KEPT of them
        compiled = self._compiled
        text: str | bytes = sql if len(sql) <= SQL_KEY_CHARS else \
            hashlib.blake2b(sql.encode(), digest_size=16).digest()
        key = (text, version)
        seen = compiled.get(key)
        if self._write_rules.compiled or seen is None:
            seen = compiled[key] = self._write_rules.touches()
            if len(compiled) > COMPILED_KEPT:
                compiled.popitem(last=False)
        compiled.move_to_end(key)
        return seen

    def _schema_version(self) -> int:
        """``PRAGMA schema_version``, read again only after what may have changed it: a
        statement compiled when it ran (a statement served from the cache was compiled for
        the current schema, and one that changes the schema makes SQLite compile it again
        at its next run), a DDL statement that did nothing, a rollback, an open."""
        if self._version is None:
            self._version = int(self._x("PRAGMA schema_version").fetchone()[0])
        return self._version

    def expire_session(self, session_id: str) -> list[str]:
        self._check_failed()
        replayed = self._replayed()
        if replayed is not None:
            return list(replayed[2])
        touched: set[str] = set()
        self._keys.changed.clear()
        self._transaction(lambda seen: self._expire(session_id, seen), touched)
        return [*sorted(touched), *self._keys.drain()]

    def _expire(self, session_id: str, touched: set[str]) -> None:
        db = self._db
        assert db is not None
        with self._internal():
            owned = self._x("SELECT tbl, rid FROM _zraft_owned WHERE sid = ? "
                               "ORDER BY tbl, rid", (session_id,)).fetchall()
            for table, rid in owned:
                if self._table_exists(table):
                    self._x(f"DELETE FROM main.{_quote(table)} WHERE rowid = ?", (rid,))
                    touched.add(table.lower())
            self._x("DELETE FROM _zraft_owned WHERE sid = ?", (session_id,))

    # ---------------------------------------------------------------- transactions

    def _stored_reply(self) -> Any:
        """The answer of a call the database already holds (a restart replaying the log),
        without checking its command again: checking an ``execmany`` of thousands of rows
        cost several times more than decoding it, on every replayed entry. None: the call
        is not stored (it runs), or no reply is stored for it (a malformed command, which
        counted no call when it ran: ``_write`` parses and refuses it as then)."""
        if self._index == 0 or (self._index, self._step + 1) > self._stored:
            return None
        assert self._db is not None
        reply = self._replies.lookup((self._index, self._step + 1))
        if reply is None:
            return None
        self._step += 1
        self._replayed_calls += 1
        status, value, tables = unpackb(reply)
        if status == "error":
            raise BadCommand(value)
        return ApplyResult(value, tuple(tables))

    def _replayed(self) -> tuple[str, Any, list[str]] | None:
        """Count this call; if the database already holds its effect (a restart replaying
        the log), its stored reply ``(status, value, tables)``; None: run it."""
        if self._index == 0:
            return None
        self._step += 1
        key = (self._index, self._step)
        if key > self._stored:
            return None
        reply = self._replies.lookup(key)
        self._replayed_calls += 1
        if reply is None:
            self._failed = (f"no stored reply for entry {key[0]} call {key[1]}, below the "
                            f"database's index {self._stored}")
            raise SqliteFailed(self._failed)
        status, value, tables = unpackb(reply)
        return status, value, tables

    def _transaction(self, body: Any, touched: set[str],
                     guarded: bool = False) -> tuple[str, Any]:
        """Run ``body(touched)`` and record the applied index and the reply with it, in the
        open transaction (committed every ``COMMIT_EVERY`` calls, and before any read or
        snapshot: the database's commits need not follow the log's, its stored index goes
        with its data). A refused or failing call leaves no effect (the index still
        advances: the entry was applied, its answer is the error): ``guarded`` (a call of
        several statements) runs in a savepoint, rolled back on failure; an unguarded call
        (one statement: no savepoint on the hot path) is undone by ``_undo_call``."""
        db = self._db
        assert db is not None
        key = (self._index, self._step)
        try:
            if not db.in_transaction:
                self._x("BEGIN IMMEDIATE")
                self._pending = []
            outcome = self._attempt(body, key, touched, guarded)
            self._pending.append(_Call(body, self._owner, self._time_ms, key, outcome,
                                       frozenset(touched)))
            if len(self._pending) >= COMMIT_EVERY or self._commit_now:
                self._commit()
        except BaseException as exc:
            self._abandon(exc)
            raise SqliteFailed(self._failed) from None
        return outcome

    def _attempt(self, body: Any, key: tuple[int, int], touched: set[str],
                 guarded: bool) -> tuple[str, Any]:
        if guarded:
            self._x("SAVEPOINT work")
        try:
            outcome: tuple[str, Any] = ("ok", body(touched))
            if guarded:
                self._x("RELEASE work")
        except BadCommand as exc:
            self._undo_call(guarded)
            touched.clear()
            outcome = ("error", str(exc))
        self._record(outcome, touched, key)
        return outcome

    def _undo_call(self, guarded: bool) -> None:
        """Undo the failed call only. Guarded: roll back its savepoint. A statement the
        authorizer refused never ran. Otherwise the call may have changed rows before it
        failed (``OR FAIL``, ``RAISE(FAIL)``), and an interrupt, ``INSERT OR ROLLBACK`` or
        ``RAISE(ROLLBACK)`` makes SQLite roll back the whole transaction: the whole
        transaction is rolled back, the earlier calls since the last commit are run again,
        in order (the same state and commands give the same effects), and the transaction
        is committed after the failed call, so that the next failure has few to run again
        (failures cost at most twice the calls they follow)."""
        db = self._db
        assert db is not None
        with self._internal():
            if db.in_transaction:
                if guarded:
                    self._x("ROLLBACK TO work")
                    self._x("RELEASE work")
                    self._version = None  # the savepoint may have held DDL
                    return
                if self._write_rules.denied is not None:
                    return  # refused while being compiled: nothing ran
                self._x("ROLLBACK")
            self._x("BEGIN IMMEDIATE")
        self._version = None
        self._replies.forget()
        self._commit_now = True
        self._owned_triggers = set()  # made in the transaction: gone with it
        self._restore_triggers()
        pending, self._pending = self._pending, []
        owner, time_ms = self._owner, self._time_ms
        try:
            for call in pending:
                self._owner, self._time_ms = call.owner, call.time_ms
                if call.owner is not None:
                    self._prepare_ownership()
                if call.outcome[0] == "ok":
                    call.body(set())
                self._record(call.outcome, set(call.touched), call.key)
                self._pending.append(call)
        except BadCommand as exc:
            raise SqliteFailed(f"a call replayed after a rollback failed: {exc}") from None
        finally:
            self._owner, self._time_ms = owner, time_ms

    def _commit(self) -> None:
        db = self._db
        if db is not None and db.in_transaction:
            try:
                with self._internal():
                    self._replies.flush(self._stored[0])
                    self._x("COMMIT")
            except BaseException as exc:
                self._abandon(exc)
                raise SqliteFailed(self._failed) from None
        self._pending = []
        self._commit_now = False
        self._committed = self._stored

    def _abandon(self, exc: BaseException) -> None:
        """The open transaction cannot be trusted: roll it back, and stop this replica (the
        calls it held are applied for the state machine but not in the database)."""
        db = self._db
        if db is not None and db.in_transaction:
            with contextlib.suppress(sqlite3.Error), self._internal():
                self._x("ROLLBACK")
        self._pending = []
        self._replies.forget()
        self._failed = self._failed or (
            exc.args[0] if isinstance(exc, SqliteFailed) and exc.args
            else rules.error_text(exc))
        log.error("sqlite backend failed: %s", self._failed)

    def _record(self, outcome: tuple[str, Any], touched: set[str],
                key: tuple[int, int]) -> None:
        if key[0] == 0:
            return
        self._replies.record(key, self._pack([outcome[0], outcome[1], sorted(touched)]))
        self._stored = max(self._stored, key)

    def _sql_error(self, exc: sqlite3.Error, denied: str | None) -> BaseException:
        if denied is not None:
            return BadCommand(f"not allowed: {denied}")
        if self._budget.exhausted:
            return BadCommand(f"stopped after {rules.MAX_VM_STEPS:,} SQLite steps "
                              "(the backend's work limit per statement)")
        if rules.is_environment_error(exc):
            return SqliteFailed(rules.error_text(exc))
        return BadCommand(rules.error_text(exc))

    def _check_failed(self) -> None:
        if self._failed is not None:
            raise SqliteFailed(f"this replica's database failed earlier: {self._failed}")

    def _internal(self) -> _Internal:
        return _Internal(self._write_rules)

    def _x(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        """The backend's own statement (the authorizer lets it through). The write
        connection caches compiled statements
        by their text, and a statement compiled here passed the authorizer as internal:
        the text carries a per-process random tag, so no client's SQL can be that text
        and reuse it."""
        db, rules_ = self._db, self._write_rules
        assert db is not None
        was, rules_.internal = rules_.internal, True
        try:
            return db.execute(sql + self._tag, args)
        finally:
            rules_.internal = was

    # ---------------------------------------------------------------- temporary rows

    def _prepare_ownership(self) -> None:
        """Triggers that record the rows a temporary write inserts (TEMP triggers: they
        are per connection, made again at open for every table that has owned rows)."""
        db = self._db
        assert db is not None
        with self._internal():
            tables = [name for (name, wr) in self._x(
                "SELECT name, wr FROM pragma_table_list WHERE schema = 'main' "
                "AND type = 'table' AND name NOT LIKE 'sqlite%' "
                "AND name NOT LIKE '\\_zraft%' ESCAPE '\\'") if not wr]
        for table in tables:
            self._ensure_triggers(table)

    def _ensure_triggers(self, table: str) -> None:
        if table in self._owned_triggers:
            return
        db = self._db
        assert db is not None
        tag, name = table.encode().hex(), _quote(table)
        literal = "'" + table.replace("'", "''") + "'"
        with self._internal():
            if not self._table_exists(table):
                return
            self._x(f"CREATE TEMP TRIGGER IF NOT EXISTS _zraft_own_{tag} AFTER INSERT "
                       f"ON main.{name} WHEN zraft_owner() IS NOT NULL BEGIN "
                       f"INSERT OR REPLACE INTO _zraft_owned VALUES ({literal}, "
                       f"new.rowid, zraft_owner()); END")
            self._x(f"CREATE TEMP TRIGGER IF NOT EXISTS _zraft_disown_{tag} AFTER DELETE "
                       f"ON main.{name} BEGIN DELETE FROM _zraft_owned WHERE "
                       f"tbl = {literal} AND rid = old.rowid; END")
        self._owned_triggers.add(table)

    def _forget_table(self, table: str) -> None:
        """A table dropped or altered: if it is gone (renamed too), its rows' ownership
        goes with it, so a new table of that name never loses rows to an old session.
        Key watches on it fire (``sqlite_keys``)."""
        exists = self._table_exists(table)
        self._keys.schema_changed(self._x, table, exists)
        if exists:
            return
        db = self._db
        assert db is not None
        tag = table.encode().hex()
        with self._internal():
            self._x("DELETE FROM _zraft_owned WHERE tbl = ?", (table,))
            self._x(f"DROP TRIGGER IF EXISTS temp._zraft_own_{tag}")
            self._x(f"DROP TRIGGER IF EXISTS temp._zraft_disown_{tag}")
        self._owned_triggers.discard(table)

    def _table_exists(self, table: str) -> bool:
        db = self._db
        assert db is not None
        with self._internal():
            return self._x("SELECT 1 FROM main.sqlite_schema WHERE type = 'table' "
                              "AND name = ?", (table,)).fetchone() is not None

    def backend_stats(self) -> dict[str, Any]:
        """In ``stat()["fsm"]["backend"]``: the applied index committed to the database
        file, how many calls a replay answered from stored replies (no SQL run) since
        start, and the file's size."""
        size = 0
        if self._dir is not None:
            for suffix in ("", "-wal"):
                path = self._dir / (store.LIVE + suffix)
                size += path.stat().st_size if path.exists() else 0
        return {"db_index": self._committed[0], "replayed_calls": self._replayed_calls,
                "db_bytes": size, "failed": self._failed}

    def temporary_count(self) -> int:
        """Rows owned by sessions (``stat``, after every batch: counted again only after a
        write that may have changed it)."""
        if self._temp_count is None or self._temp_count > 0 or self._owner_wrote:
            if self._failed is not None:
                return self._temp_count or 0
            self._commit()
            assert self._ro is not None
            self._read_rules.reset()
            self._temp_count = int(self._ro.execute(
                "SELECT count(*) FROM _zraft_owned").fetchone()[0])
            self._owner_wrote = False
        return self._temp_count

    # ---------------------------------------------------------------- reads

    def query(self, query: Any) -> QueryResult:
        self._check_failed()
        self._commit()  # the read connection sees committed writes only
        ro = self._ro
        assert ro is not None
        watch: tuple[Any, ...] | None = None
        if keys.is_get(query):  # ["get", table, key]: watches that row (sqlite_keys)
            sql, args, watch = self._keys.prepare_get(query, self._read_internal)
        else:
            sql, args = rules.parse_query(query)
        self._read_rules.reset()
        self._budget.reset()
        try:
            # a read transaction first: its first read checks the schema, so the query is
            # compiled against the current one (a stale schema gave "no such table" where
            # another replica said "not allowed")
            self._read_rules.internal = True
            try:
                ro.execute("BEGIN")
                ro.execute("SELECT format FROM _zraft_applied").fetchone()
            finally:
                self._read_rules.internal = False
            cursor = ro.execute(sql, args)
            columns = [d[0] for d in cursor.description] if cursor.description else []
            rows, size = [], 0
            for row in cursor:
                rows.append(list(row))
                size += sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in row)
                if len(rows) > rules.MAX_ROWS_OUT or size > rules.MAX_RESULT_BYTES:
                    raise BadCommand(f"the result is larger than {rules.MAX_ROWS_OUT:,} "
                                     f"rows or {rules.MAX_RESULT_BYTES >> 20} MiB: use LIMIT")
        except sqlite3.Error as exc:
            raise self._sql_error(exc, self._read_rules.denied) from None
        finally:
            if ro.in_transaction:
                self._read_rules.internal = True
                try:
                    ro.execute("ROLLBACK")
                finally:
                    self._read_rules.internal = False
        return QueryResult({"columns": columns, "rows": rows},
                           watch or tuple(sorted(self._read_rules.tables)))

    def _read_internal(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        """The backend's own statement on the read connection."""
        ro, rules_ = self._ro, self._read_rules
        assert ro is not None
        was, rules_.internal = rules_.internal, True
        try:
            return ro.execute(sql, args)
        finally:
            rules_.internal = was

    # ---------------------------------------------------------------- snapshots

    def snapshot(self) -> SnapshotJob:
        """A read transaction opened now pins the database as of this index; the copy is
        made from it on the snapshot thread while writes go on (WAL: readers and the
        writer do not block each other)."""
        self._check_failed()
        self._commit()
        assert self._dir is not None
        source = store.open_reader(self._dir / store.LIVE)
        source.execute("BEGIN")
        source.execute("SELECT format FROM _zraft_applied").fetchone()  # starts the read
        with self._snapshot_lock:
            self._snapshot_conn = source

        def write(directory: Path) -> None:
            try:
                store.write_copy(source, Path(directory))
            finally:
                self._end_snapshot(source)

        return SnapshotJob("async", write)

    def _end_snapshot(self, source: sqlite3.Connection | None = None) -> None:
        with self._snapshot_lock:
            conn, self._snapshot_conn = self._snapshot_conn, None
        for c in {id(x): x for x in (conn, source) if x is not None}.values():
            c.close()

    def snapshot_done(self) -> None:
        self._end_snapshot()

    def snapshot_failed(self, reason: str) -> None:
        self._end_snapshot()

    def install_snapshot(self, directory: Path) -> None:
        """Replace the database by the snapshot's, unless this database already holds a
        later state of the same log that the stored replies can replay from the
        snapshot's index (a restart: the node installs its last snapshot first)."""
        # the index of the snapshot's last write (the machine's snapshot index may be
        # later: entries without a backend call, such as no-ops, store nothing)
        index, _step = store.snapshot_index(Path(directory))
        if self._failed is None and self._stored[0] >= index > 0 \
                and store.covers(self._stored, index):
            self._base = index
            log.info("sqlite backend: keeping the database at %s over snapshot %d",
                     self._stored, index)
            return
        self._close(discard=True)
        assert self._dir is not None
        with self._settle_lock:
            self._installs += 1
            generation = self._installs
        store.replace_live(self._dir, Path(directory))
        self._open()
        self._failed = None
        self._base = index
        live_dir = self._dir

        threading.Thread(target=store.settle_live,
                         args=(live_dir, self._settle_lock,
                               lambda: self._installs == generation),
                         name="zraft-sqlite-settle", daemon=True).start()


class _Call(NamedTuple):
    """One call in the open transaction, enough to run it again (``_undo_call``)."""

    body: Any
    owner: str | None
    time_ms: int
    key: tuple[int, int]  # (log index, call within the entry)
    outcome: tuple[str, Any]
    touched: frozenset[str]


class _Internal:
    """The backend's own statements pass the write authorizer."""

    def __init__(self, rules_: rules.WriteRules) -> None:
        self.rules = rules_

    def __enter__(self) -> None:
        self._was, self.rules.internal = self.rules.internal, True

    def __exit__(self, *exc: Any) -> None:
        self.rules.internal = self._was


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


__all__ = ["SqliteBackend", "SqliteFailed"]
