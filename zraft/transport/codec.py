"""msgpack codec for every frame on a zraft connection.

A frame body is one msgpack array ``[kind, ...]``:

- ``[1, code, *fields]``  a Raft message (``zraft.core.messages``; codes in ``MESSAGE_CODES``).
  Entries are ``[index, term, type, data, time]`` (CONFIG data ``[old, new]``), snapshot meta
  ``[index, term, config_index, [old, new]]``.
- ``[2, req_id, op, args]``       ``ClientRequest``  (a client asks a node)
- ``[3, req_id, status, payload]`` ``ClientReply``   (the answer, on the same connection)
- ``[4, op, args]``                ``SnapshotControl`` (offer / accept / result between nodes)
- ``[5, req_id, op, args]``        ``AdminRequest``  (answered by a ``ClientReply``)
- ``[6, kind, args]``              ``Push``          (unsolicited node -> client: watch, expiry)
- ``[7, incarnation]``             ``NodeAlive``     (node -> node liveness, per node pair)

Rules:
- Encoding does no per-entry Python work: core messages are NamedTuples and msgpack packs
  tuples as arrays natively. Packers are reused (one per thread: a Packer is not thread-safe).
- msgpack options are fixed: ``use_bin_type=True`` to pack, ``raw=False``,
  ``strict_map_key=False`` to unpack. ``NOT_FOUND`` is ``ExtType(1, b"")``; no other extension
  type is accepted.
- Decoding is strict for Raft messages: exact arity, ints are ``int`` (never ``bool``) and
  >= 0, ids are ``str``, flags are ``bool``, entry types known, DATA data is ``bytes``, CONFIG
  data a pair of lists of ``str``, NOOP data ``None`` (or ``bytes``), entries contiguous from
  ``prev_index + 1``. Anything else raises ``DecodeError``. For the generic frames only the
  envelope is checked (req_id int >= 0, op/status ``str`` or int >= 0); ``args``/``payload``
  are any msgpack value nested at most ``MAX_NESTING`` levels (checked without recursion:
  code that walks values, ``repr`` included, may recurse) and their owner validates them.
  The depth check runs once per generic frame, never per Raft entry.
- Error messages show wire values through ``safe_repr`` only (bounded, never raises).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Final, NamedTuple

import msgpack

from zraft.core.entries import ClusterConfig, Entry, SnapshotMeta
from zraft.core.messages import (
    MESSAGE_CODES,
    AppendEntries,
    AppendReply,
    InstallSnapshot,
    Message,
    Quiesce,
    TimeoutNow,
    VoteReply,
    VoteRequest,
)
from zraft.saferepr import safe_repr
from zraft.transport.errors import DecodeError
from zraft.transport.framing import HEADER
from zraft.transport.sentinels import NOT_FOUND, NOT_FOUND_EXT_CODE

# Deepest nesting of args/payload in a generic frame: a list holding a list is depth 2.
# A stored value sits 3 to 5 levels down in its request, so values may nest ~60 levels.
MAX_NESTING: Final = 64

# Frame kinds (stable: never renumber).
RAFT: Final = 1
REQUEST: Final = 2
REPLY: Final = 3
SNAPSHOT: Final = 4
ADMIN: Final = 5
PUSH: Final = 6
ALIVE: Final = 7


class ClientRequest(NamedTuple):
    """``[2, req_id, op, args]``: ``req_id`` is chosen by the client and echoed in the reply."""

    req_id: int
    op: str | int
    args: Any = None


class ClientReply(NamedTuple):
    """``[3, req_id, status, payload]``: the answer to a ClientRequest or AdminRequest."""

    req_id: int
    status: str | int
    payload: Any = None


class SnapshotControl(NamedTuple):
    """``[4, op, args]``: snapshot offer / accept / result; the node defines ``args``."""

    op: str | int
    args: Any = None


class AdminRequest(NamedTuple):
    """``[5, req_id, op, args]``: admin operations (fault injection, status, ...)."""

    req_id: int
    op: str | int
    args: Any = None


class Push(NamedTuple):
    """``[6, kind, args]``: an unsolicited node -> client message (watch trigger, expiry)."""

    kind: str | int
    args: Any = None


class NodeAlive(NamedTuple):
    """``[7, incarnation]``: a node's liveness heartbeat to another node, one per pair of
    nodes whatever the number of groups (``zraft.node.liveness``); ``incarnation`` changes
    when the sender restarts. Only node connections may send it."""

    incarnation: int


Frame = (Message | ClientRequest | ClientReply | SnapshotControl | AdminRequest | Push
         | NodeAlive)

_GENERIC_KINDS: Final[dict[type, int]] = {
    ClientRequest: REQUEST,
    ClientReply: REPLY,
    SnapshotControl: SNAPSHOT,
    AdminRequest: ADMIN,
    Push: PUSH,
    NodeAlive: ALIVE,
}

# ---------------------------------------------------------------------------------------
# Encoding

_NOT_FOUND_EXT: Final = msgpack.ExtType(NOT_FOUND_EXT_CODE, b"")


def _default(obj: Any) -> Any:
    if obj is NOT_FOUND:
        return _NOT_FOUND_EXT
    raise TypeError(f"zraft codec cannot encode {type(obj).__name__}")


_local = threading.local()


def _packer() -> msgpack.Packer:
    try:
        return _local.packer  # type: ignore[no-any-return]
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True, default=_default)
        return packer


def pack(obj: Any) -> bytes:
    """msgpack-encode any value with zraft's options (NOT_FOUND supported)."""
    return _packer().pack(obj)  # type: ignore[no-any-return]


