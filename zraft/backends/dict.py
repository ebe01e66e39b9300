"""The reference key/value backend (zraft_lib's zraft_dict_backend).

Commands (msgpack-decoded lists):

- writes: ``[k, v]`` or ``["put", k, v]`` store v and answer ``"ok"``; ``["delete", k]``
  answers ``"ok"``, or ``NOT_FOUND`` if k was absent; ``["cas", k, expected, new]`` stores
  ``new`` only if the current value equals ``expected`` and answers ``"ok"``, otherwise
  ``["cas_failed", current]``. ``expected`` / ``current`` may be ``NOT_FOUND`` ("absent"),
  and ``new`` may be ``NOT_FOUND`` (delete if it still holds ``expected``). Equality is
  msgpack equality: ``1``, ``1.0`` and ``True`` differ.
  ``["multi", [op, ...]]`` applies put/delete/cas ops and ``["check", k, expected]``
  all-or-nothing: it answers the list of the ops' results, or ``["multi_failed", i,
  current]`` (nothing applied) if check/cas number i does not hold, seeing earlier ops.
  ``["incr", k, delta]`` adds an int delta to an int value (absent = 0) and answers the new
  value: not idempotent, which is what makes exactly-once session writes observable.
  A two-element write whose first item is ``"delete"`` or ``"multi"`` is that command: store
  those keys with ``["put", "delete", v]``.
- queries: ``k`` or ``["get", k]`` answer the value or ``NOT_FOUND`` and watch k;
  ``["list", prefix]`` answers ``[[k, v], ...]`` for the keys of the prefix's type (str or
  bytes) starting with it, sorted, and watches the prefix (a new key under it fires too).
  A key that is itself a list starting with "get"/"list" must be read with ``["get", k]``.
  A callable query (in-process ``query_local`` only) gets a read-only mapping of the data.

Keys are str, bytes or int, or arrays of those (nested at most ``MAX_KEY_DEPTH`` deep;
arrays become tuples). Everything else is refused with ``BadCommand`` (every replica answers
``bad_command`` and nothing changes), on writes, cas, incr, multi, deletes and queries alike:
floats and bools because Python's dict would make ``1``, ``1.0`` and ``True`` one key while
msgpack (and every other client language) keeps them apart; nil, maps and ``NOT_FOUND``
because they are not keys. ``NOT_FOUND`` cannot be stored either. A snapshot written before
this rule is read as it is (its float keys answer to the equal int).

Temporary (session-owned) data: a write through ``apply_in_session`` makes the key owned by
the session; ``expire_session`` deletes every owned key and returns them in the order they
were acquired. A later plain write or delete makes the key permanent again / forgets it.

Snapshots are async and copy-on-write: ``snapshot()`` hands the job the current tables and
marks them shared; the next mutation copies them first, so the job's view never changes.
File ``<dir>/state``: magic, a msgpack stream, then a CRC-32 of the stream. The stream
(format 3) is a header ``[3, n_data, n_owned]``, then arrays ("chunks") of data pairs
``[k, v]`` until n_data pairs, then chunks of owner records ``[sid, [keys...]]``. Chunks are
sized to about ``CHUNK_BYTES`` each and written through one reused packer buffer, so
writing and reading a snapshot needs memory for one chunk, not for a copy of the whole
state (a single 40 MB pack kept ~100 MB of freed heap in the node after W5).
``install_snapshot`` reads the file in blocks through a streaming unpacker, verifies all of
it (counts, CRC, no trailing data) and only then replaces the tables; it raises
``SnapshotCorrupted`` otherwise. Formats 1 (one record per pair / owner) and 2 (one array
of all pairs, one of all owners) stay readable.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Hashable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from zraft.fsm.backend import ApplyResult, BadCommand, QueryResult, SnapshotCorrupted, SnapshotJob
from zraft.fsm.codec import NOT_FOUND, hashable, packb, packer, unpacker
from zraft.fsm.heap_trim import request_trim

STATE_FILE = "state"
_MAGIC = b"ZRDICT\x00\x01"
_CRC = struct.Struct(">I")
_FORMAT_VERSION = 3  # 3: chunked arrays; 2: all pairs in one array; 1: one record per key
CHUNK_BYTES = 1 << 20  # target size of one packed chunk
_FIRST_CHUNK = 64  # records in the first chunk; later ones follow the measured record size
_MAX_CHUNK = 1 << 16
_new_tuple = tuple.__new__  # a NamedTuple without its Python-level __new__ (hot path)
READ_BLOCK = 1 << 20
MAX_KEY_DEPTH = 16  # nesting of array keys

Key = Hashable


class DictBackend:
    """A dictionary with session-owned (temporary) keys. See the module docstring."""

    def __init__(self) -> None:
        self.peer_id: str | None = None
        self._data: dict[Key, Any] = {}
        self._owner: dict[Key, str] = {}
        # session id -> its keys in acquisition order (a dict used as an ordered set)
        self._owned: dict[str, dict[Key, None]] = {}
        # True while a snapshot job may still read the current tables (copy before writing)
        self._shared = False

    # ---------------------------------------------------------------- lifecycle

    def init(self, peer_id: str) -> None:
        self.peer_id = peer_id
        self._data, self._owner, self._owned, self._shared = {}, {}, {}, False

    # ---------------------------------------------------------------- reads

    def query(self, query: Any) -> Any:
        if callable(query):
            return query(MappingProxyType(self._data))
        if isinstance(query, (list, tuple)) and len(query) == 2:
            op, arg = query
            if op == "get":
                key = _key(arg)
                return QueryResult(self._data.get(key, NOT_FOUND), (key,))
            if op == "list":
                return self._list(arg)
        key = _key(query)
        return QueryResult(self._data.get(key, NOT_FOUND), (key,))

    def _list(self, prefix: Any) -> QueryResult:
        if not isinstance(prefix, (str, bytes)):
            raise BadCommand("list prefix must be str or bytes")
        kind = type(prefix)
        keys = sorted(k for k in self._data if type(k) is kind and k.startswith(prefix))
        return QueryResult([[k, self._data[k]] for k in keys], (), (prefix,))

    def get(self, key: Any, default: Any = NOT_FOUND) -> Any:
        """Direct read for tests and tools (not through the state machine)."""
        return self._data.get(_key(key), default)

    def items(self) -> list[tuple[Key, Any]]:
        return list(self._data.items())

    def owner_of(self, key: Any) -> str | None:
        return self._owner.get(_key(key))

    def temporary_count(self) -> int:
        return len(self._owner)

    def size(self) -> int:
        """Number of keys (not ``__len__``: an empty backend must not be falsy)."""
        return len(self._data)

    # ---------------------------------------------------------------- writes

    def apply(self, command: Any) -> ApplyResult:
        # The common writes, [key, value] and ["put", key, value] with a str key, without
        # the general parse: same checks, same result (a str key is its own hashable form;
        # "multi"/"delete" heads take the general path).
        if type(command) is list:
            size = len(command)
            if size == 2:
                key, value = command
                plain = key != "multi" and key != "delete"
            else:
                plain = size == 3 and command[0] == "put"
                if plain:
                    _, key, value = command
            if plain and type(key) is str and value is not NOT_FOUND:
                if self._shared:
                    self._unshare()
                if key in self._owner:
                    self._disown(key)
                self._data[key] = value
                return _new_tuple(ApplyResult, ("ok", (key,)))
        return self._write(command, None)

    def apply_in_session(self, command: Any, session_id: str) -> ApplyResult:
        return self._write(command, session_id)

    def expire_session(self, session_id: str) -> list[Key]:
        owned = self._owned.get(session_id)
        if not owned:
            return []
        self._unshare()
        keys = list(self._owned.pop(session_id))
        for key in keys:
            del self._data[key]
            del self._owner[key]
        return keys

    def _write(self, command: Any, session_id: str | None) -> ApplyResult:
        if isinstance(command, (list, tuple)) and len(command) == 2 and command[0] == "multi":
            return self._multi(command[1], session_id)
        return self._execute(_parse(command, in_multi=False), session_id)

    def _execute(self, op: tuple[Any, ...], session_id: str | None) -> ApplyResult:
        kind = op[0]
        if kind == "put":
            return self._put(op[1], op[2], session_id)
        if kind == "delete":
            return self._delete(op[1])
        if kind == "cas":
            return self._cas(op[1], op[2], op[3], session_id)
        if kind == "incr":
            return self._incr(op[1], op[2], session_id)
        # "check" (multi only): already verified by the dry run
        return ApplyResult("ok", ())

    def _multi(self, raw_ops: Any, session_id: str | None) -> ApplyResult:
        """All or nothing: dry-run every check/cas in order on a staged view first."""
        if not isinstance(raw_ops, (list, tuple)):
            raise BadCommand("multi takes a list of operations")
        ops = [_parse(raw, in_multi=True) for raw in raw_ops]
        staged: dict[Key, Any] = {}
        for position, op in enumerate(ops):
            kind, key = op[0], op[1]
            current = staged.get(key, self._data.get(key, NOT_FOUND))
            if kind in ("cas", "check") and not _same(current, op[2]):
                return ApplyResult(["multi_failed", position, current], ())
            if kind == "put":
                staged[key] = op[2]
            elif kind == "delete":
                staged[key] = NOT_FOUND
            elif kind == "cas":
                staged[key] = op[3]
        results: list[Any] = []
        triggers: dict[Key, None] = {}
        for op in ops:
            outcome = self._execute(op, session_id)
            results.append(outcome.result)
            triggers.update(dict.fromkeys(outcome.trigger_keys))
        return ApplyResult(results, tuple(triggers))

    def _put(self, key: Key, value: Any, session_id: str | None) -> ApplyResult:
        self._unshare()
        self._disown(key)
        self._data[key] = value
        if session_id is not None:
            self._owner[key] = session_id
            self._owned.setdefault(session_id, {})[key] = None
        return ApplyResult("ok", (key,))

    def _delete(self, key: Key) -> ApplyResult:
        if key not in self._data:
            return ApplyResult(NOT_FOUND, ())
        self._unshare()
        self._disown(key)
        del self._data[key]
        return ApplyResult("ok", (key,))

    def _cas(self, key: Key, expected: Any, new: Any, session_id: str | None) -> ApplyResult:
        current = self._data.get(key, NOT_FOUND)
        if not _same(current, expected):
            return ApplyResult(["cas_failed", current], ())
        if new is NOT_FOUND:
            return self._delete(key) if current is not NOT_FOUND else ApplyResult("ok", ())
        return self._put(key, new, session_id)

    def _incr(self, key: Key, delta: int, session_id: str | None) -> ApplyResult:
        current = self._data.get(key, 0)
        if type(current) is not int:
            return ApplyResult(["incr_failed", current], ())
        outcome = self._put(key, current + delta, session_id)
        return ApplyResult(current + delta, outcome.trigger_keys)

    def _disown(self, key: Key) -> None:
        owner = self._owner.pop(key, None)
        if owner is not None:
            keys = self._owned[owner]
            del keys[key]
            if not keys:
                del self._owned[owner]

    def _unshare(self) -> None:
        """Copy-on-write: a snapshot job still reads the current tables, so copy them."""
        if self._shared:
            self._data = dict(self._data)
            self._owner = dict(self._owner)
            self._owned = {sid: dict(keys) for sid, keys in self._owned.items()}
            self._shared = False

    # ---------------------------------------------------------------- snapshots

    def snapshot(self) -> SnapshotJob:
        self._shared = True
        return SnapshotJob("async", _state_writer(self._data, self._owned))

    def snapshot_done(self) -> None:
        # the job has finished reading: if nothing was written since, no copy is needed
        self._shared = False

    def snapshot_failed(self, reason: str) -> None:
        pass

    def install_snapshot(self, directory: Path) -> None:
        data, owned = read_state(Path(directory) / STATE_FILE)
        owner = {key: sid for sid, keys in owned.items() for key in keys}
        self._data, self._owner, self._owned, self._shared = data, owner, owned, False
        del data, owner, owned
        request_trim()  # the replaced state was freed: give its pages back


def _parse(command: Any, *, in_multi: bool) -> tuple[Any, ...]:
    """Validate one write into ``(kind, key, ...)``; raises BadCommand."""
    if not isinstance(command, (list, tuple)):
        raise BadCommand("a dict backend write is a list")
    size, head = len(command), command[0] if command else None
    if size == 2 and head == "multi":
        raise BadCommand("multi cannot be nested")
    if size == 2 and head == "delete":
        return ("delete", _key(command[1]))
    if size == 2:
        return ("put", _key(command[0]), _value(command[1]))
    if size == 3 and head == "put":
        return ("put", _key(command[1]), _value(command[2]))
    if size == 3 and head == "check" and in_multi:
        return ("check", _key(command[1]), command[2])
    if size == 3 and head == "incr" and not in_multi:
        if type(command[2]) is not int:
            raise BadCommand("incr takes an int delta")
        return ("incr", _key(command[1]), command[2])
    if size == 4 and head == "cas":
        return ("cas", _key(command[1]), command[2], command[3])
    raise BadCommand(f"unknown dict backend write of {size} items")


def _value(value: Any) -> Any:
    if value is NOT_FOUND:
        raise BadCommand("NOT_FOUND cannot be stored")
    return value


def _key(raw: Any) -> Key:
    """A valid key as stored (arrays as tuples); ``BadCommand`` for any other value."""
    kind = type(raw)
    if kind is str or kind is bytes or kind is int:
        return raw
    if kind is list or kind is tuple:
        return _array_key(raw, 1)
    raise BadCommand(_refused_key(raw))


def _array_key(raw: list[Any] | tuple[Any, ...], depth: int) -> tuple[Any, ...]:
    if depth > MAX_KEY_DEPTH:
        raise BadCommand(f"a key array may be nested at most {MAX_KEY_DEPTH} deep")
    items = []
    for item in raw:
        kind = type(item)
        if kind is str or kind is bytes or kind is int:
            items.append(item)
        elif kind is list or kind is tuple:
            items.append(_array_key(item, depth + 1))
        else:
            raise BadCommand(_refused_key(item, "a key array's items"))
    return tuple(items)


def _refused_key(value: Any, what: str = "a key") -> str:
    if value is NOT_FOUND:
        return "NOT_FOUND cannot be a key"
    name = _KEY_TYPE_NAMES.get(type(value), type(value).__name__[:40])
    return f"{what} must be str, bytes, int or an array of them, not {name}"


_KEY_TYPE_NAMES = {type(None): "nil", dict: "a map"}


def _same(current: Any, expected: Any) -> bool:
    if current is NOT_FOUND or expected is NOT_FOUND:
        return current is expected
    try:
        return packb(current) == packb(expected)
    except (TypeError, ValueError):
        return False


def _state_writer(
    data: dict[Key, Any], owned: dict[str, dict[Key, None]]
) -> Callable[[Path], None]:
    """The snapshot job: writes an immutable view (the caller never mutates these again)."""

    def write(directory: Path) -> None:
        # the packer's internal buffer is emptied, not freed, after each pack: every chunk
        # reuses it, and each chunk's bytes are dropped once written
        pack = packer()
        with open(Path(directory) / STATE_FILE, "wb") as out:
            out.write(_MAGIC)
            header = pack.pack([_FORMAT_VERSION, len(data), len(owned)])
            out.write(header)
            crc = zlib.crc32(header)
            crc = _write_chunks(pack, out, crc, list(data.items()))
            crc = _write_chunks(pack, out, crc, [(sid, list(keys)) for sid, keys in owned.items()])
            out.write(_CRC.pack(crc))
            out.flush()
            os.fsync(out.fileno())

    return write


def _write_chunks(pack: Any, out: Any, crc: int, records: list[Any]) -> int:
    """``records`` as arrays of about CHUNK_BYTES each; returns the running CRC. One C-level
    pack call per chunk: a per-record Python loop cost most of a busy leader's CPU at
    max_log_count = 1000 (profiled)."""
    start, count = 0, _FIRST_CHUNK
    while start < len(records):
        chunk = pack.pack(records[start : start + count])
        crc = zlib.crc32(chunk, crc)
        out.write(chunk)
        done = min(count, len(records) - start)
        start += done
        count = max(1, min(_MAX_CHUNK, CHUNK_BYTES * done // max(1, len(chunk))))
        del chunk
    return crc


def read_state(path: Path) -> tuple[dict[Key, Any], dict[str, dict[Key, None]]]:
    """Read and verify a ``state`` file; raises SnapshotCorrupted with the reason."""
    try:
        with open(path, "rb") as f:
            return _read_stream(path, f)
    except OSError as exc:
        raise SnapshotCorrupted(f"cannot read dict snapshot {path}: {exc}") from exc


def _read_stream(path: Path, f: Any) -> tuple[dict[Key, Any], dict[str, dict[Key, None]]]:
    body_size = os.fstat(f.fileno()).st_size - len(_MAGIC) - _CRC.size
    if body_size < 0 or f.read(len(_MAGIC)) != _MAGIC:
        raise SnapshotCorrupted(f"{path} is not a dict backend snapshot (bad header)")
    reader = _BodyReader(f, body_size)
    try:
        objects = reader.objects()
        version, n_data, n_owned = next(objects)
        if version == 1:  # one record per key and per owner (older zraft): still readable
            pairs = _records(objects, n_data, chunked=False)
            records = _records(objects, n_owned, chunked=False)
        elif version == 2:  # all pairs in one array, all owners in another
            pairs, records = next(objects), next(objects)
        elif version == _FORMAT_VERSION:
            pairs = _records(objects, n_data, chunked=True)
            records = _records(objects, n_owned, chunked=True)
        else:
            raise SnapshotCorrupted(f"{path}: unsupported format version {version!r}")
        data: dict[Key, Any] = {}
        count = 0
        for key, value in pairs:
            data[hashable(key)] = value
            count += 1
        owned: dict[str, dict[Key, None]] = {}
        n_records = 0
        for sid, keys in records:
            owned[sid] = {hashable(key): None for key in keys}
            n_records += 1
        if count != n_data or n_records != n_owned:
            raise SnapshotCorrupted(f"{path}: record counts do not match the header")
        if next(objects, _END) is not _END:
            raise SnapshotCorrupted(f"{path}: trailing data")
    except SnapshotCorrupted as exc:
        raise reader.checksum_error(path) or exc from None
    except Exception as exc:
        raise reader.checksum_error(path) or SnapshotCorrupted(
            f"{path} is corrupted ({type(exc).__name__}: {exc})") from exc
    if reader.crc != reader.expected_crc():
        raise SnapshotCorrupted(f"{path} is corrupted (checksum mismatch)")
    for sid, keys in owned.items():
        if not isinstance(sid, str) or any(key not in data for key in keys):
            raise SnapshotCorrupted(f"{path}: owner table does not match the data")
    return data, owned


_END = object()


def _records(objects: Any, total: int, *, chunked: bool) -> Any:
    """Yield ``total`` records: one object each (format 1) or arrays of them (format 3)."""
    if type(total) is not int or total < 0:
        raise SnapshotCorrupted("bad record count in the header")
    left = total
    while left > 0:
        if not chunked:
            yield next(objects)
            left -= 1
            continue
        chunk = next(objects)
        if type(chunk) is not list or not chunk or len(chunk) > left:
            raise SnapshotCorrupted("bad chunk of records")
        left -= len(chunk)
        yield from chunk


class _BodyReader:
    """Feeds the stream part of the file to an unpacker in READ_BLOCK blocks, with a CRC."""

    def __init__(self, f: Any, size: int) -> None:
        self.f, self.size, self.left, self.crc = f, size, size, 0
        # any object size a format-2 file could hold; the buffer only grows as needed
        self.stream = unpacker(max_buffer_size=2**31 - 1)

    def objects(self) -> Any:
        while self.left > 0:
            block = self.f.read(min(READ_BLOCK, self.left))
            if not block:
                raise SnapshotCorrupted("the file ends early")
            self.left -= len(block)
            self.crc = zlib.crc32(block, self.crc)
            self.stream.feed(block)
            yield from self.stream
        if self.stream.tell() != self.size:  # an object cut off at the end of the stream
            raise SnapshotCorrupted("the stream ends inside an object")

    def expected_crc(self) -> int | None:
        while self.left > 0:  # parsing stopped early: the rest still counts for the CRC
            block = self.f.read(min(READ_BLOCK, self.left))
            if not block:
                return None
            self.left -= len(block)
            self.crc = zlib.crc32(block, self.crc)
        tail = self.f.read(_CRC.size)
        return _CRC.unpack(tail)[0] if len(tail) == _CRC.size else None

    def checksum_error(self, path: Path) -> SnapshotCorrupted | None:
        """A parse error in a file whose checksum is also wrong is reported as damage."""
        try:
            if self.crc != self.expected_crc():
                return SnapshotCorrupted(f"{path} is corrupted (checksum mismatch)")
        except OSError as exc:
            return SnapshotCorrupted(f"cannot read {path}: {exc}")
        return None


__all__ = ["STATE_FILE", "DictBackend", "read_state"]
