"""The session probe in bank runs: ``sessions.SessionProbe`` on the sqlite backend.

The probe's temporary key and its exactly-once session writes are rows of a key-value
table ``probe(k TEXT PRIMARY KEY, v)`` (a ``temporary=True`` insert is owned by its session
and deleted when it ends; a session write is an upsert), and its reads are key reads
(``["get", "probe", key]``) through the leader. Its register operations go into a history
of their own, checked for linearizability per key as in the register run (the bank
checker reads bank operations only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zraft.client import api
from zraft.client.connection import ConnectionPool

TABLE = "CREATE TABLE IF NOT EXISTS probe(k TEXT PRIMARY KEY, v)"


class SqlDialect:
    """The probe's commands on the sqlite backend."""

    def put(self, key: str, value: Any) -> Any:
        return ["exec", "INSERT INTO probe(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE "
                        "SET v = excluded.v", [key, value]]

    def get(self, key: str) -> Any:
        return ["get", "probe", key]

    def value(self, payload: Any) -> Any:
        rows = payload.get("rows") if isinstance(payload, dict) else None
        return rows[0][1] if rows else None


def setup_probe(peers: Sequence[str], pool: ConnectionPool) -> None:
    """The probe's table (idempotent: a retried write may apply twice)."""
    session = api.light_session(list(peers))
    api.write(session, ["exec", TABLE, None], timeout=20.0, pool=pool)


__all__ = ["TABLE", "SqlDialect", "setup_probe"]