def _wire_tuple(obj: Any) -> tuple[Any, ...]:
    cls = type(obj)
    code = MESSAGE_CODES.get(cls)
    if code is not None:
        if cls is VoteRequest and not obj.transfer:
            return (RAFT, code, *obj[:-1])  # the form nodes before transfers read
        return (RAFT, code, *obj)
    kind = _GENERIC_KINDS.get(cls)
    if kind is not None:
        return (kind, *obj)
    raise TypeError(f"not a zraft frame: {cls.__name__}")


def encode(obj: Frame) -> bytes:
    """Encode a frame object (a core Message or one of the generic frame tuples) to its body."""
    return _packer().pack(_wire_tuple(obj))  # type: ignore[no-any-return]


def encode_frame(obj: Frame) -> bytes:
    """Encode and length-prefix: ready to write to a socket."""
    body = _packer().pack(_wire_tuple(obj))
    return HEADER.pack(len(body)) + body


def encode_frames(objs: Iterable[Frame]) -> bytes:
    """Several length-prefixed frames, concatenated."""
    return b"".join(encode_frame(o) for o in objs)


# ---------------------------------------------------------------------------------------
# Decoding


def _ext_hook(code: int, data: bytes) -> Any:
    if code == NOT_FOUND_EXT_CODE and not data:
        return NOT_FOUND
    raise DecodeError(f"unknown msgpack extension type {code}")


def unpack(body: bytes | bytearray | memoryview) -> Any:
    """msgpack-decode one value with zraft's options; ``DecodeError`` if it is not exactly one
    well-formed msgpack object."""
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False, ext_hook=_ext_hook)
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise DecodeError(f"bad msgpack: {type(exc).__name__}: {exc}") from None


def _bad(what: str, value: Any) -> DecodeError:
    return DecodeError(f"{what}: {safe_repr(value, 60)}")


def check_nesting(value: Any, what: str = "value", limit: int = MAX_NESTING) -> Any:
    """``value`` itself if its lists and maps nest at most ``limit`` levels, else
    ``DecodeError``. Iterative, one pass over the containers (scalars cost one type test)."""
    kind = type(value)
    if kind is not list:
        if kind is not dict:
            return value
    else:  # the common cases, request args that nest at most 2 levels (a query ["get",
        # key] inside them): one pass, nothing allocated (W6 paid ~1 us a read without it)
        for item in value:
            inner_kind = type(item)
            if inner_kind is list:
                for sub in item:
                    sub_kind = type(sub)
                    if sub_kind is list or sub_kind is dict:
                        break
                else:
                    continue
                break
            if inner_kind is dict:
                break
        else:
            return value
    level = [value]
    depth = 1
    while True:  # one level of containers at a time: no recursion, whatever the input
        inner: list[Any] = []
        append = inner.append
        for container in level:
            for item in (container.values() if type(container) is dict else container):
                inner_kind = type(item)
                if inner_kind is list or inner_kind is dict:
                    append(item)
        if not inner:
            return value
        depth += 1
        if depth > limit:
            raise DecodeError(f"{what} nests deeper than {limit} levels")
        level = inner


