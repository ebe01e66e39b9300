"""The per-frame authenticator: what an on-path relay can do to frames is detected."""

from __future__ import annotations

import os

import pytest

from zraft.transport.errors import DecodeError
from zraft.transport.frame_auth import (
    RECORD_BYTES,
    TRAILER_SIZE,
    FrameAuth,
    FrameAuthError,
    decoder_limit,
    for_connection,
)
from zraft.transport.framing import HEADER, FrameDecoder, frame


def _pair(key: bytes | None = None) -> tuple[FrameAuth, FrameAuth]:
    key = key or os.urandom(32)
    return FrameAuth.for_connection(key, True), FrameAuth.for_connection(key, False)


def _wire(sealed: bytes) -> bytes:
    """A sealed frame's body as the receiving decoder hands it over."""
    (body,) = FrameDecoder().feed(sealed)
    return body


@pytest.mark.parametrize("size", [1, 100, 1023, 1024, 5000])  # both MACs (small/large)
def test_round_trip_both_directions(size: int) -> None:
    client, server = _pair()
    for i in range(3):
        body = bytes([i]) * size
        sealed = client.seal(frame(body))
        assert len(sealed) == 2 * HEADER.size + size + TRAILER_SIZE  # the frame, inside
        assert bytes(server.open(_wire(sealed))) == body
        assert bytes(client.open(_wire(server.seal(frame(body))))) == body
    assert client.sent == server.received == 3


@pytest.mark.parametrize("size", [10, 2000])
def test_every_altered_byte_is_detected(size: int) -> None:
    client, server = _pair()
    wire = _wire(client.seal(frame(b"x" * size)))
    for pos in [*range(0, len(wire), max(1, len(wire) // 64)), len(wire) - 1]:
        bad = bytearray(wire)
        bad[pos] ^= 0x01
        with pytest.raises(FrameAuthError):
            server.open(bytes(bad))
    assert bytes(server.open(wire)) == b"x" * size


def test_injected_frame_is_detected() -> None:
    _, server = _pair()
    forged = frame(b"\x94\x02\x01\xa7propose\x90" + os.urandom(TRAILER_SIZE))
    with pytest.raises(FrameAuthError, match="bad MAC"):
        server.open(_wire(forged))


def test_replayed_frame_is_detected() -> None:
    client, server = _pair()
    wire = _wire(client.seal(frame(b"write")))
    server.open(wire)
    with pytest.raises(FrameAuthError, match="replayed, dropped or reordered"):
        server.open(wire)


def test_reordered_and_dropped_frames_are_detected() -> None:
    client, server = _pair()
    first, second = (_wire(client.seal(frame(b))) for b in (b"one", b"two"))
    with pytest.raises(FrameAuthError, match="sequence number 1"):
        server.open(second)  # the first was dropped (or comes later)
    assert bytes(server.open(first)) == b"one"


def test_reflected_frame_is_detected() -> None:
    client, server = _pair()
    wire = _wire(client.seal(frame(b"to the server")))
    with pytest.raises(FrameAuthError, match="bad MAC"):
        client.open(wire)  # sent back to its sender: checked under the other key
    assert bytes(server.open(wire)) == b"to the server"


@pytest.mark.parametrize("cut", [1, 8, 16, TRAILER_SIZE, TRAILER_SIZE + 3])
def test_truncated_frame_is_detected(cut: int) -> None:
    client, server = _pair()
    wire = _wire(client.seal(frame(b"abc")))
    with pytest.raises(FrameAuthError):
        server.open(wire[:-cut])


def test_wrong_session_key_is_detected() -> None:
    client, _ = _pair()
    _, other = _pair()
    with pytest.raises(FrameAuthError, match="bad MAC"):
        other.open(_wire(client.seal(frame(b"abc"))))


def test_frame_from_another_connection_is_detected() -> None:
    """A frame copied from one connection into another (same cookie, other nonces)."""
    client_a, _ = _pair()
    _, server_b = _pair()
    with pytest.raises(FrameAuthError):
        server_b.open(_wire(client_a.seal(frame(b"abc"))))


def test_a_failure_does_not_advance_the_sequence() -> None:
    client, server = _pair()
    good = _wire(client.seal(frame(b"a")))
    with pytest.raises(FrameAuthError):
        server.open(good[:-1] + bytes([good[-1] ^ 1]))
    assert server.received == 0


def test_off_and_limits() -> None:
    assert for_connection(b"k" * 32, True, enabled=False) is None
    auth = for_connection(b"k" * 32, True)
    assert decoder_limit(100, None) == 100
    assert decoder_limit(100, auth) == 100 + 4 + TRAILER_SIZE  # a frame's header inside
    assert decoder_limit(0xFFFFFFFF, auth) == 0xFFFFFFFF
    with pytest.raises(ValueError):
        FrameAuth(b"same" * 8, b"same" * 8)


def test_a_batch_of_frames_in_one_string_is_sealed_frame_by_frame() -> None:
    """A node sends a batch of replies as one string: each frame gets its own MAC (sealing
    the string as one frame delivered a body with two msgpack values in it)."""
    client, server = _pair()
    bodies = [b"one", b"two" * 600, b"three"]
    sealed = client.seal_frames(b"".join(frame(b) for b in bodies))
    assert client.sent == 1  # one record, one MAC, for the batch
    assert server.open_many(FrameDecoder().feed(sealed)) == bodies
    with pytest.raises(DecodeError, match="whole frames"):  # authenticated, but cut
        server.open_many(FrameDecoder().feed(client.seal_frames(frame(b"a") + b"\0\0\0\5bc")))


def test_a_large_batch_is_sealed_in_records_of_at_most_64_kib() -> None:
    client, server = _pair()
    bodies = [bytes([i % 251]) * 1000 for i in range(300)] + [b"x" * 200_000, b"end"]
    sealed = client.seal_frames(b"".join(frame(b) for b in bodies))
    records = FrameDecoder(1 << 20).feed(sealed)
    assert len(records) == client.sent and 5 <= len(records) <= 10
    assert all(len(r) <= RECORD_BYTES + TRAILER_SIZE for r in records[:4])
    assert server.open_many(records) == bodies
    with pytest.raises(ValueError, match="not whole frames"):
        client.seal_frames(b"".join(frame(b) for b in bodies)[:-1])


def test_a_record_with_several_frames_is_refused_where_one_is_expected() -> None:
    client, server = _pair()
    with pytest.raises(DecodeError, match="holds 2 frames"):
        server.open(_wire(client.seal(frame(b"a") + frame(b"b"))))
