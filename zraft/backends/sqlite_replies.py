"""The sqlite backend's stored replies: the applied index and every call's answer, kept in
the database so that a restart answers the entries it already holds without running them.

Layout (format 2): the replies of the calls of log entries ``[b * BLOCK, (b + 1) * BLOCK)``
are one row of ``_zraft_reply_blocks`` (``blk = b``, ``calls`` = msgpack
``[[index, step, reply], ...]`` in call order); a reply longer than ``INLINE_MAX`` bytes
is stored alone in ``_zraft_replies (idx, step, reply)`` and its block holds nil for it
(a big reply is then not rewritten with its block). Format 1 stored every reply alone in
``_zraft_replies``: such rows are still read.

Why blocks: a row per call cost an index insert per write, a third of the state
machine's time in W2-style inserts; a block row is written once per transaction
(``flush``, before each commit), so a write costs a list append.

The content is a function of the log prefix applied, never of how calls were grouped
into transactions (snapshots of equal states must be equal files): a block row holds
exactly the calls applied so far in its range, and pruning (``flush``) keeps the blocks
from ``(last index - KEEP_REPLIES) // BLOCK`` on, every reply of the entries after
``last index - KEEP_REPLIES`` (``sqlite_store.covers``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zraft.fsm.codec import packb, unpackb

BLOCK = 64  # log entries per block row
INLINE_MAX = 1024  # bytes of a packed reply kept in its block row

Key = tuple[int, int]  # (log index, call within the entry)
Execute = Callable[..., Any]  # the backend's own statements (sqlite3.Cursor back)

_BLOCK_ROW = "SELECT calls FROM _zraft_reply_blocks WHERE blk = ?"
_ALONE = "SELECT reply FROM _zraft_replies WHERE idx = ? AND step = ?"


class ReplyLog:
    """The stored replies of one write connection (``execute`` runs the backend's own
    statements on it, inside its open transaction)."""

    def __init__(self, execute: Execute, keep: Callable[[], int]) -> None:
        self._x = execute
        self._keep = keep  # KEEP_REPLIES, read when pruning (tests change it)
        self._blk: int | None = None  # the block held in memory
        self._calls: dict[Key, bytes | None] = {}  # ... its calls, in order
        self._dirty = False  # ... changed since it was last written
        self._pruned = 0  # blocks below this one are deleted (as far as we know)

    def record(self, key: Key, reply: bytes) -> None:
        """Store ``reply`` as the answer of call ``key`` (written by the next ``flush``;
        a reply longer than ``INLINE_MAX`` now)."""
        self._hold(key[0] // BLOCK)
        if len(reply) > INLINE_MAX:
            self._x("INSERT OR REPLACE INTO _zraft_replies VALUES (?, ?, ?)", (*key, reply))
            self._calls[key] = None
        else:
            self._calls[key] = reply
        self._dirty = True

    def lookup(self, key: Key) -> bytes | None:
        """The stored reply of call ``key``; None if there is none."""
        self._hold(key[0] // BLOCK)
        reply = self._calls.get(key)
        if reply is not None:
            return reply
        row = self._x(_ALONE, key).fetchone()  # too big for its block, or format 1
        return row[0] if row else None

    def flush(self, last: int) -> None:
        """Write the block held in memory and drop the blocks no longer kept; ``last`` is
        the newest index recorded. Call before every commit."""
        if self._dirty and self._blk is not None:
            self._write_block()
        low = max(0, (last - self._keep()) // BLOCK)
        if low > self._pruned:
            self._x("DELETE FROM _zraft_reply_blocks WHERE blk < ?", (low,))
            self._x("DELETE FROM _zraft_replies WHERE idx < ?", (low * BLOCK,))
            self._pruned = low

    def forget(self) -> None:
        """The open transaction was rolled back: what is held in memory may be newer than
        the database; read it again when needed."""
        self._blk, self._calls, self._dirty, self._pruned = None, {}, False, 0

    def _hold(self, blk: int) -> None:
        if blk == self._blk:
            return
        if self._dirty and self._blk is not None:
            self._write_block()
        row = self._x(_BLOCK_ROW, (blk,)).fetchone()
        self._calls = {(i, s): r for i, s, r in unpackb(row[0])} if row else {}
        self._blk, self._dirty = blk, False

    def _write_block(self) -> None:
        calls = [[i, s, r] for (i, s), r in self._calls.items()]
        self._x("INSERT OR REPLACE INTO _zraft_reply_blocks VALUES (?, ?)",
                (self._blk, packb(calls)))
        self._dirty = False


_NEWEST_BLOCK = "SELECT calls FROM _zraft_reply_blocks ORDER BY blk DESC LIMIT 1"
_NEWEST_ALONE = "SELECT idx, step FROM _zraft_replies ORDER BY idx DESC, step DESC LIMIT 1"


def applied(conn: Any) -> Key:
    """The (index, call) of the last write stored in the database ``conn`` (a connection
    or a cursor factory with ``execute``): the newest call of the newest block, or of the
    replies stored alone (format 1 stored them all so)."""
    newest: Key = (0, 0)
    row = conn.execute(_NEWEST_BLOCK).fetchone()
    if row is not None:
        newest = max([newest, *((i, s) for i, s, _r in unpackb(row[0]))])
    row = conn.execute(_NEWEST_ALONE).fetchone()
    if row is not None:
        newest = max(newest, (row[0], row[1]))
    return newest


__all__ = ["BLOCK", "INLINE_MAX", "ReplyLog", "applied"]
