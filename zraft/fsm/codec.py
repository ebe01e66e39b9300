"""msgpack helpers for the state machine: command bytes, snapshot tables, cached results.

Rules:
- Same options as the wire (``use_bin_type=True``, ``raw=False``, ``strict_map_key=False``),
  so ``str`` and ``bytes`` stay distinct and map keys may be any msgpack value.
- ``NOT_FOUND`` is encoded as ``ExtType(1, b"")`` and decoded back to the very same object;
  any other extension type is refused (``ValueError``), never passed through as data.
- ``hashable`` turns a decoded value into something usable as a dict key: lists become
  tuples (recursively); maps are refused because their order would make equal keys differ.
"""

from __future__ import annotations

from typing import Any

import msgpack

from zraft.transport.sentinels import NOT_FOUND, NOT_FOUND_EXT_CODE

_NOT_FOUND_EXT = msgpack.ExtType(NOT_FOUND_EXT_CODE, b"")


def _default(obj: Any) -> Any:
    if obj is NOT_FOUND:
        return _NOT_FOUND_EXT
    raise TypeError(f"cannot encode {type(obj).__name__} with msgpack")


def _ext_hook(code: int, payload: bytes) -> Any:
    if code == NOT_FOUND_EXT_CODE and payload == b"":
        return NOT_FOUND
    raise ValueError(f"unknown msgpack extension type {code}")


def packb(obj: Any) -> bytes:
    """Encode ``obj``; raises ``TypeError`` for values msgpack cannot represent."""
    return msgpack.packb(obj, use_bin_type=True, default=_default)


def unpackb(data: bytes) -> Any:
    """Decode one msgpack object; raises ``ValueError`` (or a subclass) on malformed input."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True, ext_hook=_ext_hook)


def packer() -> msgpack.Packer:
    """A streaming packer with the same options as ``packb``."""
    return msgpack.Packer(use_bin_type=True, default=_default)


def unpacker(**options: Any) -> msgpack.Unpacker:
    """A streaming unpacker with the same options as ``unpackb``."""
    return msgpack.Unpacker(
        raw=False, strict_map_key=False, use_list=True, ext_hook=_ext_hook, **options
    )


MAX_KEY_DEPTH = 100  # arrays nested in a key, at most


def hashable(value: Any, _depth: int = 0) -> Any:
    """Make a decoded msgpack value usable as a dict key (lists -> tuples, recursively).

    Raises ``TypeError`` for maps, other unhashable values and arrays nested more than
    ``MAX_KEY_DEPTH`` deep: a fixed bound, so every replica refuses the same keys (running
    into Python's recursion limit instead would depend on each thread's stack).
    """
    if isinstance(value, (list, tuple)):
        if _depth >= MAX_KEY_DEPTH:
            raise TypeError(f"a key nests arrays more than {MAX_KEY_DEPTH} deep")
        return tuple([hashable(item, _depth + 1) for item in value])
    if isinstance(value, dict):
        raise TypeError("a map cannot be used as a key")
    hash(value)
    return value


def normalize(value: Any) -> Any:
    """The value as a replica would see it after a msgpack round trip (tuples -> lists).

    Results cached in the session table go through this, so a replica restored from a
    snapshot answers a duplicate write with exactly the value the original replica gave.
    """
    if value is None or value is NOT_FOUND or type(value) in _SCALARS:
        return value
    return unpackb(packb(value))


_SCALARS = frozenset({str, bytes, int, float, bool})


__all__ = [
    "MAX_KEY_DEPTH", "NOT_FOUND", "hashable", "normalize", "packb", "packer", "unpackb",
    "unpacker",
]
