"""Codec: round trips of every frame, strict rejection of anything malformed."""

from __future__ import annotations

import copy
import pickle

import msgpack
import pytest
from hypothesis import given, settings

from tests.transport.strategies import frames, payloads, raft_messages
from zraft.core.entries import CONFIG, DATA, NOOP, ClusterConfig, Entry, SnapshotMeta
from zraft.core.messages import (
    MESSAGE_CODES,
    AppendEntries,
    AppendReply,
    InstallSnapshot,
    TimeoutNow,
    VoteReply,
    VoteRequest,
)
from zraft.transport import codec
from zraft.transport.codec import ClientReply, ClientRequest, decode, encode
from zraft.transport.errors import DecodeError
from zraft.transport.framing import FrameDecoder
from zraft.transport.sentinels import NOT_FOUND


@settings(max_examples=400, deadline=None)
@given(frames)
def test_every_frame_round_trips(frame):
    decoded = decode(encode(frame))
    assert decoded == frame
    assert type(decoded) is type(frame)


@settings(max_examples=100, deadline=None)
@given(raft_messages)
def test_raft_frames_are_kind_code_fields(msg):
    raw = msgpack.unpackb(encode(msg), raw=False)
    assert raw[:2] == [1, MESSAGE_CODES[type(msg)]]
    # a VoteRequest without the transfer flag goes in the 7-field form older nodes read
    short = type(msg) is VoteRequest and not msg.transfer
    assert len(raw) == 2 + len(msg) - short


@settings(max_examples=100, deadline=None)
@given(payloads)
def test_generic_payloads_round_trip(payload):
    assert decode(encode(ClientReply(7, "ok", payload))).payload == payload


def test_entry_wire_shape_and_types():
    config = ClusterConfig(("a@h:1", "b@h:2"), ("c@h:3",))
    msg = AppendEntries(
        5,
        "a@h:1",
        "b@h:2",
        9,
        4,
        [
            Entry(10, 5, DATA, b"x", 100),
            Entry(11, 5, CONFIG, config, 101),
            Entry(12, 5, NOOP, None, 102),
        ],
        9,
        3,
    )
    raw = msgpack.unpackb(encode(msg), raw=False)
    assert raw[7] == [
        [10, 5, 2, b"x", 100],
        [11, 5, 1, [["a@h:1", "b@h:2"], ["c@h:3"]], 101],
        [12, 5, 3, None, 102],
    ]
    out = decode(encode(msg))
    assert isinstance(out.entries[1].data, ClusterConfig)
    assert out.entries[1].data.old == ("a@h:1", "b@h:2")
    assert all(type(e) is Entry for e in out.entries)


def test_snapshot_meta_wire_shape():
    meta = SnapshotMeta(10, 2, 7, ClusterConfig(("a",), ()))
    raw = msgpack.unpackb(encode(InstallSnapshot(2, "a", "b", meta, 1)), raw=False)
    assert raw[5] == [10, 2, 7, [["a"], []]]


def test_not_found_is_ext1_and_decodes_to_the_singleton():
    body = encode(ClientReply(1, "ok", [NOT_FOUND, None]))
    raw = msgpack.unpackb(body, raw=False)
    assert raw[3][0] == msgpack.ExtType(1, b"")
    assert raw[3][1] is None
    out = decode(body)
    assert out.payload[0] is NOT_FOUND
    assert out.payload[1] is None
    assert copy.deepcopy(NOT_FOUND) is NOT_FOUND
    assert pickle.loads(pickle.dumps(NOT_FOUND)) is NOT_FOUND
    assert repr(NOT_FOUND) == "NOT_FOUND"


