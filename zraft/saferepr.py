"""``safe_repr``: the one way an error or log message shows a value that came from outside.

Why: ``repr()`` of a hostile value can raise (a 1,000-deep list exceeds the recursion limit;
a huge int exceeds the int-to-str limit) or cost a lot (a 64 MiB bytes object becomes a 256
MB string before any truncation). A message built while handling bad input must never fail
or stall, so anything received on the wire is shown through this function.

Rules: depth-limited (nested containers past ``_LEVELS`` show as ``[...]``), few items per
container, long strings and bytes cut BEFORE being formatted, the whole result at most
``limit`` characters, and it never raises (it falls back to ``<TypeName>``).
"""

from __future__ import annotations

import re
import reprlib
from itertools import islice
from typing import Any, Final

_LEVELS: Final = 3
_ITEMS: Final = 6
_STRING: Final = 40


class _Bounded(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = _LEVELS
        self.maxtuple = self.maxlist = self.maxarray = _ITEMS
        self.maxdict = self.maxset = self.maxfrozenset = self.maxdeque = _ITEMS
        self.maxstring = self.maxother = _STRING
        self.maxlong = _STRING

    def repr_bytes(self, x: bytes, level: int) -> str:
        # reprlib formats the whole object first; cut it first instead
        if len(x) <= _STRING:
            return repr(x)
        return f"{x[:_STRING // 2]!r}...({len(x)} bytes)"

    def repr_bytearray(self, x: bytearray, level: int) -> str:
        return f"bytearray({self.repr_bytes(bytes(x[:_STRING + 1]), level)})"

    def repr_str(self, x: str, level: int) -> str:
        if len(x) <= _STRING:
            return repr(x)
        return f"{x[:_STRING // 2]!r}...({len(x)} chars)"

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # str() of a huge int is slow, or refused outright
            return f"<int of {x.bit_length()} bits>"
        return repr(x)

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        # reprlib sorts every key first: show the first few in their order instead
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        pieces = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
                  for k, v in islice(x.items(), _ITEMS)]
        if len(x) > _ITEMS:
            pieces.append("...")
        return "{" + ", ".join(pieces) + "}"

    def repr_set(self, x: set[Any], level: int) -> str:
        return self._repr_iterable(x, level, "{", "}", _ITEMS) if x else "set()"

    def repr_frozenset(self, x: frozenset[Any], level: int) -> str:
        return self._repr_iterable(x, level, "frozenset({", "})", _ITEMS)

    def repr_instance(self, x: Any, level: int) -> str:
        if x is None or type(x) in _SCALARS:
            return repr(x)
        if isinstance(x, tuple):  # NamedTuples: frames, ExtType
            return type(x).__name__ + self.repr_tuple(x, level)
        # an unknown type: its own __repr__ is not trusted with size or depth
        return f"<{type(x).__name__}>"


_SCALARS: Final = frozenset({bool, float, complex})


_BOUNDED: Final = _Bounded()


def safe_repr(value: Any, limit: int = 80) -> str:
    """A short, never-raising repr of ``value`` for error and log messages."""
    try:
        text = _BOUNDED.repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    if len(text) > limit:
        text = text[: max(0, limit - 3)] + "..."
    return text


_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{6,}")


def exception_line(exc: BaseException, limit: int = 200) -> str:
    """``"TypeName: first line of its message"``, at most ``limit`` characters, never
    raising. Memory addresses (``0x7f...``, as in a default repr) are masked: the same
    error on two replicas gives the same line, so it may be replicated or cached."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:
        text = ""
    text = _ADDRESS.sub("0x...", text.strip().split("\n", 1)[0][: limit + 1])
    line = f"{name}: {text}" if text else name
    return line if len(line) <= limit else line[: max(0, limit - 3)] + "..."


__all__ = ["exception_line", "safe_repr"]
