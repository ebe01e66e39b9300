"""Command encoding/decoding and the msgpack codec used by the state machine."""

from __future__ import annotations

import copy
import pickle

import msgpack
import pytest

from zraft.fsm import NOT_FOUND, BadCommand
from zraft.fsm import commands as cmd
from zraft.fsm.codec import hashable, normalize, packb, unpackb


def test_round_trip_of_every_command() -> None:
    assert cmd.decode_command(cmd.encode_write(["k", b"v"])) == cmd.Write(["k", b"v"])
    assert cmd.decode_command(cmd.encode_connect("s", 10)) == cmd.Connect("s", 10)
    assert cmd.decode_command(cmd.encode_ping("s", 0)) == cmd.Ping("s", 0)
    assert cmd.decode_command(
        cmd.encode_session_write("s", 3, 2, ["k", 1], temporary=True)
    ) == cmd.SessionWrite("s", 3, 2, True, ["k", 1])
    assert cmd.decode_command(cmd.encode_close("s")) == cmd.Close("s")
    assert cmd.decode_command(cmd.encode_expire_check("s")) == cmd.ExpireCheck("s")


def test_wire_layout_matches_the_architecture_table() -> None:
    assert msgpack.unpackb(cmd.encode_session_write("s", 3, 2, "p", False)) == [
        4, "s", 3, 2, False, "p",
    ]  # fmt: skip
    assert msgpack.unpackb(cmd.encode_connect("s", 10)) == [2, "s", 10]


def test_not_found_is_ext_type_1_and_round_trips_to_the_same_object() -> None:
    raw = packb(["cas", "k", NOT_FOUND, 1])
    assert msgpack.unpackb(raw)[2] == msgpack.ExtType(1, b"")
    assert unpackb(raw)[2] is NOT_FOUND
    assert cmd.decode_command(cmd.encode_write(["cas", "k", NOT_FOUND, 1])).payload[2] is NOT_FOUND


def test_not_found_identity_survives_copy_and_pickle() -> None:
    assert copy.deepcopy(NOT_FOUND) is NOT_FOUND
    assert pickle.loads(pickle.dumps(NOT_FOUND)) is NOT_FOUND
    assert NOT_FOUND != None  # noqa: E711
    assert repr(NOT_FOUND) == "NOT_FOUND"


def test_unknown_extension_types_are_refused() -> None:
    with pytest.raises(ValueError):
        unpackb(msgpack.packb(msgpack.ExtType(5, b"x")))
    with pytest.raises(BadCommand):
        cmd.decode_command(msgpack.packb([1, msgpack.ExtType(1, b"payload")]))


def test_unencodable_values_raise_type_error() -> None:
    with pytest.raises(TypeError):
        packb(object())


def test_hashable_and_normalize() -> None:
    assert hashable([1, [2, "a"]]) == (1, (2, "a"))
    with pytest.raises(TypeError):
        hashable({"a": 1})
    with pytest.raises(TypeError):
        hashable([1, {"a": 1}])
    assert normalize(("cas_failed", (1, 2))) == ["cas_failed", [1, 2]]


@pytest.mark.parametrize("data", [b"\x91\x01\x02", bytearray(b"\x92\x05\xa1s"), memoryview(b"")])
def test_decode_accepts_bytes_likes_but_validates(data: object) -> None:
    if bytes(data) == b"\x92\x05\xa1s":  # type: ignore[call-overload]
        assert cmd.decode_command(data) == cmd.Close("s")
    else:
        with pytest.raises(BadCommand):
            cmd.decode_command(data)


def test_normalize_refuses_what_msgpack_cannot_carry() -> None:
    assert normalize("ok") == "ok" and normalize(NOT_FOUND) is NOT_FOUND
    assert normalize(b"x") == b"x" and normalize(None) is None
    with pytest.raises(TypeError):
        normalize([object()])
    with pytest.raises(TypeError):
        normalize(object())
