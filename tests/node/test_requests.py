"""The request schema (zraft.node.requests): every op, wrong types, boundary sizes."""

from __future__ import annotations

import msgpack
import pytest

from zraft.fsm.commands import (
    encode_close,
    encode_connect,
    encode_expire_check,
    encode_ping,
    encode_session_write,
    encode_write,
)
from zraft.node.requests import (
    BAD_REQUEST,
    MAX_PEERS,
    MAX_SID,
    MAX_TIMEOUT_MS,
    NODE,
    NODE_OPS,
    OPS,
    PEER,
    TOO_LARGE,
    Limits,
    RequestError,
    looks_like_command,
    validate,
)

LIMITS = Limits(max_entry_size=4096)
CMD = encode_write(["k", "v"])
PEER_ID = "zraft@127.0.0.1:7001"

# one valid args list per op: the schema's own examples
VALID = {
    "propose": ["zraft", CMD, None],
    "query": ["zraft", ["get", "k"], "s-1", 7],
    "query_local": ["zraft", "k"],
    "get_conf": ["zraft"],
    "set_conf": ["zraft", 3, [PEER_ID, "zraft@127.0.0.1:7002"], 1000],
    "transfer_leader": ["zraft", PEER_ID, 500],
    "stat": ["zraft"],
    "snapshot_save": ["zraft"],
    "snapshot_read": ["zraft", "snapshot-12-3", "data/state", 0],
    "bootstrap": ["zraft"],
    "create_peer": ["zraft", "dict"],
    "create_peers": [["g1", "g2"], "dict", ["c1", "c2"], "check"],
    "check_exists": ["zraft"],
    "node_status": [],
    "list_peers": [],
    "ping": [],
    "partition": [["127.0.0.1:7002"], "in"],
    "heal": [],
}


def refused(op, args, limits=LIMITS) -> RequestError:
    with pytest.raises(RequestError) as info:
        validate(op, args, limits)
    return info.value


def test_every_op_has_an_example_and_a_target() -> None:
    assert set(VALID) == set(OPS)
    assert {n for n, s in OPS.items() if s.target == NODE} == NODE_OPS
    for name, spec in OPS.items():
        assert spec.name == name and spec.target in (PEER, NODE)
        if spec.target == PEER:
            assert spec.fields[0].name == "peer_name"  # what the node routes on


@pytest.mark.parametrize("op", sorted(VALID))
def test_valid_args_pass_and_are_padded(op) -> None:
    out = validate(op, VALID[op], LIMITS)
    assert len(out) == len(OPS[op].fields)
    assert out[: len(VALID[op])] == VALID[op]


@pytest.mark.parametrize("op", sorted(VALID))
def test_each_field_of_each_op_refuses_a_wrong_type(op) -> None:
    spec = OPS[op]
    for i, field in enumerate(spec.fields):
        if type(field.type).__name__ == "AnyValue":
            continue
        args = list(VALID[op]) + [None] * (len(spec.fields) - len(VALID[op]))
        args[i] = {"a": 1}  # a map fits no field
        err = refused(op, args)
        assert err.code == BAD_REQUEST
        assert err.message.startswith(f"{op}: {field.name} ")
        assert "\n" not in err.message


@pytest.mark.parametrize("op", sorted(VALID))
def test_arity_is_checked(op) -> None:
    spec = OPS[op]
    too_many = list(VALID[op]) + [None] * (len(spec.fields) - len(VALID[op])) + [1]
    assert refused(op, too_many).message.startswith(f"{op}: takes [")
    if spec.required:
        assert refused(op, VALID[op][: spec.required - 1]).code == BAD_REQUEST


def test_args_must_be_a_list_and_none_means_empty() -> None:
    assert refused("propose", ("zraft", CMD)).message == "propose: args must be a list, got tuple"
    assert refused("stat", None).message.startswith("stat: takes [peer_name]")
    assert validate("ping", None, LIMITS) == []


def test_unknown_ops_are_named_briefly() -> None:
    assert refused("nope", []).message == "unknown op nope"
    assert refused(7, []).message == "unknown op int"
    assert refused("x" * 10_000, []).message == "unknown op str"  # never the whole value


