"""Hypothesis strategies for every frame a node reads, built from the protocol's own schema.

Requests come from ``zraft.node.requests.OPS`` (each field type's attributes are its whole
rule), Raft messages from ``zraft.core.messages`` (their NamedTuple fields) and the frame
kinds from ``zraft.transport.codec``. Each ``Case`` carries what a correct node must do with
it, so a fuzzer can check the answer and not only that the node survived:

- ``ANSWER``: a well-formed request: any reply but ``bad_request`` or ``error``;
- ``BAD_REQUEST`` / ``TOO_LARGE``: a request whose envelope decodes but whose arguments do
  not fit the schema: exactly that reply, and the connection stays open;
- ``CLOSE``: a frame that is not a frame (bad msgpack, nesting past the limit, a Raft
  message with wrong fields, a peer frame on a client connection): the node closes that
  connection, and only that one;
- ``SILENT``: no reply is due and the connection stays open (a well-formed Raft message of
  another cluster on a node connection: refused by the core, logged).

Requests that would legitimately change the cluster (``set_conf``, ``bootstrap``,
``create_peer``, ``create_peers``, ``partition``, ``heal``, ``transfer_leader``) are only
ever generated malformed: the fuzzer tests refusal, not operations.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

import msgpack
from hypothesis import strategies as st

from zraft.core.entries import DATA, Entry, SnapshotMeta
from zraft.core.messages import (
    AppendEntries,
    AppendReply,
    InstallSnapshot,
    Quiesce,
    TimeoutNow,
    VoteReply,
    VoteRequest,
)
from zraft.node import requests as R
from zraft.transport import codec

ANSWER: Final = "answer"
BAD_REQUEST: Final = "bad_request"
TOO_LARGE: Final = "too_large"
CLOSE: Final = "close"
SILENT: Final = "silent"

DESTRUCTIVE: Final = frozenset({"set_conf", "bootstrap", "create_peer", "create_peers",
                                "partition", "heal", "transfer_leader"})
HEADER: Final = struct.Struct(">I")


@dataclass(frozen=True)
class Target:
    """What the strategies need to know of the cluster under test."""

    peer_name: str  # the real peer: most requests go there
    peers: tuple[str, ...]  # its members' peer ids
    cluster_id: str
    max_entry_size: int  # the nodes' [raft] max_entry_size (small, so its edge is cheap)


@dataclass(frozen=True)
class Case:
    body: bytes  # the frame body (the fuzzer adds the length header)
    expect: str
    role: str = "client"  # the connection it is sent on
    label: str = ""


def frame(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


# ---------------------------------------------------------------------------------------
# values

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=True),
    st.text(max_size=20), st.binary(max_size=20),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=12)


def nested(depth: int, leaf: Any = None) -> Any:
    value: Any = leaf
    for _ in range(depth):
        value = [value]
    return value


# deep enough to pass the transport's nesting limit (64) inside a request's args
deep_values = st.integers(min_value=70, max_value=300).map(nested)
wrong_types = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=True), st.just(2**64 - 1),
    st.integers(-(2**63), -1), st.text(max_size=8), st.binary(max_size=8),
    st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=4), scalars, max_size=2),
    deep_values,
)


def _valid(ftype: Any, target: Target) -> st.SearchStrategy[Any]:
    if isinstance(ftype, R.PeerName):
        return st.one_of(st.just(target.peer_name),
                         st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True))
    if isinstance(ftype, R.Text):
        if ftype.pattern:
            return st.from_regex(ftype.pattern, fullmatch=True).filter(
                lambda s: ftype.min_len <= len(s) <= ftype.max_len)
        return st.text(min_size=ftype.min_len, max_size=min(ftype.max_len, 40))
    if isinstance(ftype, R.PeerIdText):
        return st.sampled_from(target.peers)
    if isinstance(ftype, R.Address):
        return st.integers(1, 65535).map(lambda p: f"127.0.0.1:{p}")
    if isinstance(ftype, R.Int):
        return st.one_of(st.sampled_from((ftype.lo, ftype.hi)), st.integers(ftype.lo, ftype.hi))
    if isinstance(ftype, R.Command):
        return commands(target)
    if isinstance(ftype, R.Scalar):
        return st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=ftype.max_len),
                         st.binary(max_size=ftype.max_len))
    if isinstance(ftype, R.OneOf):
        return st.sampled_from(ftype.choices)
    if isinstance(ftype, R.ListOf):
        return st.lists(_valid(ftype.item, target), min_size=ftype.min_len,
                        max_size=min(ftype.max_len, 4))
    if isinstance(ftype, R.AnyValue):
        return values
    raise TypeError(f"no strategy for field type {type(ftype).__name__}")


def _invalid(ftype: Any, target: Target) -> st.SearchStrategy[Any]:
    """Values the type must refuse: wrong types, and the values just past each bound."""
    edges: list[Any] = []
    if isinstance(ftype, R.Text):
        edges += ["x" * (ftype.max_len + 1), "é\n/" if ftype.pattern else None]
    if isinstance(ftype, R.Int):
        edges += [ftype.lo - 1, ftype.hi + 1, True]
    if isinstance(ftype, R.ListOf):
        edges += [[None], [True] * (ftype.max_len + 1)][: 2 if ftype.max_len < 300 else 1]
    if isinstance(ftype, R.PeerIdText | R.Address):
        edges += ["no-port", "a@b:99999", "x" * (ftype.max_len + 1)]
    if isinstance(ftype, R.Command):
        edges += [b"", b"\x92\x63\x00", b"garbage"]
    if isinstance(ftype, R.OneOf):
        edges += ["sideways", ""]
    edges = [e for e in edges if e is not None and _packable(e)]
    strategy = st.one_of(wrong_types, st.sampled_from(edges)) if edges else wrong_types
    return strategy.filter(lambda v: _refused(ftype, v, target))


def _packable(value: Any) -> bool:
    try:
        frame(value)
    except (OverflowError, ValueError, TypeError):
        return False
    return True


def _refused(ftype: Any, value: Any, target: Target) -> bool:
    try:
        ftype.check(value, R.Limits(target.max_entry_size))
    except R.Invalid:
        return True
    return False


def commands(target: Target) -> st.SearchStrategy[bytes]:
    """Packed commands: dict writes, session commands with odd values, garbage payloads
    (the state machine refuses those, identically on every replica), and the size edge."""
    keys = st.text(min_size=1, max_size=8).map(lambda k: f"fuzz/{k}")
    writes = st.one_of(
        st.tuples(keys, values).map(lambda kv: [1, list(kv)]),
        st.tuples(keys, values).map(lambda kv: [1, ["put", *kv]]),
        keys.map(lambda k: [1, ["delete", k]]),
        st.tuples(keys, st.integers(-5, 5)).map(lambda kv: [1, ["incr", *kv]]),
        values.map(lambda v: [1, v]),  # any payload: refused by the backend, not the node
        st.tuples(st.text(max_size=10), st.integers(-1, 10**7)).map(lambda t: [2, *t]),
        st.text(max_size=10).map(lambda s: [5, s]),
    )
    edge = target.max_entry_size - len(frame([1, ["fuzz/edge", b""]])) - 3
    at_limit = st.just(frame([1, ["fuzz/edge", b"e" * edge]]))
    return st.one_of(writes.map(frame), at_limit)


# ---------------------------------------------------------------------------------------
# requests


def _drawn_op(draw: st.DrawFn, mode: str) -> str:
    if mode == "too_large":
        return "propose"
    if mode == "valid":
        return draw(st.sampled_from(sorted(set(R.OPS) - DESTRUCTIVE)))
    return draw(st.sampled_from(sorted(R.OPS)))


@st.composite
def request_cases(draw: st.DrawFn, target: Target, only_op: str | None = None) -> Case:
    """A request frame; ``only_op``: of that op (a destructive one is never sent valid)."""
    if only_op is not None:
        op = only_op
        modes = ["one_bad", "arity", "not_list", "deep"]
        mode = draw(st.sampled_from(modes if op in DESTRUCTIVE else ["valid", *modes]))
    else:
        mode = draw(st.sampled_from(["valid", "valid", "valid", "one_bad", "one_bad",
                                     "arity", "not_list", "unknown_op", "too_large", "deep"]))
        op = _drawn_op(draw, mode)
    spec = R.OPS[op]
    args: Any = [draw(_valid(f.type, target)) for f in spec.fields]
    if op == "query":
        args[3] = None  # a watch needs a live session of this connection: no watch
    n_given = draw(st.integers(spec.required, len(spec.fields)))
    args = args[:n_given]
    expect = ANSWER
    checkable = [i for i, f in enumerate(spec.fields) if not isinstance(f.type, R.AnyValue)]
    if mode == "one_bad" and checkable:
        i = draw(st.sampled_from(checkable))
        f = spec.fields[i]
        args = [draw(_valid(g.type, target)) for g in spec.fields]
        bad = _invalid(f.type, target)
        args[i] = draw(bad.filter(lambda v: v is not None) if f.optional else bad)
        expect = BAD_REQUEST
    elif mode in ("one_bad", "arity"):
        args = args + [None] * draw(st.integers(len(spec.fields) - n_given + 1,
                                                len(spec.fields) - n_given + 3))
        expect = BAD_REQUEST
    elif mode == "not_list":
        not_lists = st.one_of(st.none(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=5),
                              st.dictionaries(st.text(max_size=3), scalars, max_size=2))
        args = draw(not_lists) if spec.required else 5
        expect = BAD_REQUEST
    elif mode == "unknown_op":
        op = draw(st.one_of(st.text(max_size=12), st.integers(0, 2**64 - 1)).filter(
            lambda o: o not in R.OPS))
        expect = BAD_REQUEST
    elif mode == "too_large":
        args = [target.peer_name, frame([1, ["fuzz/big", b"b" * target.max_entry_size]])]
        expect = TOO_LARGE
    elif mode == "deep":
        args = [*args, draw(deep_values)] if args else draw(deep_values)
        expect = CLOSE  # the envelope nests past the transport's limit
    if expect != CLOSE and _too_deep(args):
        expect = CLOSE  # a wrong value nested past the transport's limit
    kind = draw(st.sampled_from([codec.REQUEST, codec.REQUEST, codec.ADMIN]))
    if kind == codec.ADMIN and op in R.OPS and R.OPS[op].target != R.NODE and expect == ANSWER:
        expect = BAD_REQUEST  # admin frames carry node ops only
    req_id = draw(st.integers(0, 2**64 - 1))
    label = f"{'<random op>' if mode == 'unknown_op' else op}:{mode}"  # one tally row
    return Case(frame([kind, req_id, op, args]), expect, "client", label)


def _too_deep(args: Any) -> bool:
    try:
        codec.check_nesting(args, "args")
    except codec.DecodeError:
        return True
    return False


# ---------------------------------------------------------------------------------------
# frames that are not requests

uints = st.one_of(st.integers(0, 50), st.integers(0, 2**64 - 1))
ids = st.sampled_from(["zraft@127.0.0.1:1", "x@y:2"]) | st.text(max_size=12)


def raft_messages(cluster: str) -> st.SearchStrategy[Any]:
    entries = st.integers(0, 3).flatmap(lambda n: st.just(
        [Entry(i + 1, 1, DATA, b"x", 1) for i in range(n)]))
    meta = st.just(SnapshotMeta())
    return st.one_of(
        st.builds(VoteRequest, uints, ids, ids, uints, uints, st.booleans(), st.just(cluster),
                  st.booleans()),
        st.builds(TimeoutNow, uints, ids, ids, uints, uints, st.just(cluster)),
        st.builds(Quiesce, uints, ids, ids, uints, uints, uints, uints, st.just(cluster)),
        st.builds(VoteReply, uints, ids, ids, st.booleans(), st.booleans(), st.booleans(),
                  st.just(cluster)),
        st.builds(AppendEntries, uints, ids, ids, st.just(0), uints, entries, uints, uints,
                  uints, st.just(cluster)),
        st.builds(AppendReply, uints, ids, ids, st.booleans(), uints, uints, uints, uints,
                  st.booleans(), st.just(cluster)),
        st.builds(InstallSnapshot, uints, ids, ids, meta, uints, st.just(cluster)),
    )


@st.composite
def peer_frame_cases(draw: st.DrawFn, target: Target) -> Case:
    """Raft messages and snapshot control: malformed on a node connection (closed), of
    another cluster on a node connection (refused, silent), anything on a client one
    (closed)."""
    foreign = draw(st.sampled_from(["", "another-cluster"]))
    msg = draw(raft_messages(foreign))
    raw = list(codec._wire_tuple(msg))
    how = draw(st.sampled_from(["foreign", "bad_field", "arity", "from_client", "snapshot"]))
    if how == "foreign":
        return Case(frame(raw), SILENT, "node", "raft:foreign")
    if how == "bad_field":
        i = draw(st.integers(2, len(raw) - 1))
        raw[i] = draw(wrong_types.filter(lambda v: type(v) is not type(raw[i])))
        return Case(frame(raw), CLOSE, "node", "raft:bad_field")
    if how == "arity":
        # (a VoteRequest without its transfer flag is the valid older form: cut deeper)
        longest = len(raw) - (2 if type(msg) is VoteRequest and msg.transfer else 1)
        raw = raw[: draw(st.integers(1, longest))] if draw(st.booleans()) \
            else [*raw, None]
        return Case(frame(raw), CLOSE, "node", "raft:arity")
    if how == "snapshot":
        args = draw(st.lists(values, max_size=8))
        return Case(frame([codec.SNAPSHOT, draw(st.sampled_from(["offer", "accept", "x"])),
                           args]), SILENT, "node", "snapshot_control")
    return Case(frame(raw), CLOSE, "client", "raft:from_client")


@st.composite
def raw_cases(draw: st.DrawFn, target: Target) -> Case:
    """Bodies that are not one well-formed frame."""
    how = draw(st.sampled_from(["nested_array", "nested_map", "garbage", "kind", "reply"]))
    if how == "nested_array":  # the trial's frame: 1,000 one-element arrays
        return Case(b"\x91" * draw(st.integers(65, 3000)) + b"\xc0", CLOSE, "client", how)
    if how == "nested_map":
        depth = draw(st.integers(65, 1000))
        return Case(b"\x81\xa1k" * depth + b"\xc0", CLOSE, "client", how)
    if how == "garbage":
        body = draw(st.binary(min_size=1, max_size=64).filter(_not_a_frame))
        return Case(body, CLOSE, "client", how)
    if how == "kind":
        return Case(frame([draw(st.integers(7, 2**40)), 1, 2]), CLOSE, "client", how)
    # a client sending what only nodes send to clients: nothing to do, nothing to answer
    body = frame([codec.REPLY, 1, "ok", None]) if draw(st.booleans()) \
        else frame([codec.PUSH, "watch", [1, 2]])
    return Case(body, SILENT, "client", how)


def _not_a_frame(body: bytes) -> bool:
    try:
        codec.decode(body)
    except Exception:
        return True
    return False


def cases(target: Target) -> st.SearchStrategy[Case]:
    """Every kind of case, requests most often."""
    return st.one_of(request_cases(target), request_cases(target), request_cases(target),
                     peer_frame_cases(target), raw_cases(target))


__all__ = ["ANSWER", "BAD_REQUEST", "CLOSE", "DESTRUCTIVE", "SILENT", "TOO_LARGE", "Case",
           "Target", "cases", "commands", "frame", "nested", "peer_frame_cases",
           "raw_cases", "request_cases", "values"]
