"""Marking the methods of a replicated object: ``@replicated`` (commands), ``@query`` (reads).

    class Counter:
        def __init__(self) -> None:
            self.value = 0

        @zraft.replicated
        def incr(self, delta: int = 1) -> int:
            self.value += delta
            return self.value

        @zraft.query
        def get(self) -> int:
            return self.value

Rules:
- A class with at least one marked method is a *replicated object*: a node loads it behind
  its backend allowlist like any backend (``zraft.objects.backend.ObjectBackend`` makes it
  one), and clients call its marked methods by name (``zraft.objects.handle``). Nothing
  else of the class can be reached from outside.
- ``@replicated(session=True)``: the method's first argument after ``self`` is the caller's
  session id (a client handle sends such calls as temporary session writes, so the node
  knows it); the client never passes it. A class may define ``on_session_expired(self,
  session)``, called (replicated, like a command) when a session ends.
- Marked names must not start with ``_``; a subclass that overrides a marked method without
  marking it again makes it unreachable. The table of a class is computed once.
- ``query`` is also the client's read function ``zraft.query(peer, q)`` (re-exported as
  ``zraft.query``): given one function and nothing else it marks it, otherwise it reads.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

COMMAND: Literal["command"] = "command"
QUERY: Literal["query"] = "query"
_MARK = "__zraft_method__"
SESSION_HOOK = "on_session_expired"


@dataclass(frozen=True)
class MethodSpec:
    """One callable method of a replicated class."""

    name: str
    kind: Literal["command", "query"]
    session: bool  # gets the caller's session id as its first argument after self
    function: Callable[..., Any]
    signature: inspect.Signature


def _mark(fn: Any, kind: Literal["command", "query"], session: bool) -> Any:
    if not inspect.isfunction(fn):
        raise TypeError(f"@{'replicated' if kind == COMMAND else 'query'} marks a method "
                        f"defined with def, not a {type(fn).__name__}")
    if fn.__name__.startswith("_"):
        raise TypeError(f"{fn.__qualname__}: a replicated method's name must not start with _")
    setattr(fn, _MARK, (kind, session))
    return fn


def replicated(fn: F | None = None, *, session: bool = False) -> Any:
    """Mark a command: a write that every replica applies in log order.

    ``@replicated`` or ``@replicated(session=True)`` (see the module docstring)."""
    if fn is None:
        return lambda f: _mark(f, COMMAND, session)
    return _mark(fn, COMMAND, session)


def query(*args: Any, **kwargs: Any) -> Any:
    """``@query``: mark a read (a linearizable read through the leader; it must not change
    the object). Called any other way it is the client's ``zraft.client.query(peer, q)``."""
    if len(args) == 1 and not kwargs and inspect.isfunction(args[0]):
        return _mark(args[0], QUERY, False)
    from zraft.client.api import query as read

    return read(*args, **kwargs)


_tables: dict[type, dict[str, MethodSpec]] = {}
_tables_lock = threading.Lock()


def methods_of(cls: type) -> dict[str, MethodSpec]:
    """The marked methods of ``cls`` by name (base classes first, overrides win)."""
    table = _tables.get(cls)
    if table is not None:
        return table
    table = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            mark = getattr(value, _MARK, None) if inspect.isfunction(value) else None
            if mark is not None:
                kind, session = mark
                table[name] = MethodSpec(name, kind, session, value, inspect.signature(value))
            elif name in table:
                del table[name]  # overridden without the mark: not reachable any more
    with _tables_lock:
        _tables[cls] = table
    return table


def is_replicated_class(cls: Any) -> bool:
    """True for a class with at least one ``@replicated`` or ``@query`` method."""
    return isinstance(cls, type) and bool(methods_of(cls))


def backend_name(cls: type) -> str:
    """The backend name a node loads ``cls`` by (``"package.module:Class"``); a class may
    declare its own in ``zraft_backend_name`` (the shipped objects do: ``zraft.objects:X``)."""
    declared = vars(cls).get("zraft_backend_name")
    if isinstance(declared, str):
        return declared
    if not is_replicated_class(cls):
        raise TypeError(f"{cls.__qualname__} has no @replicated or @query method")
    if "." in cls.__qualname__ or "<" in cls.__qualname__:
        raise TypeError(f"{cls.__qualname__} is not defined at a module's top level: a node "
                        "cannot import it")
    return f"{cls.__module__}:{cls.__qualname__}"


__all__ = [
    "COMMAND",
    "QUERY",
    "SESSION_HOOK",
    "MethodSpec",
    "backend_name",
    "is_replicated_class",
    "methods_of",
    "query",
    "replicated",
]