def test_peer_name_rules() -> None:
    for bad in ("", "a" * 65, "a b", "a@b", 1, b"zraft", ["zraft"], None):
        assert refused("stat", [bad]).message.startswith("stat: peer_name ")
    assert validate("stat", ["a" * 64], LIMITS) == ["a" * 64]
    # the trial's frame: a list as the peer name
    assert refused("propose", [[1], b"", None]).message.startswith("propose: peer_name ")


def test_session_ids_are_bounded_strs() -> None:
    for op, pos in (("propose", 2), ("query", 2)):
        for bad in ({"a": 1}, [1], "", "s" * (MAX_SID + 1), 5):
            args = list(VALID[op])
            args[pos] = bad
            assert refused(op, args).message.startswith(f"{op}: sid ")
        args = list(VALID[op])
        args[pos] = "s" * MAX_SID
        validate(op, args, LIMITS)


def test_command_size_boundary_is_too_large() -> None:
    head = 5  # fixarray, the code, a bin16 header
    at_limit = encode_write(b"x" * (LIMITS.max_entry_size - head))
    assert len(at_limit) == LIMITS.max_entry_size
    validate("propose", ["zraft", at_limit, None], LIMITS)
    over = encode_write(b"x" * (LIMITS.max_entry_size - head + 1))
    err = refused("propose", ["zraft", over, None])
    assert err.code == TOO_LARGE
    assert str(LIMITS.max_entry_size) in err.message and str(len(over)) in err.message


def test_command_must_be_bytes_shaped_like_a_command() -> None:
    for bad in ("text", 1, None, bytearray(CMD)):
        assert refused("propose", ["zraft", bad, None]).message.startswith("propose: command ")
    for garbage in (b"", b"\x92", b"\xc0", msgpack.packb([9, 1]), msgpack.packb([1]),
                    msgpack.packb({"a": 1}), msgpack.packb([1, 2, 3])):
        assert refused("propose", ["zraft", garbage, None]).code == BAD_REQUEST


def test_every_command_encoder_passes_the_shape_check() -> None:
    for cmd in (encode_write(["k", 1]), encode_connect("s", 1000), encode_ping("s", 0),
                encode_session_write("s", 1, 0, ["k", 1], True), encode_close("s"),
                encode_expire_check("s")):
        assert looks_like_command(cmd)


def test_set_conf_fields() -> None:
    base = VALID["set_conf"]
    for bad in ("3", 3.0, True, -1, 2**63, [3], None):
        assert refused("set_conf", [base[0], bad, *base[2:]]).message.startswith(
            "set_conf: prev_index ")
    for bad in ([], "a@h:1", [1], ["no-at-sign"], ["a@h:0"], ["a@h:port"], ["a b@h:1"],
                [PEER_ID] * (MAX_PEERS + 1), ["a@" + "h" * 400 + ":1"]):
        assert refused("set_conf", [base[0], 3, bad, 1000]).message.startswith(
            "set_conf: peers ")
    for bad in (0, MAX_TIMEOUT_MS + 1, 1.5, "1000", None):
        assert refused("set_conf", [*base[:3], bad]).message.startswith("set_conf: timeout_ms ")


def test_set_conf_peer_ids_are_canonical() -> None:
    out = validate("set_conf", ["zraft", 0, ["a@h:0007"], 1000], LIMITS)
    assert out[2] == ["a@h:7"]


def test_query_watch_refs() -> None:
    for ok in (0, 2**64 - 1, -(2**63), "ref", b"ref", None):
        validate("query", ["zraft", "k", "s-1", ok], LIMITS)
    for bad in (2**64, [1], {"a": 1}, "r" * 257, 1.5):
        assert refused("query", ["zraft", "k", "s-1", bad]).message.startswith(
            "query: watch_ref ")


def test_partition_and_create_peer_fields() -> None:
    for bad in ("127.0.0.1:7002", [1], ["nohost"], ["h:0"], ["h:70000"]):
        assert refused("partition", [bad]).message.startswith("partition: addresses ")
    assert refused("partition", [[], "sideways"]).message.startswith("partition: direction ")
    assert validate("partition", [[]], LIMITS) == [[], None]
    assert refused("create_peer", ["zraft", ""]).message.startswith("create_peer: backend ")
    assert refused("create_peer", ["zraft", "b" * 257]).code == BAD_REQUEST