def test_encode_refuses_unknown_objects():
    with pytest.raises(TypeError):
        encode(("not", "a", "frame"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode(ClientRequest(1, "op", object()))


def test_encode_frame_is_length_prefixed():
    data = codec.encode_frames([ClientRequest(1, "a", None), ClientRequest(2, "b", [1])])
    bodies = FrameDecoder().feed(data)
    assert [decode(b) for b in bodies] == [ClientRequest(1, "a", None), ClientRequest(2, "b", [1])]


# ---------------------------------------------------------------------------------------
# Strict decoding

BAD_UINT = [-1, True, False, 1.0, "1", None, b"\x01", [1]]
BAD_STR = [1, b"a", None, ["a"], True]
BAD_BOOL = [0, 1, "true", None, 1.0]

# (message, kinds of its fields)
SAMPLES = [
    (VoteRequest(3, "a", "b", 5, 2, False, "c1", True), "ussuubcb"),
    (TimeoutNow(3, "a", "b", 5, 2, "c1"), "ussuuc"),
    (VoteReply(3, "a", "b", True, False, False, "c1"), "ussbbbc"),
    (AppendEntries(3, "a", "b", 4, 2, [Entry(5, 3, DATA, b"x", 1)], 4, 9, 2, "c1"),
     "ussuuEuuuc"),
    (AppendReply(3, "a", "b", True, 5, 0, 0, 9, True, "c1"), "ussbuuuubc"),
    (InstallSnapshot(3, "a", "b", SnapshotMeta(9, 2, 1, ClusterConfig(("a",), ())), 1, "c1"),
     "ussMuc"),
]

BAD_ENTRIES = [
    "x",
    None,
    [[5, 3, 2, b"x"]],  # arity
    [[5, 3, 2, b"x", 1, 0]],
    [[6, 3, 2, b"x", 1]],  # not prev_index + 1
    [[5, 3, 2, b"x", 1], [7, 3, 2, b"x", 1]],  # gap
    [[5, -1, 2, b"x", 1]],
    [[5, 3, 2, b"x", -1]],
    [[5, 3, 4, b"x", 1]],  # unknown type
    [[5, 3, 0, b"x", 1]],
    [[5, 3, True, b"x", 1]],
    [[5, 3, 2, "x", 1]],  # DATA must be bytes
    [[5, 3, 2, None, 1]],
    [[5, 3, 1, b"x", 1]],  # CONFIG must be [old, new]
    [[5, 3, 1, [["a"]], 1]],
    [[5, 3, 1, [["a"], [1]], 1]],
    [[5, 3, 1, [["a"], "b"], 1]],
    [[5, 3, 3, 1, 1]],  # NOOP data
    [[5.0, 3, 2, b"x", 1]],
    [[True, 3, 2, b"x", 1]],
]
BAD_META = [
    None,
    [9, 2, 1],
    [9, 2, 1, [["a"], []], 0],
    [-9, 2, 1, [["a"], []]],
    [9, 2, "1", [["a"], []]],
    [9, 2, 1, [["a"]]],
    [9, 2, 1, [[1], []]],
    [9, 2, 1, "cfg"],
]
BAD_CLUSTER = [1, None, b"c1", ["c1"], "x" * 65]
BAD_BY_KIND = {"u": BAD_UINT, "s": BAD_STR, "b": BAD_BOOL, "E": BAD_ENTRIES, "M": BAD_META,
               "c": BAD_CLUSTER}


def _raw(msg):
    return msgpack.unpackb(encode(msg), raw=False)


def _cases():
    for msg, kinds in SAMPLES:
        assert len(kinds) == len(msg._fields)
        for pos, kind in enumerate(kinds):
            for bad in BAD_BY_KIND[kind]:
                yield pytest.param(msg, pos, bad, id=f"{type(msg).__name__}.{msg._fields[pos]}")


@pytest.mark.parametrize(("msg", "pos", "bad"), list(_cases()))
def test_decoder_rejects_each_bad_field(msg, pos, bad):
    raw = _raw(msg)
    assert decode(msgpack.packb(raw, use_bin_type=True)) == msg  # the sample itself is fine
    raw[2 + pos] = bad
    with pytest.raises(DecodeError):
        decode(msgpack.packb(raw, use_bin_type=True))


@pytest.mark.parametrize(("msg", "kinds"), SAMPLES)
def test_decoder_rejects_wrong_arity(msg, kinds):
    raw = _raw(msg)
    # (a VoteRequest without its last field is the valid form of nodes before transfers)
    shorter = raw[:-2] if type(msg) is VoteRequest else raw[:-1]
    for bad in (shorter, [*raw, 0], raw[:2]):
        with pytest.raises(DecodeError):
            decode(msgpack.packb(bad, use_bin_type=True))


BAD_BODIES = [
    msgpack.packb([1, 0, 1, "a", "b", 1, 1, False]),  # unknown message code
    msgpack.packb([1, 7, 1, "a", "b", 1, 1, False]),
    msgpack.packb([1, "1", 1, "a", "b", 1, 1, False]),
    msgpack.packb([1, True, 1, "a", "b", 1, 1, False]),
    msgpack.packb([1]),
    msgpack.packb([0, 1, "op", None]),  # unknown kinds
    msgpack.packb([7, 1, "op", None]),
    msgpack.packb([6, "watch"]),  # push arity
    msgpack.packb([6, "watch", [], 1]),
    msgpack.packb([6, None, []]),
    msgpack.packb(["2", 1, "op", None]),
    msgpack.packb([True, 1, "op", None]),
    msgpack.packb([]),
    msgpack.packb({"kind": 1}),
    msgpack.packb(1),
    msgpack.packb(None),
    msgpack.packb([2, -1, "op", None]),  # generic envelopes
    msgpack.packb([2, 1, 1.5, None]),
    msgpack.packb([2, 1, "op"]),
    msgpack.packb([2, 1, "op", None, None]),
    msgpack.packb([3, "1", "ok", None]),
    msgpack.packb([4, "offer"]),
    msgpack.packb([4, None, 1]),
    msgpack.packb([5, 1, b"op", None]),
    msgpack.packb([3, 1, "ok", msgpack.ExtType(2, b"")]),  # unknown ext type
    msgpack.packb([3, 1, "ok", msgpack.ExtType(1, b"x")]),
    msgpack.packb([3, 1, "ok", None]) + b"\x00",  # trailing bytes
    msgpack.packb([3, 1, "ok", "abcdef"])[:-2],  # truncated
    b"\xc1",  # reserved byte
    b"",
    b"\x91" * 5000 + b"\x00",  # nesting too deep
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_decoder_rejects_malformed_bodies(body):
    with pytest.raises(DecodeError):
        decode(body)


def test_push_frame_wire_shape():
    push = codec.Push("watch", ["peer", "sid", 3, "data_changed"])
    wire = msgpack.unpackb(encode(push), raw=False)
    assert wire == [6, "watch", ["peer", "sid", 3, "data_changed"]]
    assert decode(encode(push)) == push


def test_generic_frames_accept_int_or_str_ops():
    assert decode(msgpack.packb([2, 0, 7, None])) == ClientRequest(0, 7, None)
    assert decode(msgpack.packb([3, 4, "ok", {1: "a"}])) == ClientReply(4, "ok", {1: "a"})


def test_decode_many_is_all_or_nothing():
    good = encode(ClientRequest(1, "a", None))
    assert codec.decode_many([good, good]) == [ClientRequest(1, "a", None)] * 2
    with pytest.raises(DecodeError):
        codec.decode_many([good, b"\xc1"])


def test_noop_with_bytes_data_is_tolerated():
    raw = _raw(AppendEntries(1, "a", "b", 0, 0, [Entry(1, 1, NOOP, None, 0)], 0, 0))
    raw[7][0][3] = b""
    assert decode(msgpack.packb(raw, use_bin_type=True)).entries[0].data == b""


def test_vote_request_reads_the_older_seven_field_form_and_the_transfer_flag():
    old = msgpack.packb([1, MESSAGE_CODES[VoteRequest], 3, "a", "b", 5, 2, False, "c1"])
    assert decode(old) == VoteRequest(3, "a", "b", 5, 2, False, "c1", False)
    msg = VoteRequest(3, "a", "b", 5, 2, False, "c1", True)
    assert decode(encode(msg)) == msg
    assert _raw(VoteRequest(3, "a", "b", 5, 2, False, "c1"))[2:] == [3, "a", "b", 5, 2, False,
                                                                     "c1"]
