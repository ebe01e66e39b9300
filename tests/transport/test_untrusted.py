"""Hostile values never break the code that reports them: bounded repr, a nesting limit on
generic frames, and the handshake's refusal of nested fields (issue 11, section 1)."""

from __future__ import annotations

import os
import socket
import threading
import time

import msgpack
import pytest

from tests.transport.helpers import COOKIE, Inbox, wait_for
from zraft.saferepr import safe_repr
from zraft.testing.authed_socket import authed
from zraft.transport import codec
from zraft.transport.codec import MAX_NESTING, ClientReply, ClientRequest
from zraft.transport.errors import DecodeError, HandshakeError
from zraft.transport.framing import HEADER
from zraft.transport.handshake import NONCE_SIZE, _recv, client_handshake, server_handshake
from zraft.transport.tcp import TcpTransport, TransportConfig, connect, parse_addr

DEEP = b"\x91" * 1000 + b"\xc0"  # 1,000 nested one-element arrays around nil


def nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"


# -- safe_repr ------------------------------------------------------------------------------


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize("value", [
    msgpack.unpackb(DEEP),
    b"x" * (8 << 20),
    "y" * (1 << 20),
    10 ** 5000,  # str() refuses it (int max str digits)
    {i: [i] * 100 for i in range(10_000)},
    Hostile(),
    [Hostile(), {1: Hostile()}],
    ClientRequest(1, "op", msgpack.unpackb(DEEP)),
], ids=["deep", "bytes", "str", "int", "dict", "hostile", "hostile-inside", "frame"])
def test_safe_repr_is_short_and_never_raises(value):
    text = safe_repr(value)
    assert 0 < len(text) <= 80


def test_safe_repr_shows_small_values_as_repr_does():
    for value in (None, True, 3, -1.5, "abc", b"\x00\x01", [1, "a"], {"k": [1, 2]}):
        assert safe_repr(value) == repr(value)
    assert safe_repr("z" * 500, limit=30).endswith("...")


# -- codec ----------------------------------------------------------------------------------


def test_a_deeply_nested_frame_is_a_decode_error():
    """Was: the error message's repr() raised RecursionError, which killed the reader."""
    with pytest.raises(DecodeError):
        codec.decode(DEEP)


@pytest.mark.parametrize("kind_prefix", [
    b"\x94\x02\x01\xa2op",  # [2, 1, "op", args]     request
    b"\x94\x05\x01\xa2op",  # [5, 1, "op", args]     admin
    b"\x94\x03\x01\xa2ok",  # [3, 1, "ok", payload]  reply
    b"\x93\x04\xa2op",      # [4, "op", args]        snapshot control
    b"\x93\x06\xa2wt",      # [6, "wt", args]        push
])
def test_generic_frames_nest_at_most_max_nesting_levels(kind_prefix):
    codec.decode(kind_prefix + nested(MAX_NESTING))
    with pytest.raises(DecodeError, match="nests deeper"):
        codec.decode(kind_prefix + nested(MAX_NESTING + 1))
    with pytest.raises(DecodeError):
        codec.decode(kind_prefix + nested(1000))


def test_nesting_counts_maps_and_wide_values_pass():
    value: object = 1
    for i in range(MAX_NESTING):
        value = {"k": value} if i % 2 else [value, "side"]
    codec.decode(codec.encode(ClientReply(1, "ok", value)))
    with pytest.raises(DecodeError):
        codec.decode(codec.encode(ClientReply(1, "ok", [value])))
    wide = [[i, {"v": [i]}] for i in range(10_000)]
    assert codec.decode(codec.encode(ClientReply(2, "ok", wide))).payload == wide


# -- handshake ------------------------------------------------------------------------------


def _auth_frame(version: object = 1, client_id: object = "c", nonce: object = None,
                mac: object = b"m" * 32, role: object = "client") -> bytes:
    nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
    msg = ["zraft-auth", version, client_id, nonce, mac, role]
    body = msgpack.packb(msg, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def _with_deep(field: int) -> bytes:
    """An auth message whose ``field`` (1-5) is 1,000 nested arrays (as raw msgpack)."""
    parts = [msgpack.packb(v, use_bin_type=True)
             for v in ("zraft-auth", 1, "c", os.urandom(NONCE_SIZE), b"m" * 32, "client")]
    parts[field] = DEEP
    body = b"\x96" + b"".join(parts)
    return HEADER.pack(len(body)) + body


@pytest.mark.parametrize("field", [1, 2, 3, 4, 5])
def test_nested_handshake_fields_are_a_handshake_error(field):
    """Was: the version's repr() raised RecursionError in the handshake thread."""
    s, c = socket.socketpair()
    with s, c:
        c.settimeout(5)
        box: dict[str, BaseException] = {}

        def run() -> None:
            try:
                server_handshake(s, COOKIE, "node-s", 5.0)
            except BaseException as exc:  # what escapes, exactly
                box["exc"] = exc

        t = threading.Thread(target=run)
        t.start()
        _recv(c, time.monotonic() + 5)  # hello
        c.sendall(_with_deep(field))
        t.join(5)
        assert isinstance(box.get("exc"), HandshakeError)


# -- a node's transport ---------------------------------------------------------------------


def _echo(conn, frames):
    for f in frames:
        conn.send(ClientReply(f.req_id, "ok", f.args))


FAST = TransportConfig(reconnect_initial=0.01, reconnect_max=0.1, join_timeout=2.0)


@pytest.mark.parametrize("client_reactor", [True, False])
def test_a_nested_frame_closes_its_connection_only(client_reactor):
    cfg = TransportConfig(client_reactor=client_reactor, join_timeout=2.0)
    server = TcpTransport(COOKIE, _echo, config=cfg)
    server.start()
    replies = Inbox()
    good = connect(server.address, COOKIE, "good", replies, cfg)
    bad = socket.create_connection(parse_addr(server.address), timeout=5)
    try:
        sealed = authed(bad, client_handshake(bad, COOKIE, "bad", 5.0))
        sealed.sendall(HEADER.pack(len(DEEP)) + DEEP)  # authenticated: reaches the decoder
        assert bad.recv(100) == b""  # closed by the node
        wait_for(lambda: server.status()["malformed"] == 1)
        good.send(ClientRequest(7, "echo", "still here"))
        assert replies.wait_count(1) == [ClientReply(7, "ok", "still here")]
        if client_reactor:
            assert server._reactor is not None and server._reactor._thread.is_alive()
        wait_for(lambda: len(server.inbound_connections()) == 1)  # the bad one is gone
    finally:
        bad.close()
        good.close()
        server.close()


def test_a_nested_handshake_leaves_the_server_serving():
    server = TcpTransport(COOKIE, _echo, config=FAST)
    server.start()
    try:
        for field in (1, 2, 5):
            with socket.create_connection(parse_addr(server.address), timeout=5) as sock:
                _recv(sock, time.monotonic() + 5)
                sock.sendall(_with_deep(field))
                while sock.recv(4096):  # refused (maybe with a "denied" frame), then closed
                    pass
        wait_for(lambda: server.status()["auth_failures"] == 3)
        wait_for(lambda: not server._handshaking)
        replies = Inbox()
        good = connect(server.address, COOKIE, "good", replies, FAST)
        good.send(ClientRequest(1, "echo", 1))
        assert replies.wait_count(1) == [ClientReply(1, "ok", 1)]
        good.close()
    finally:
        server.close()