def test_create_peers_fields_are_capped_and_checked() -> None:
    from zraft.node.requests import MAX_CREATE_BATCH

    assert validate("create_peers", [["g1"], "dict"], LIMITS) == [["g1"], "dict", None, None]
    many = [f"g{i}" for i in range(MAX_CREATE_BATCH)]
    assert validate("create_peers", [many, "dict", [""] * len(many)], LIMITS)[0] == many
    too_many = refused("create_peers", [[*many, "x"], "dict"])
    assert too_many.message.startswith("create_peers: peer_names must have 1-1000 items")
    assert refused("create_peers", [[], "dict"]).code == BAD_REQUEST
    bad_name = refused("create_peers", [["ok", "no/slash"], "dict"]).message
    assert bad_name.startswith("create_peers: peer_names item 1 must be a peer name")
    assert refused("create_peers", [["g1"], "dict", ["bad id!"]]).message.startswith(
        "create_peers: cluster_ids item 0 ")
    assert refused("create_peers", [["g1"], "dict", None, "maybe"]).message.startswith(
        "create_peers: mode ")
    assert refused("create_peers", ["g1", "dict"]).message.startswith(
        "create_peers: peer_names must be a list")


def test_the_fast_path_agrees_with_the_schema() -> None:
    """``fast_ok`` (the hot ops written out inline) may only accept what the generic walk
    accepts unchanged; anything else it leaves to the walk."""
    from zraft.node.requests import fast_ok, walk

    validate("stat", ["zraft"], LIMITS)  # the name is known from here on
    over = encode_write(b"x" * LIMITS.max_entry_size)
    names = ["zraft", "unknown-but-valid", "", "a b", [1], {"a": 1}, None, 7, "z" * 65]
    sids = [None, "s-1", "", "s" * MAX_SID, "s" * (MAX_SID + 1), {"a": 1}, ["s"], 5, b"s"]
    cmds = [CMD, over, b"", b"\x92", b"\xc0\x00", "text", None, bytearray(CMD)]
    refs = [None, 7, "ref", [1], {"a": 1}]
    cases = [("propose", [n, c, s]) for n in names for c in cmds for s in sids]
    cases += [("query", [n, "k", s, r]) for n in names for s in sids for r in refs]
    cases += [("propose", ["zraft", CMD]), ("query", ["zraft", "k"]), ("stat", ["zraft"])]
    accepted = 0
    for op, args in cases:
        if fast_ok(op, args, LIMITS):
            accepted += 1
            assert walk(op, args, LIMITS) == args, (op, args)
    assert accepted == 6  # a known name, a good command or no watch, each valid sid


def test_snapshot_read_names_only_a_snapshot_directory_and_a_bounded_path() -> None:
    for name in ("../snapshot-1-1", "snapshot-1-1/..", "tmp-1", "snapshot-1", "x" * 65):
        err = refused("snapshot_read", ["zraft", name, "sessions", 0])
        assert err.code == BAD_REQUEST and err.message.startswith("snapshot_read: snapshot ")
    assert refused("snapshot_read", ["zraft", "snapshot-1-1", "p" * 1025, 0]).message \
        .startswith("snapshot_read: path ")
    assert refused("snapshot_read", ["zraft", "snapshot-1-1", "sessions", -1]).message \
        .startswith("snapshot_read: offset ")
    assert refused("snapshot_save", ["zraft", 1]).code == BAD_REQUEST


def test_transfer_leader_target_and_timeout_are_optional_and_checked() -> None:
    assert validate("transfer_leader", ["zraft"], LIMITS) == ["zraft", None, None]
    assert validate("transfer_leader", ["zraft", None, 10], LIMITS) == ["zraft", None, 10]
    assert refused("transfer_leader", ["zraft", "not-a-peer"]).message.startswith(
        "transfer_leader: to must be a peer id")
    assert refused("transfer_leader", ["zraft", PEER_ID, 0]).code == BAD_REQUEST
