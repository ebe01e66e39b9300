"""A replicated object's state in a snapshot: msgpack only, versioned, checked.

What is saved: ``obj.__getstate__()`` if the class defines its own, else every instance
attribute (``vars(obj)``). Either way the state must be *msgpack-clean*: built only from
None, bool, int (64-bit), float, str, bytes, lists, dicts and ``NOT_FOUND``, so that
reading it back gives an equal value. A tuple, set, dataclass, enum or any other object is
refused when the snapshot is taken, naming the attribute and the type (a tuple would come
back as a list, a set not at all). Classes holding such values define ``__getstate__`` /
``__setstate__`` converting them.

What is restored: a fresh ``cls()``, then ``obj.__setstate__(state)`` if the class defines
it, else the saved attributes set on it (an attribute added by a newer ``__init__`` and
absent from an older snapshot keeps its initial value).

File ``<dir>/object``: magic, then the msgpack body ``[FORMAT, backend name,
state_version, state]``, then a CRC-32 of the body. ``state_version`` is the class's
``zraft_state_version`` (default 1); a snapshot of an older version is passed through the
classmethod ``zraft_upgrade_state(state, from_version)`` if the class has one, and refused
otherwise, as is one of a newer version (``SnapshotCorrupted`` naming both versions).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

import msgpack

from zraft.fsm.backend import SnapshotCorrupted
from zraft.fsm.codec import NOT_FOUND, unpackb
from zraft.fsm.codec import packb as loose_packb
from zraft.transport.sentinels import NOT_FOUND_EXT_CODE

STATE_FILE = "object"
FORMAT = 1
_MAGIC = b"ZROBJ\x00\x01\n"
_CRC = struct.Struct(">I")
_NOT_FOUND_EXT = msgpack.ExtType(NOT_FOUND_EXT_CODE, b"")


class StateNotClean(TypeError):
    """The object's state holds a value that would not come back equal from msgpack."""


def _strict_default(obj: Any) -> Any:
    if obj is NOT_FOUND:
        return _NOT_FOUND_EXT
    raise TypeError(f"a {type(obj).__name__[:40]}")


def strict_packb(value: Any) -> bytes:
    """Pack only exact msgpack types (no tuple-as-list, no int or dict subclass)."""
    return msgpack.packb(value, use_bin_type=True, strict_types=True, default=_strict_default)


def state_version(cls: type) -> int:
    version = getattr(cls, "zraft_state_version", 1)
    if type(version) is not int or version < 1:
        raise TypeError(f"{cls.__qualname__}.zraft_state_version must be an int >= 1")
    return version


def has_own(cls: type, name: str) -> bool:
    """True if ``cls`` (not ``object``) defines ``name``, e.g. ``__getstate__``."""
    return getattr(cls, name, None) is not getattr(object, name, None)


def get_state(obj: Any) -> Any:
    return obj.__getstate__() if has_own(type(obj), "__getstate__") else dict(vars(obj))


def encode(obj: Any, name: str) -> bytes:
    """The snapshot file's bytes for ``obj``; ``StateNotClean`` says what is wrong."""
    cls = type(obj)
    state = get_state(obj)
    try:
        body = strict_packb([FORMAT, name, state_version(cls), state])
        clean = _exact(state)  # after the pack: it bounded the nesting (no cycles)
    except (TypeError, ValueError, OverflowError):
        clean = False
    if not clean:
        raise StateNotClean(_not_clean(cls, state))
    return _MAGIC + body + _CRC.pack(zlib.crc32(body))


_EXACT = frozenset({type(None), bool, int, float, str, bytes, list, dict})
_INT_RANGE = (-(2**63), 2**64 - 1)


def _exact(state: Any) -> bool:
    """True if every value is of an exact msgpack type (strict packing lets bytearray and
    memoryview through as bytes: they would come back as bytes)."""
    stack = [state]
    pop, push = stack.pop, stack.extend
    while stack:
        value = pop()
        kind = type(value)
        if kind is list:
            push(value)
        elif kind is dict:
            push(value)
            push(value.values())
        elif kind not in _EXACT and value is not NOT_FOUND:
            return False
    return True


