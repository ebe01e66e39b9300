"""The argument schema of every client op and admin op a node accepts, as data.

A request ``[2, req_id, op, args]`` (or admin ``[5, req_id, op, args]``) is checked here at
the node boundary, before anything acts on it: before it is routed, before an actor or a
shared structure (the session registry, the supervisor) sees it. A request that does not fit
its op's schema is answered ``bad_request`` (a command above ``max_entry_size``:
``too_large``) with a one-line message naming the op and the field, and goes no further.

Rules:
- ``OPS`` maps each op name to its ``OpSpec``: where it goes (``PEER``: to the local peer
  named by its first argument; ``NODE``: the node itself) and its ``fields`` in order.
  ``args`` is a list; trailing ``optional`` fields may be omitted or ``None``.
- A field's ``type`` is one of the small frozen dataclasses below; their attributes are the
  whole rule (lengths, ranges, choices), so a fuzzer can build values that fit and values
  just outside: ``for spec in OPS.values(): for f in spec.fields: f.type ...``.
- ``check`` of a type returns the value to use (the same object, or a canonical form: a
  peer id is normalised by ``PeerId``) or raises ``Invalid``; ``validate`` turns that into
  a ``RequestError`` naming ``op.field``. Messages never repr() a client's value whole.
- Sizes that depend on the node's configuration come from ``Limits``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from zraft.ids import PeerId

PEER: Final = "peer"  # routed to the local peer named by args[0]
NODE: Final = "node"  # answered by the node

BAD_REQUEST: Final = "bad_request"
TOO_LARGE: Final = "too_large"

MAX_ID_TEXT = 300  # a peer id or node address: name (64) + host (253) + port, rounded
MAX_SID = 256
MAX_PEERS = 255  # members named by one set_conf
MAX_ADDRESSES = 1024  # nodes named by one partition
MAX_CREATE_BATCH = 1000  # peers one create_peers starts (a batch holds one slow-op thread)
MAX_TIMEOUT_MS = 24 * 3600 * 1000
INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1


class Invalid(Exception):
    """A value does not fit its field type; the message says what it must be."""

    def __init__(self, message: str, code: str = BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code


class RequestError(Exception):
    """A request refused at the boundary: ``code`` (``bad_request`` or ``too_large``) and a
    one-line ``message`` naming the op and the field."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Bounds from the node's configuration."""

    max_entry_size: int = 8 * 1024 * 1024


def describe(value: Any) -> str:
    """A client's value in a message: its type, never its (unbounded) content."""
    return type(value).__name__


# ---------------------------------------------------------------------------------------
# field types


