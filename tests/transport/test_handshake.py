"""Cookie handshake: success, wrong or missing cookie, replay, version, timeout."""

from __future__ import annotations

import logging
import socket
import threading
import time

import msgpack
import pytest

from zraft.transport import handshake
from zraft.transport.errors import HandshakeError
from zraft.transport.framing import HEADER
from zraft.transport.handshake import client_handshake, cookie_bytes, server_handshake

COOKIE = b"secret-cookie"

V = handshake.PROTOCOL_VERSION


class RecordingSocket:
    """Passes calls through to a socket and records what is sent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))
        self.sock.sendall(data)

    def __getattr__(self, name: str):
        return getattr(self.sock, name)


def run_server(sock, cookie=COOKIE, server_id="node-s", timeout=2.0):
    box: dict = {}

    def target():
        try:
            box["result"] = server_handshake(sock, cookie, server_id, timeout)
        except HandshakeError as exc:
            box["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    return t, box


def test_both_sides_authenticate_and_share_a_session_key():
    s, c = socket.socketpair()
    with s, c:
        t, box = run_server(s)
        mine = client_handshake(c, COOKIE, "node-c", 2.0, expect_server_id="node-s")
        t.join(5)
        theirs = box["result"]
        assert mine.peer_id == "node-s" and theirs.peer_id == "node-c"
        assert mine.version == theirs.version == handshake.PROTOCOL_VERSION
        assert mine.session_key == theirs.session_key
        # the connection still carries data afterwards, nothing was over-read
        c.sendall(b"after")
        assert s.recv(5) == b"after"


def test_wrong_cookie_refused_and_logged_on_both_sides(caplog):
    caplog.set_level(logging.WARNING, logger="zraft.transport.handshake")
    s, c = socket.socketpair()
    with s, c:
        t, box = run_server(s)
        with pytest.raises(HandshakeError, match="refused"):
            client_handshake(c, b"wrong", "node-c", 2.0)
        t.join(5)
        assert "cookie" in str(box["error"])
    messages = [r.getMessage() for r in caplog.records]
    assert any("refused connection from" in m for m in messages)
    assert any("handshake with" in m and "refused" in m for m in messages)


def test_server_with_wrong_cookie_is_detected_by_the_client():
    # a fake server that knows the protocol but not the cookie: the client must not trust it
    s, c = socket.socketpair()
    with s, c:
        box: dict = {}

        def fake_server():
            deadline = time.monotonic() + 2
            handshake._send(s, ["zraft-hello", V, "evil", b"n" * 32], deadline)
            box["auth"] = handshake._recv(s, deadline)
            handshake._send(s, ["zraft-ok", b"m" * 32], deadline)

        t = threading.Thread(target=fake_server)
        t.start()
        with pytest.raises(HandshakeError, match="does not know the cookie"):
            client_handshake(c, COOKIE, "node-c", 2.0)
        t.join(5)


def test_missing_cookie_client_that_skips_the_handshake_is_refused():
    s, c = socket.socketpair()
    with s, c:
        t, box = run_server(s)
        c.recv(4096)  # the hello
        body = msgpack.packb([1, 1, 3, "a", "b", 0, 0, False])
        c.sendall(HEADER.pack(len(body)) + body)  # straight to a Raft frame
        t.join(5)
        assert isinstance(box["error"], HandshakeError)


def test_empty_cookie_is_not_a_cookie():
    with pytest.raises(ValueError):
        cookie_bytes("")
    assert cookie_bytes("abc") == b"abc"


def test_replayed_handshake_fails():
    s, c = socket.socketpair()
    with s, c:
        t, _ = run_server(s)
        recorder = RecordingSocket(c)
        client_handshake(recorder, COOKIE, "node-c", 2.0)  # type: ignore[arg-type]
        t.join(5)
    (recorded_auth,) = recorder.sent
    s, c = socket.socketpair()
    with s, c:
        t, box = run_server(s)
        c.recv(4096)  # a hello with a fresh nonce
        c.sendall(recorded_auth)  # the old, valid proof
        t.join(5)
        assert "cookie" in str(box["error"])
        c.settimeout(2)
        reply = c.recv(4096)
        assert b"zraft-denied" in reply


def test_version_mismatch_refused():
    s, c = socket.socketpair()
    with s, c:
        t, box = run_server(s)
        c.recv(4096)
        body = msgpack.packb(["zraft-auth", 99, "x", b"n" * 32, b"m" * 32, "node"])
        c.sendall(HEADER.pack(len(body)) + body)
        t.join(5)
        assert "version" in str(box["error"])


def test_client_refuses_unknown_server_version_and_wrong_node():
    for hello, match in (
        (["zraft-hello", V + 1, "node-s", b"n" * 32], "protocol"),
        (["zraft-hello", 1, "node-s", b"n" * 32], "wire protocol 1, we speak 2"),  # before MACs
        (["zraft-hello", V, "node-x", b"n" * 32], "expected node"),
    ):
        s, c = socket.socketpair()
        with s, c:
            body = msgpack.packb(hello)
            s.sendall(HEADER.pack(len(body)) + body)
            with pytest.raises(HandshakeError, match=match):
                client_handshake(c, COOKIE, "node-c", 2.0, expect_server_id="node-s")


def test_silent_client_times_out():
    s, c = socket.socketpair()
    with s, c:
        start = time.monotonic()
        t, box = run_server(s, timeout=0.3)
        t.join(5)
        assert "timed out" in str(box["error"])
        assert time.monotonic() - start < 2


@pytest.mark.parametrize(
    "garbage",
    [b"\xff\xff\xff\xff", b"\x00\x00\x00\x03abc", b"GET / HTTP/1.1\r\n\r\n", b"\x00\x00\x00\x00"],
)
def test_garbage_refused(garbage):
    s, c = socket.socketpair()
    with s, c:
        t, box = run_server(s)
        c.recv(4096)
        c.sendall(garbage)
        c.shutdown(socket.SHUT_WR)
        t.join(5)
        assert isinstance(box["error"], HandshakeError)


def test_unknown_role_refused():
    s, c = socket.socketpair()
    with s, c:
        t, box = run_server(s)
        deadline = time.monotonic() + 2
        hello = handshake._recv(c, deadline)
        transcript = handshake._transcript(V, hello[2], "x", "admin", hello[3], b"c" * 32)
        mac = handshake._mac(COOKIE, b"zraft-client", transcript)
        handshake._send(c, ["zraft-auth", V, "x", b"c" * 32, mac, "admin"], deadline)
        t.join(5)
        assert "role" in str(box["error"])
    with pytest.raises(ValueError):
        client_handshake(c, COOKIE, "x", 1, role="admin")


def test_role_is_authenticated():
    # a proof made for role "client" does not pass as role "node"
    s, c = socket.socketpair()
    with s, c:
        t, box = run_server(s)
        deadline = time.monotonic() + 2
        hello = handshake._recv(c, deadline)
        transcript = handshake._transcript(V, hello[2], "x", "client", hello[3], b"c" * 32)
        mac = handshake._mac(COOKIE, b"zraft-client", transcript)
        handshake._send(c, ["zraft-auth", V, "x", b"c" * 32, mac, "node"], deadline)
        t.join(5)
        assert "cookie" in str(box["error"])