def _not_clean(cls: type, state: Any) -> str:
    """Where the first value msgpack cannot carry exactly is, and what it is."""
    custom = has_own(cls, "__getstate__")
    if not custom and isinstance(state, dict):
        found = next(((f"attribute {str(k)[:60]!r}{path}", what)
                      for k, v in state.items() for path, what in [_find(v)] if what), None)
    else:
        path, what = _find(state)
        found = (f"{'__getstate__()' if custom else 'the state'}{path}", what) if what else None
    where, what = found or ("the state", "a value")
    return (f"{cls.__qualname__} cannot be snapshotted: {where} holds {what} that msgpack "
            "cannot carry exactly (use lists, dicts, str, bytes, int, float, bool, None; or "
            "define __getstate__/__setstate__)")


_MAX_DEPTH = 100


def _find(value: Any, depth: int = 0) -> tuple[str, str | None]:
    """``(path, description)`` of the first inexact value inside ``value`` (None: clean)."""
    kind = type(value)
    if depth > _MAX_DEPTH:
        return "", f"nesting deeper than {_MAX_DEPTH} levels (or a cycle)"
    if kind is int and not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        return "", "an int outside msgpack's 64-bit range"
    if kind is list:
        for i, item in enumerate(value):
            path, what = _find(item, depth + 1)
            if what:
                return f"[{i}]{path}", what
        return "", None
    if kind is dict:
        for key, item in value.items():
            path, what = _find(key, depth + 1)
            if what:
                return f" (a key){path}", what
            path, what = _find(item, depth + 1)
            if what:
                return f"[{str(key)[:40]!r}]{path}", what
        return "", None
    if kind in _EXACT or value is NOT_FOUND:
        return "", None
    name = kind.__name__[:40]
    return "", f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def write(directory: Path, payload: bytes) -> None:
    with open(Path(directory) / STATE_FILE, "wb") as out:
        out.write(payload)
        out.flush()
        os.fsync(out.fileno())


def read(directory: Path) -> tuple[str, int, Any]:
    """``(backend name, state version, state)`` of a snapshot; ``SnapshotCorrupted``."""
    path = Path(directory) / STATE_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SnapshotCorrupted(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) < len(_MAGIC) + _CRC.size or not raw.startswith(_MAGIC):
        raise SnapshotCorrupted(f"{path} is not a replicated object's snapshot (bad header)")
    body, tail = raw[len(_MAGIC):-_CRC.size], raw[-_CRC.size:]
    if _CRC.unpack(tail)[0] != zlib.crc32(body):
        raise SnapshotCorrupted(f"{path} is corrupted (checksum mismatch)")
    try:
        fmt, name, version, state = unpackb(body)
    except Exception as exc:
        raise SnapshotCorrupted(f"{path} is corrupted ({type(exc).__name__})") from None
    if fmt != FORMAT:
        raise SnapshotCorrupted(f"{path}: unsupported format {fmt!r:.20}")
    if type(name) is not str or type(version) is not int:
        raise SnapshotCorrupted(f"{path}: malformed header")
    return name, version, state


def restore(cls: type, directory: Path) -> Any:
    """A new ``cls`` instance holding the snapshot's state."""
    _name, version, state = read(directory)
    wanted = state_version(cls)
    if version != wanted:
        upgrade = getattr(cls, "zraft_upgrade_state", None)
        if version > wanted or upgrade is None:
            raise SnapshotCorrupted(
                f"snapshot of {cls.__qualname__} has state version {version}, the class has "
                f"{wanted}" + ("" if version > wanted else " and no zraft_upgrade_state"))
        state = _guarded(cls, "zraft_upgrade_state", upgrade, state, version)
    obj = cls()
    if has_own(cls, "__setstate__"):
        _guarded(cls, "__setstate__", obj.__setstate__, state)
    elif isinstance(state, dict) and all(type(k) is str for k in state):
        vars(obj).update(state)
    else:
        raise SnapshotCorrupted(f"snapshot of {cls.__qualname__}: the state is not a map of "
                                "attributes and the class has no __setstate__")
    return obj


def _guarded(cls: type, what: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except SnapshotCorrupted:
        raise
    except Exception as exc:
        raise SnapshotCorrupted(f"{cls.__qualname__}.{what} failed: {type(exc).__name__}: "
                                f"{str(exc)[:200]}") from exc


def check_result(owner: str, value: Any) -> None:
    """A method's result must be packable (tuples are fine: they arrive as lists)."""
    if value is None or type(value) in (int, str, bool, float, bytes):
        return
    try:
        loose_packb(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"{owner} returned a value msgpack cannot carry ({exc})") from None


__all__ = ["FORMAT", "STATE_FILE", "StateNotClean", "check_result", "encode", "get_state",
           "read", "restore", "state_version", "strict_packb", "write"]
