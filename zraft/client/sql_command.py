"""``zraft sql``: a shell for a cluster of the sqlite backend (as ``sqlite3`` and rqlite's
shell behave).

``zraft sql --dir D "SELECT ..."`` (or ``--peers``) runs one statement and prints an
aligned table (``--json``: the answer as JSON); without a statement it reads statements
from the terminal (ended by ``;``, with readline history in ``~/.zraft_sql_history``) or
from stdin. A statement that starts with SELECT, WITH, VALUES or EXPLAIN is a read
(through the leader, or ``--local`` from the first peer), anything else a write
(``["exec", sql]``); ``--query`` / ``--exec`` force the kind. This choice is only the
shell's convenience: the nodes enforce that a read cannot write, whatever it says.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

from zraft.client import api
from zraft.client.cli_support import Target, _common, _emit, _runner
from zraft.errors import ZRaftError

READ_WORDS = ("select", "with", "values", "explain")
HISTORY = "~/.zraft_sql_history"
PROMPT, MORE = "zraft> ", "   ...> "


def is_read(sql: str) -> bool:
    words = sql.lstrip().split(None, 1)
    return bool(words) and words[0].lower().rstrip("(") in READ_WORDS


def cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return "x'" + value.hex() + "'"
    return str(value)


def _numeric(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def table(columns: list[str], rows: list[list[Any]]) -> str:
    """An aligned table, numbers to the right, with a row count (as sqlite3's .mode
    column, plus the count)."""
    texts = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in texts)]) for i, c in enumerate(columns)]
    right = [bool(rows) and all(_numeric(r[i]) for r in rows) for i in range(len(columns))]

    def line(items: list[str]) -> str:
        return "  ".join(t.rjust(w) if r else t.ljust(w)
                         for t, w, r in zip(items, widths, right, strict=True)).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)] if columns else []
    out += [line(r) for r in texts]
    out.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(out)


def show_write(result: Any) -> str:
    parts = result if isinstance(result, list) else [result]
    out = []
    for r in parts:
        if isinstance(r, dict) and "columns" in r:
            out.append(table(r["columns"], r["rows"]))
        if isinstance(r, dict):
            out.append(f"rows affected: {r.get('rows_affected')}, last row id: "
                       f"{cell(r.get('last_row_id'))}")
    return "\n".join(out)


def run_one(args: argparse.Namespace, t: Target, sql: str) -> None:
    read = args.query or (not args.exec and is_read(sql))
    if read:
        request = ["query", sql, []]
        if args.local:
            answer = api.query_local(t.peers[0], request, t.timeout, pool=t.pool)
        else:
            answer, _ = api.query(t.session(), request, t.timeout, pool=t.pool)
        _emit(args, answer, table(answer["columns"], answer["rows"]))
    else:
        result, _ = api.write(t.session(), ["exec", sql, []], t.timeout, pool=t.pool)
        _emit(args, result if isinstance(result, dict) else {"results": result},
              show_write(result))


def statements(lines: Any, interactive: bool) -> Any:
    """Statements from lines: each ends with ``;`` at the end of a line (or the input)."""
    pending: list[str] = []
    while True:
        try:
            line = lines(MORE if pending else PROMPT) if interactive else next(lines)
        except (EOFError, StopIteration):
            break
        if not pending and line.strip() in (".quit", ".exit"):
            break
        pending.append(line)
        text = "\n".join(pending).strip()
        if text.endswith(";"):
            pending = []
            if text.rstrip(";").strip():
                yield text.rstrip(";").strip()
    text = "\n".join(pending).strip().rstrip(";").strip()
    if text:
        yield text


def cmd_sql(args: argparse.Namespace, t: Target) -> int:
    if args.statement:
        run_one(args, t, args.statement)
        return 0
    interactive = sys.stdin.isatty()
    history = os.path.expanduser(HISTORY)
    reader: Any = iter(sys.stdin.read().splitlines())
    if interactive:
        import readline

        with contextlib.suppress(OSError):
            readline.read_history_file(history)
        reader = input
    failed = 0
    try:
        for sql in statements(reader, interactive):
            try:
                run_one(args, t, sql)
            except ZRaftError as exc:  # one statement failed: the shell goes on
                failed += 1
                print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        if interactive:
            with contextlib.suppress(OSError):
                readline.set_history_length(1000)
                readline.write_history_file(history)
    return 1 if failed and not interactive else 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("sql", parents=[_common()], help="SQL shell for a cluster of "
                              "the sqlite backend", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=_runner(cmd_sql), parser=p)
    p.add_argument("statement", nargs="?", help="one statement (default: read statements "
                   "from the terminal or stdin)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--query", action="store_true", help="send it as a read")
    kind.add_argument("--exec", action="store_true", help="send it as a write")
    p.add_argument("--local", action="store_true",
                   help="reads from the first peer's own copy (query_local), not the leader")
