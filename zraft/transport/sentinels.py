"""Wire-visible sentinel values.

``NOT_FOUND`` answers a query for a missing key. It is a singleton distinct from ``None`` (a
stored ``None`` is a value), travels on the wire as msgpack ``ExtType(1, b"")`` and decodes back
to this very object, so callers test it with ``is``.
"""

from __future__ import annotations

from typing import Final


class _NotFound:
    """The type of ``NOT_FOUND``; only one instance ever exists (also across copy/pickle)."""

    __slots__ = ()
    _instance: _NotFound | None = None

    def __new__(cls) -> _NotFound:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_FOUND"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "NOT_FOUND"

    def __copy__(self) -> _NotFound:
        return self

    def __deepcopy__(self, memo: object) -> _NotFound:
        return self


NOT_FOUND: Final = _NotFound()

# msgpack extension type code used for NOT_FOUND (payload is empty).
NOT_FOUND_EXT_CODE: Final = 1

__all__ = ["NOT_FOUND", "NOT_FOUND_EXT_CODE"]