@dataclass(frozen=True)
class Text:
    """A ``str`` of ``min_len..max_len`` characters, matching ``pattern`` if given."""

    min_len: int = 0
    max_len: int = 256
    pattern: str | None = None

    def check(self, value: Any, limits: Limits) -> Any:
        if type(value) is not str:
            raise Invalid(f"must be a str, got {describe(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            raise Invalid(f"must be {self.min_len}-{self.max_len} characters, got {len(value)}")
        if self.pattern is not None and not _compiled(self.pattern).fullmatch(value):
            raise Invalid(f"must match {self.pattern}")
        return value


@dataclass(frozen=True)
class PeerName(Text):
    """The name part of a peer id (``zraft.ids``): routes the request to a local peer."""

    min_len: int = 1
    max_len: int = 64
    pattern: str | None = r"[A-Za-z0-9_.\-]{1,64}"

    def check(self, value: Any, limits: Limits) -> Any:
        if type(value) is not str or not 0 < len(value) <= 64 or not _NAME.fullmatch(value):
            raise Invalid("must be a peer name (1-64 of [A-Za-z0-9_.-])"
                          if type(value) is str else f"must be a str, got {describe(value)}")
        if len(_KNOWN_NAMES) < _KNOWN_NAMES_MAX:
            _KNOWN_NAMES.add(value)
        return value


@dataclass(frozen=True)
class PeerIdText:
    """A peer id ``name@host:port``, parsed with ``PeerId`` and returned in canonical form."""

    max_len: int = MAX_ID_TEXT

    def check(self, value: Any, limits: Limits) -> Any:
        if type(value) is not str:
            raise Invalid(f"must be a peer id str, got {describe(value)}")
        if len(value) > self.max_len:
            raise Invalid(f"must be at most {self.max_len} characters")
        try:
            return str(PeerId.parse(value))
        except ValueError:
            raise Invalid("must be a peer id name@host:port") from None


@dataclass(frozen=True)
class Address:
    """A node address ``host:port`` (port 1..65535)."""

    max_len: int = MAX_ID_TEXT

    def check(self, value: Any, limits: Limits) -> Any:
        if type(value) is not str or len(value) > self.max_len:
            raise Invalid(f"must be a host:port str of at most {self.max_len} characters")
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise Invalid("must be host:port (port 1..65535)")
        return value


@dataclass(frozen=True)
class Int:
    """An ``int`` (never a ``bool``) in ``lo..hi``."""

    lo: int = 0
    hi: int = UINT64_MAX

    def check(self, value: Any, limits: Limits) -> Any:
        if type(value) is not int:
            raise Invalid(f"must be an int, got {describe(value)}")
        if not self.lo <= value <= self.hi:
            raise Invalid(f"must be in {self.lo}..{self.hi}")
        return value


@dataclass(frozen=True)
class Command:
    """Packed command bytes (a DATA entry's data), at most ``Limits.max_entry_size``
    (``too_large`` beyond). ``check_shape``: the bytes start like a command array (see
    ``looks_like_command``)."""

    check_shape: bool = True

    def check(self, value: Any, limits: Limits) -> Any:
        if type(value) is not bytes:
            raise Invalid(f"must be bytes, got {describe(value)}")
        if len(value) > limits.max_entry_size:
            raise Invalid(f"is {len(value)} bytes, above max_entry_size "
                          f"{limits.max_entry_size}", TOO_LARGE)
        if self.check_shape and not looks_like_command(value):
            raise Invalid("is not a packed command [code, ...] (docs/architecture.md)")
        return value


@dataclass(frozen=True)
class Scalar:
    """A watch reference: an ``int`` (64-bit), or a ``str`` / ``bytes`` of at most
    ``max_len``."""

    max_len: int = 256

    def check(self, value: Any, limits: Limits) -> Any:
        kind = type(value)
        if kind is int and INT64_MIN <= value <= UINT64_MAX:
            return value
        if kind in (str, bytes) and len(value) <= self.max_len:
            return value
        raise Invalid(f"must be an int, or a str/bytes of at most {self.max_len}, "
                      f"got {describe(value)}")


@dataclass(frozen=True)
class OneOf:
    """One of ``choices`` (strs)."""

    choices: tuple[str, ...]

    def check(self, value: Any, limits: Limits) -> Any:
        if type(value) is not str or value not in self.choices:
            raise Invalid(f"must be one of {', '.join(self.choices)}")
        return value


@dataclass(frozen=True)
class ListOf:
    """A list of ``min_len..max_len`` items of type ``item``."""

    item: Any
    min_len: int = 0
    max_len: int = 1024

    def check(self, value: Any, limits: Limits) -> Any:
        if type(value) is not list:
            raise Invalid(f"must be a list, got {describe(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            raise Invalid(f"must have {self.min_len}-{self.max_len} items, got {len(value)}")
        out = value
        for i, item in enumerate(value):
            try:
                checked = self.item.check(item, limits)
            except Invalid as exc:
                raise Invalid(f"item {i} {exc}", exc.code) from None
            if checked is not item:
                if out is value:
                    out = list(value)
                out[i] = checked
        return out


@dataclass(frozen=True)
class AnyValue:
    """Any msgpack value; its owner (the backend) validates it. Its size and depth are
    bounded by the transport (frame size, nesting)."""

    def check(self, value: Any, limits: Limits) -> Any:
        return value


# ---------------------------------------------------------------------------------------
# ops


@dataclass(frozen=True)
class Field:
    name: str
    type: Any
    optional: bool = False  # may be None, or omitted when trailing


@dataclass(frozen=True)
class OpSpec:
    name: str
    target: str  # PEER or NODE
    fields: tuple[Field, ...]
    doc: str = ""
    required: int = 0  # how many leading fields must be present (set by _op)


_PEER_NAME = Field("peer_name", PeerName())
_SID = Field("sid", Text(1, MAX_SID), optional=True)


def _op(name: str, target: str, *fields: Field, doc: str = "") -> OpSpec:
    required = len(fields)
    while required and fields[required - 1].optional:
        required -= 1
    return OpSpec(name, target, fields, doc, required)


OPS: Final[dict[str, OpSpec]] = {spec.name: spec for spec in (
    _op("propose", PEER, _PEER_NAME, Field("command", Command()), _SID,
        doc="write a packed command; with a sid the connection speaks for the session"),
    _op("query", PEER, _PEER_NAME, Field("query", AnyValue()), _SID,
        Field("watch_ref", Scalar(), optional=True),
        doc="linearizable read; a watch_ref needs a live sid"),
    _op("query_local", PEER, _PEER_NAME, Field("query", AnyValue()),
        doc="read this peer's state, maybe stale"),
    _op("get_conf", PEER, _PEER_NAME),
    _op("set_conf", PEER, _PEER_NAME, Field("prev_index", Int(0, 2**63 - 1)),
        Field("peers", ListOf(PeerIdText(), 1, MAX_PEERS)),
        Field("timeout_ms", Int(1, MAX_TIMEOUT_MS))),
    _op("transfer_leader", PEER, _PEER_NAME, Field("to", PeerIdText(), optional=True),
        Field("timeout_ms", Int(1, MAX_TIMEOUT_MS), optional=True),
        doc="leader hands leadership to `to` (None: the most up-to-date voter)"),
    _op("stat", PEER, _PEER_NAME),
    _op("snapshot_save", PEER, _PEER_NAME,
        doc="leader: a linearizable snapshot now; answers its name and manifest (a backup)"),
    _op("snapshot_read", NODE, _PEER_NAME,
        Field("snapshot", Text(1, 64, r"snapshot-\d{1,20}-\d{1,20}")),
        Field("path", Text(1, 1024)), Field("offset", Int(0, 2**63 - 1)),
        doc="a chunk of a file listed in one of the peer's snapshot manifests (a backup)"),
    _op("bootstrap", PEER, _PEER_NAME),
    _op("create_peer", NODE, _PEER_NAME, Field("backend", Text(1, 256)),
        Field("cluster_id", Text(0, 64, r"[A-Za-z0-9_-]{0,64}"), optional=True)),
    _op("create_peers", NODE, Field("peer_names", ListOf(PeerName(), 1, MAX_CREATE_BATCH)),
        Field("backend", Text(1, 256)),
        Field("cluster_ids", ListOf(Text(0, 64, r"[A-Za-z0-9_-]{0,64}"), 1, MAX_CREATE_BATCH),
              optional=True),
        Field("mode", OneOf(("create", "check")), optional=True),
        doc="many blank peers at once (cluster_ids: one per name); check: only whether "
            "create would succeed, nothing started"),
    _op("check_exists", NODE, _PEER_NAME, Field("backend", Text(1, 256), optional=True),
        doc="with a backend: also whether this node could run it (allowed, loads)"),
    _op("node_status", NODE),
    _op("list_peers", NODE),
    _op("ping", NODE),
    _op("partition", NODE, Field("addresses", ListOf(Address(), 0, MAX_ADDRESSES)),
        Field("direction", OneOf(("in", "out", "both")), optional=True)),
    _op("heal", NODE),
)}

NODE_OPS: Final = frozenset(name for name, spec in OPS.items() if spec.target == NODE)
# Ops that change who is in the cluster, who leads it, what its network sees, or read its
# whole state out: refused (not_allowed) to a client that proved only the node's client
# cookie (handshake.server_handshake); reads, writes, sessions and status stay open to it.
OPERATOR_OPS: Final = frozenset({"set_conf", "transfer_leader", "snapshot_save",
                                 "snapshot_read", "bootstrap", "create_peer", "create_peers",
                                 "partition",
                                 "heal"})


def validate(op: Any, args: Any, limits: Limits) -> list[Any]:
    """The request's args checked against its op's schema (canonical values substituted,
    trailing optional fields padded with None); raises ``RequestError``.

    The hot ops (a full propose or query) first try ``fast_ok``: the same rules written
    out inline (the generic walk cost several times the rest of a request's routing); what
    it does not accept at once goes through the generic walk, which has the last word."""
    if type(args) is list and fast_ok(op, args, limits):
        return args
    return walk(op, args, limits)


def walk(op: Any, args: Any, limits: Limits) -> list[Any]:
    """``validate`` by the generic walk of the op's fields only (the reference)."""
    spec = OPS.get(op) if type(op) is str else None
    if spec is None:
        shown = op if type(op) is str and len(op) <= 40 and op.isprintable() else describe(op)
        raise RequestError(BAD_REQUEST, f"unknown op {shown}")
    if args is None:
        args = []
    elif type(args) is not list:
        raise RequestError(BAD_REQUEST, f"{spec.name}: args must be a list, "
                                        f"got {describe(args)}")
    fields = spec.fields
    n = len(args)
    if n < spec.required or n > len(fields):
        names = ", ".join(f.name + ("?" if f.optional else "") for f in fields)
        raise RequestError(BAD_REQUEST, f"{spec.name}: takes [{names}], got {n} args")
    out = args
    for i in range(n):
        value = args[i]
        f = fields[i]
        if value is None and f.optional:
            continue
        try:
            checked = f.type.check(value, limits)
        except Invalid as exc:
            raise RequestError(exc.code, f"{spec.name}: {f.name} {exc}") from None
        if checked is not value:
            if out is args:
                out = list(args)
            out[i] = checked
    if n < len(fields):
        out = [*out, *([None] * (len(fields) - n))]
    return out


def fast_ok(op: Any, args: list[Any], limits: Limits) -> bool:
    """True only if ``args`` certainly fit ``op``'s schema (and need no padding or
    canonical form): ``OPS["propose"]`` / ``OPS["query"]`` with every field given, a peer
    name seen valid before, no watch. False means "ask the generic walk", never "invalid".
    tests/node/test_requests.py checks that it agrees with the schema."""
    if len(args) == 3 and op == "propose":
        name, cmd, sid = args
        return (type(cmd) is bytes and len(cmd) <= limits.max_entry_size
                and cmd[:2] in _PREFIXES
                and (sid is None or (type(sid) is str and 0 < len(sid) <= MAX_SID))
                and type(name) is str and name in _KNOWN_NAMES)
    if len(args) == 4 and op == "query":
        name, _query, sid, watch_ref = args
        return (watch_ref is None
                and (sid is None or (type(sid) is str and 0 < len(sid) <= MAX_SID))
                and type(name) is str and name in _KNOWN_NAMES)
    return False


# Peer names that passed PeerName.check: the fast path's check is one set lookup. Bounded
# (a client inventing names only fills it once).
_KNOWN_NAMES: set[str] = set()
_KNOWN_NAMES_MAX = 4096


# ---------------------------------------------------------------------------------------
# the cheap shape check of a packed command

# fixarray headers of the command arrays by code (zraft.fsm.commands): [1, payload] has 2
# items, [2, sid, timeout_ms] 3, ... A command's code is a positive fixint: its second byte.
_ARITY: Final = {1: 2, 2: 3, 3: 3, 4: 6, 5: 2, 6: 2}
_PREFIXES: Final = frozenset(bytes((0x90 | n, code)) for code, n in _ARITY.items())


def looks_like_command(data: bytes) -> bool:
    """True if ``data`` starts like a command array: a fixarray of the right length whose
    first item is a known code. O(1): the rest (sid types, the payload) is checked where it
    is applied, identically on every replica (``zraft.fsm.commands``)."""
    return data[:2] in _PREFIXES


_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = _PATTERNS[pattern] = re.compile(pattern)
    return compiled


__all__ = [
    "BAD_REQUEST", "MAX_CREATE_BATCH", "NODE", "NODE_OPS", "OPERATOR_OPS", "OPS", "PEER",
    "TOO_LARGE", "Address",
    "AnyValue",
    "Command", "Field", "Int", "Invalid", "Limits", "ListOf", "OneOf", "OpSpec", "PeerIdText",
    "PeerName", "RequestError", "Scalar", "Text", "describe", "fast_ok", "looks_like_command",
    "validate", "walk",
]
