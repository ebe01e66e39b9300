"""What a command generator returns: one operation, a write or a query."""

from __future__ import annotations

from typing import Any

Op = tuple[str, Any]


def write(payload: Any) -> Op:
    """A write operation (sent as a plain, session or temporary write)."""
    return ("write", payload)


def query(q: Any) -> Op:
    """A read operation."""
    return ("query", q)


__all__ = ["Op", "query", "write"]