def _uint(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise _bad(f"{what} must be an int >= 0", value)
    return value


def _str(value: Any, what: str) -> str:
    if type(value) is not str:
        raise _bad(f"{what} must be a str", value)
    return value


def _bool(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise _bad(f"{what} must be a bool", value)
    return value


def _fields(raw: list[Any], cls: type, n: int) -> list[Any]:
    # raw is [1, code, *fields]
    if len(raw) != n + 2:
        raise _bad(f"{cls.__name__} needs {n} fields", raw)
    return raw[2:]


def _id_list(value: Any, what: str) -> tuple[str, ...]:
    if type(value) is not list:
        raise _bad(f"{what} must be a list of ids", value)
    for item in value:
        if type(item) is not str:
            raise _bad(f"{what} must hold str ids", item)
    return tuple(value)


def _config(value: Any) -> ClusterConfig:
    if type(value) is not list or len(value) != 2:
        raise _bad("config must be [old, new]", value)
    return ClusterConfig(_id_list(value[0], "config.old"), _id_list(value[1], "config.new"))


def _meta(value: Any) -> SnapshotMeta:
    if type(value) is not list or len(value) != 4:
        raise _bad("snapshot meta must be [index, term, config_index, config]", value)
    index, term, config_index, config = value
    return SnapshotMeta(
        _uint(index, "meta.index"),
        _uint(term, "meta.term"),
        _uint(config_index, "meta.config_index"),
        _config(config),
    )


_DATA, _CONFIG, _NOOP = 2, 1, 3


_new_tuple = tuple.__new__


def _entries(raw: Any, prev_index: int) -> list[Entry]:
    """The hot loop of decoding: one tight pass per entry (measured: chained ``is`` checks and
    ``tuple.__new__`` cost about half of ``Entry._make`` plus separate checks)."""
    if type(raw) is not list:
        raise _bad("entries must be a list", raw)
    out: list[Entry] = []
    append = out.append
    expect = prev_index + 1
    for e in raw:
        if type(e) is not list or len(e) != 5:
            raise _bad("entry must be [index, term, type, data, time]", e)
        index, term, etype, data, time = e
        if (
            not (int is type(index) is type(term) is type(etype) is type(time))
            or index != expect
            or term < 0
            or time < 0
        ):
            raise _bad(f"entry must have int index {expect} (contiguous), term, type, time", e)
        if etype == _DATA:
            if type(data) is not bytes:
                raise _bad("DATA entry data must be bytes", data)
            append(_new_tuple(Entry, e))
        elif etype == _CONFIG:
            append(Entry(index, term, etype, _config(data), time))
        elif etype == _NOOP:
            if data is not None and type(data) is not bytes:
                raise _bad("NOOP entry data must be None", data)
            append(_new_tuple(Entry, e))
        else:
            raise _bad("unknown entry type", etype)
        expect += 1
    return out


MAX_CLUSTER_ID = 64


def _cluster(value: Any) -> str:
    if type(value) is not str or len(value) > MAX_CLUSTER_ID:
        raise _bad(f"cluster must be a str of at most {MAX_CLUSTER_ID} characters", value)
    return value


def _vote_request(raw: list[Any]) -> VoteRequest:
    # 7 fields, or 8 with the leadership-transfer flag (sent only when true)
    transfer = _bool(raw[9], "transfer") if len(raw) == 10 else False
    term, src, dst, last_index, last_term, prevote, cluster = _fields(
        raw[:9] if len(raw) == 10 else raw, VoteRequest, 7)
    return VoteRequest(
        _uint(term, "term"),
        _str(src, "src"),
        _str(dst, "dst"),
        _uint(last_index, "last_index"),
        _uint(last_term, "last_term"),
        _bool(prevote, "prevote"),
        _cluster(cluster),
        transfer,
    )


def _timeout_now(raw: list[Any]) -> TimeoutNow:
    term, src, dst, last_index, last_term, cluster = _fields(raw, TimeoutNow, 6)
    return TimeoutNow(
        _uint(term, "term"), _str(src, "src"), _str(dst, "dst"),
        _uint(last_index, "last_index"), _uint(last_term, "last_term"), _cluster(cluster),
    )


def _quiesce(raw: list[Any]) -> Quiesce:
    term, src, dst, last_index, last_term, commit, epoch, cluster = _fields(raw, Quiesce, 8)
    return Quiesce(
        _uint(term, "term"), _str(src, "src"), _str(dst, "dst"),
        _uint(last_index, "last_index"), _uint(last_term, "last_term"),
        _uint(commit, "commit"), _uint(epoch, "epoch"), _cluster(cluster),
    )


def _vote_reply(raw: list[Any]) -> VoteReply:
    term, src, dst, granted, prevote, removed, cluster = _fields(raw, VoteReply, 7)
    return VoteReply(
        _uint(term, "term"),
        _str(src, "src"),
        _str(dst, "dst"),
        _bool(granted, "granted"),
        _bool(prevote, "prevote"),
        _bool(removed, "removed"),
        _cluster(cluster),
    )


def _append_entries(raw: list[Any]) -> AppendEntries:
    term, src, dst, prev_index, prev_term, entries, commit, epoch, heal_to, cluster = _fields(
        raw, AppendEntries, 10
    )
    prev_index = _uint(prev_index, "prev_index")
    return AppendEntries(
        _uint(term, "term"),
        _str(src, "src"),
        _str(dst, "dst"),
        prev_index,
        _uint(prev_term, "prev_term"),
        _entries(entries, prev_index),
        _uint(commit, "commit"),
        _uint(epoch, "epoch"),
        _uint(heal_to, "heal_to"),
        _cluster(cluster),
    )


def _append_reply(raw: list[Any]) -> AppendReply:
    (term, src, dst, success, index, hint_index, hint_term, epoch, recovering,
     cluster) = _fields(raw, AppendReply, 10)
    return AppendReply(
        _uint(term, "term"),
        _str(src, "src"),
        _str(dst, "dst"),
        _bool(success, "success"),
        _uint(index, "index"),
        _uint(hint_index, "hint_index"),
        _uint(hint_term, "hint_term"),
        _uint(epoch, "epoch"),
        _bool(recovering, "recovering"),
        _cluster(cluster),
    )


def _install_snapshot(raw: list[Any]) -> InstallSnapshot:
    term, src, dst, meta, epoch, cluster = _fields(raw, InstallSnapshot, 6)
    return InstallSnapshot(
        _uint(term, "term"), _str(src, "src"), _str(dst, "dst"), _meta(meta),
        _uint(epoch, "epoch"), _cluster(cluster),
    )


_RAFT_DECODERS: Final[dict[int, Callable[[list[Any]], Message]]] = {
    MESSAGE_CODES[VoteRequest]: _vote_request,
    MESSAGE_CODES[VoteReply]: _vote_reply,
    MESSAGE_CODES[AppendEntries]: _append_entries,
    MESSAGE_CODES[AppendReply]: _append_reply,
    MESSAGE_CODES[InstallSnapshot]: _install_snapshot,
    MESSAGE_CODES[TimeoutNow]: _timeout_now,
    MESSAGE_CODES[Quiesce]: _quiesce,
}


def _op(value: Any, what: str) -> str | int:
    if type(value) is str:
        return value
    if type(value) is int and value >= 0:
        return value
    raise _bad(f"{what} must be a str or an int >= 0", value)


def decode_object(raw: Any) -> Frame:
    """Validate an already-unpacked frame array and build its frame object."""
    if type(raw) is not list or not raw:
        raise _bad("frame must be a non-empty array", raw)
    kind = raw[0]
    if type(kind) is not int:
        raise _bad("frame kind must be an int", kind)
    n = len(raw)
    if kind == RAFT:
        if n < 2 or type(raw[1]) is not int:
            raise _bad("raft frame needs an int message code", raw)
        decoder = _RAFT_DECODERS.get(raw[1])
        if decoder is None:
            raise _bad("unknown raft message code", raw[1])
        return decoder(raw)
    if kind in (REQUEST, ADMIN):
        if n != 4:
            raise _bad("request frame must be [kind, req_id, op, args]", raw)
        cls = ClientRequest if kind == REQUEST else AdminRequest
        return cls(_uint(raw[1], "req_id"), _op(raw[2], "op"), check_nesting(raw[3], "args"))
    if kind == REPLY:
        if n != 4:
            raise _bad("reply frame must be [3, req_id, status, payload]", raw)
        return ClientReply(_uint(raw[1], "req_id"), _op(raw[2], "status"),
                           check_nesting(raw[3], "payload"))
    if kind == SNAPSHOT:
        if n != 3:
            raise _bad("snapshot frame must be [4, op, args]", raw)
        return SnapshotControl(_op(raw[1], "op"), check_nesting(raw[2], "args"))
    if kind == PUSH:
        if n != 3:
            raise _bad("push frame must be [6, kind, args]", raw)
        return Push(_op(raw[1], "kind"), check_nesting(raw[2], "args"))
    if kind == ALIVE:
        if n != 2:
            raise _bad("alive frame must be [7, incarnation]", raw)
        return NodeAlive(_uint(raw[1], "incarnation"))
    raise _bad("unknown frame kind", kind)


def decode(body: bytes | bytearray | memoryview) -> Frame:
    """Decode and validate one frame body. Raises ``DecodeError`` on anything malformed."""
    return decode_object(unpack(body))


def decode_many(bodies: Iterable[bytes]) -> list[Frame]:
    """Decode several bodies (all or nothing: the first bad one raises)."""
    return [decode_object(unpack(b)) for b in bodies]


__all__ = [
    "ADMIN",
    "ALIVE",
    "MAX_NESTING",
    "PUSH",
    "RAFT",
    "REPLY",
    "REQUEST",
    "SNAPSHOT",
    "AdminRequest",
    "ClientReply",
    "ClientRequest",
    "DecodeError",
    "Frame",
    "NodeAlive",
    "Push",
    "SnapshotControl",
    "check_nesting",
    "decode",
    "decode_many",
    "decode_object",
    "encode",
    "encode_frame",
    "encode_frames",
    "pack",
    "unpack",
]
