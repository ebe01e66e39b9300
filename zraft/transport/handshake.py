"""Cluster-cookie authentication for every new connection (Erlang-cookie style).

Exchange, each message one length-prefixed msgpack array (at most 4 KiB):

1. server -> client  ``["zraft-hello", version, server_id, server_nonce]``
2. client -> server  ``["zraft-auth", version, client_id, client_nonce, client_mac, role]``
3. server -> client  ``["zraft-ok", server_mac]``  or  ``["zraft-denied", reason]``

After ``zraft-ok`` every frame in both directions is authenticated under keys derived from
``session_key`` (protocol version 2, see ``frame_auth.py``).

``client_mac = HMAC-SHA256(cookie, "zraft-client" || T)`` and
``server_mac = HMAC-SHA256(cookie, "zraft-server" || T)`` where ``T`` is the msgpack transcript
``[version, server_id, client_id, role, server_nonce, client_nonce]``. ``role`` is ``node``
(a peer node, whose id is its "host:port"), ``client`` or ``snapshot``. The labels stop a proof from
being reflected back; both 32-byte nonces are fresh per connection, so a recorded exchange is
useless on a new one (replay fails). Neither side learns anything about the cookie from a
failed attempt. The server checks the client's version; the client checks the server's.

Rules: every read and write of the handshake runs against one deadline (``timeout``); any
failure, whatever raised it, becomes ``HandshakeError`` and the caller closes the socket.
Handshake messages are flat arrays: a nested value is refused before any field is looked
at, and messages show received values through ``safe_repr`` only. Both sides log refusals.
Reads take exactly the bytes of each message, so nothing sent after the handshake is lost.
The client's steps are pure functions (``client_answer``, ``client_finish``, with
``encode_message`` / ``decode_message``) so the blocking and the asyncio clients
(``zraft.aio``) run the same checks over their own I/O.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import socket
import time
from typing import Any, Final, NamedTuple

import msgpack

from zraft.saferepr import safe_repr
from zraft.transport.codec import check_nesting
from zraft.transport.errors import DecodeError, HandshakeError
from zraft.transport.framing import HEADER, HEADER_SIZE

# 2: every frame after the handshake carries a sequence number and a MAC (frame_auth.py);
# a version-1 end and a version-2 end refuse each other here, before any frame.
PROTOCOL_VERSION: Final = 2
NONCE_SIZE: Final = 32
MAX_HANDSHAKE_FRAME: Final = 4096
MAX_ID_LENGTH: Final = 512
DEFAULT_HANDSHAKE_TIMEOUT: Final = 5.0

_HELLO, _AUTH, _OK, _DENIED = "zraft-hello", "zraft-auth", "zraft-ok", "zraft-denied"

log = logging.getLogger("zraft.transport.handshake")


class Authenticated(NamedTuple):
    """Result of a successful handshake.

    ``session_key`` is an HMAC key only these two ends can derive (cookie + both nonces); it
    authenticates later data on the connection, e.g. a snapshot manifest."""

    peer_id: str
    version: int
    session_key: bytes
    role: str = "client"
    # False for a client that proved the client cookie (``client_cookie``), not the cluster
    # cookie: it may read and write but not run operator ops (zraft.node.requests)
    privileged: bool = True


def cookie_bytes(cookie: str | bytes) -> bytes:
    """Normalise a cookie; an empty cookie is refused (it would authenticate anyone)."""
    raw = cookie.encode() if isinstance(cookie, str) else bytes(cookie)
    if not raw:
        raise ValueError("the cluster cookie must not be empty")
    return raw


ROLES: Final = frozenset({"node", "client", "snapshot"})


def _transcript(
    version: int, server_id: str, client_id: str, role: str, sn: bytes, cn: bytes
) -> bytes:
    return msgpack.packb([version, server_id, client_id, role, sn, cn], use_bin_type=True)


def _mac(cookie: bytes, label: bytes, transcript: bytes) -> bytes:
    return hmac.new(cookie, label + transcript, hashlib.sha256).digest()


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise HandshakeError("handshake timed out")
    return left


def recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    """Read exactly ``n`` bytes before ``deadline`` (monotonic)."""
    chunks: list[bytes] = []
    while n:
        sock.settimeout(_remaining(deadline))
        try:
            chunk = sock.recv(n)
        except TimeoutError:
            raise HandshakeError("handshake timed out") from None
        if not chunk:
            raise HandshakeError("connection closed during handshake")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def encode_message(obj: list[Any]) -> bytes:
    """One handshake message as it goes on the wire: the length header, then msgpack."""
    body = msgpack.packb(obj, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def check_message_length(length: int) -> int:
    """The length of a handshake message's body, if it is allowed."""
    if not 0 < length <= MAX_HANDSHAKE_FRAME:
        raise HandshakeError(f"handshake frame length {length} is not allowed")
    return length


def decode_message(body: bytes) -> list[Any]:
    """A handshake message's body: a flat msgpack array whose first element is a tag."""
    try:
        obj = msgpack.unpackb(body, raw=False)
    except Exception as exc:
        raise HandshakeError(f"handshake frame is not msgpack: {type(exc).__name__}") from None
    if type(obj) is not list or not obj or type(obj[0]) is not str:
        raise HandshakeError("handshake frame is not a tagged array")
    try:
        check_nesting(obj, "handshake frame", limit=1)
    except DecodeError as exc:
        raise HandshakeError(str(exc)) from None
    return obj


def _send(sock: socket.socket, obj: Any, deadline: float) -> None:
    sock.settimeout(_remaining(deadline))
    try:
        sock.sendall(encode_message(obj))
    except TimeoutError:
        raise HandshakeError("handshake timed out") from None


def _recv(sock: socket.socket, deadline: float) -> list[Any]:
    (length,) = HEADER.unpack(recv_exact(sock, HEADER_SIZE, deadline))
    return decode_message(recv_exact(sock, check_message_length(length), deadline))


def _check_id(value: Any) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_ID_LENGTH:
        raise HandshakeError("bad node id in handshake")
    return value


def _check_nonce(value: Any) -> bytes:
    if type(value) is not bytes or len(value) != NONCE_SIZE:
        raise HandshakeError("bad nonce in handshake")
    return value


def server_handshake(
    sock: socket.socket,
    cookie: bytes,
    server_id: str,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    client_cookie: bytes | None = None,
) -> Authenticated:
    """Run the server side on a freshly accepted socket. Leaves the socket blocking (timeout
    None) on success; raises ``HandshakeError`` (after logging) on failure.

    ``client_cookie`` (the node's ``client_cookie_file``): a second secret that admits a
    connection as an unprivileged ``client`` only; peer nodes, snapshot streams and
    operators prove the cluster ``cookie``."""
    deadline = time.monotonic() + timeout
    peer = _peername(sock)
    try:
        server_nonce = os.urandom(NONCE_SIZE)
        _send(sock, [_HELLO, PROTOCOL_VERSION, server_id, server_nonce], deadline)
        msg = _recv(sock, deadline)
        if msg[0] != _AUTH or len(msg) != 6:
            raise HandshakeError(f"expected {_AUTH}, got {safe_repr(msg[0], 40)}")
        _, version, client_id, client_nonce, client_mac, role = msg
        if type(version) is not int or version != PROTOCOL_VERSION:
            _deny(sock, "version", deadline)
            raise HandshakeError(_version_mismatch("client", version))
        client_id = _check_id(client_id)
        client_nonce = _check_nonce(client_nonce)
        if type(role) is not str or role not in ROLES:
            raise HandshakeError(f"unknown role {safe_repr(role, 20)}")
        transcript = _transcript(version, server_id, client_id, role, server_nonce, client_nonce)
        used = _proven_cookie(client_mac, transcript, cookie,
                              client_cookie if role == "client" else None)
        if used is None:
            _deny(sock, "cookie", deadline)
            raise HandshakeError(f"bad cookie proof from {safe_repr(client_id)}")
        _send(sock, [_OK, _mac(used, b"zraft-server", transcript)], deadline)
    except HandshakeError as exc:
        log.warning("refused connection from %s: %s", peer, exc)
        raise
    except OSError as exc:
        log.warning("handshake with %s failed: %s", peer, exc)
        raise HandshakeError(f"socket error: {exc}") from exc
    except Exception as exc:  # a bug or a value nothing above expected: still one refusal
        log.warning("handshake with %s failed: %s", peer, type(exc).__name__)
        raise HandshakeError(f"handshake failed: {type(exc).__name__}") from None
    sock.settimeout(None)
    return Authenticated(client_id, version, _mac(used, b"zraft-session", transcript), role,
                         privileged=used is cookie)


def _proven_cookie(client_mac: Any, transcript: bytes, cookie: bytes,
                   client_cookie: bytes | None) -> bytes | None:
    """The cookie ``client_mac`` proves (the cluster cookie first), or None; each proof is
    compared in constant time."""
    if type(client_mac) is not bytes:
        return None
    if hmac.compare_digest(client_mac, _mac(cookie, b"zraft-client", transcript)):
        return cookie
    if client_cookie is not None and hmac.compare_digest(
            client_mac, _mac(client_cookie, b"zraft-client", transcript)):
        return client_cookie
    return None


class ClientProof(NamedTuple):
    """What the client side keeps between its answer and the server's reply."""

    server_id: str
    version: int
    role: str
    transcript: bytes


def client_answer(
    hello: list[Any],
    cookie: bytes,
    client_id: str,
    role: str = "client",
    expect_server_id: str | None = None,
) -> tuple[list[Any], ClientProof]:
    """The client's step 2, with no I/O (shared by the blocking and asyncio clients): check
    the server's hello, return the auth message to send and what ``client_finish`` needs."""
    if hello[0] == _DENIED:  # e.g. a TLS node refusing a plaintext client (tls.py)
        if len(hello) > 1 and type(hello[1]) is str:  # bounded, printable characters only
            reason = "".join(c if c.isprintable() else "?" for c in hello[1][:160])
        else:
            reason = safe_repr(hello[1:], 60)
        raise HandshakeError(f"server refused us: {reason}")
    if hello[0] != _HELLO or len(hello) != 4:
        raise HandshakeError(f"expected {_HELLO}, got {safe_repr(hello[0], 40)}")
    _, version, server_id, server_nonce = hello
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise HandshakeError(_version_mismatch("server", version))
    server_id = _check_id(server_id)
    if expect_server_id is not None and server_id != expect_server_id:
        raise HandshakeError(
            f"expected node {expect_server_id!r}, found {safe_repr(server_id)}")
    server_nonce = _check_nonce(server_nonce)
    client_nonce = os.urandom(NONCE_SIZE)
    transcript = _transcript(version, server_id, client_id, role, server_nonce, client_nonce)
    client_mac = _mac(cookie, b"zraft-client", transcript)
    auth = [_AUTH, version, client_id, client_nonce, client_mac, role]
    return auth, ClientProof(server_id, version, role, transcript)


def client_finish(reply: list[Any], cookie: bytes, proof: ClientProof) -> Authenticated:
    """The client's step 3, with no I/O: check the server's proof of the cookie."""
    if reply[0] == _DENIED:
        raise HandshakeError(f"server refused us: {safe_repr(reply[1:], 60)}")
    if reply[0] != _OK or len(reply) != 2:
        raise HandshakeError(f"expected {_OK}, got {safe_repr(reply[0], 40)}")
    expected = _mac(cookie, b"zraft-server", proof.transcript)
    if type(reply[1]) is not bytes or not hmac.compare_digest(reply[1], expected):
        raise HandshakeError(f"server {safe_repr(proof.server_id)} does not know the cookie")
    return Authenticated(proof.server_id, proof.version,
                         _mac(cookie, b"zraft-session", proof.transcript), proof.role)


def client_failure(exc: BaseException, peer: str) -> HandshakeError:
    """Any failure of a client handshake as one logged ``HandshakeError``."""
    if isinstance(exc, HandshakeError):
        log.warning("handshake with %s refused: %s", peer, exc)
        return exc
    if isinstance(exc, OSError):
        log.warning("handshake with %s failed: %s", peer, exc)
        return HandshakeError(f"socket error: {exc}")
    # a bug or a value nothing above expected: still one refusal
    log.warning("handshake with %s failed: %s", peer, type(exc).__name__)
    return HandshakeError(f"handshake failed: {type(exc).__name__}")


def client_handshake(
    sock: socket.socket,
    cookie: bytes,
    client_id: str,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    expect_server_id: str | None = None,
    role: str = "client",
) -> Authenticated:
    """Run the client side on a freshly connected socket. ``expect_server_id``, if given, must
    match the id the server announces. ``role`` tells the server what we are. Leaves the
    socket blocking on success."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    deadline = time.monotonic() + timeout
    peer = _peername(sock)
    try:
        auth, proof = client_answer(_recv(sock, deadline), cookie, client_id, role,
                                    expect_server_id)
        _send(sock, auth, deadline)
        result = client_finish(_recv(sock, deadline), cookie, proof)
    except Exception as exc:
        failure = client_failure(exc, peer)
        if failure is exc:
            raise
        raise failure from (exc if isinstance(exc, OSError) else None)
    sock.settimeout(None)
    return result


def _version_mismatch(who: str, version: Any) -> str:
    return (f"the {who} speaks wire protocol {safe_repr(version, 20)}, we speak "
            f"{PROTOCOL_VERSION} (2 authenticates every frame): run the same zraft version "
            "on both ends")


def _deny(sock: socket.socket, reason: str, deadline: float) -> None:
    with contextlib.suppress(OSError, HandshakeError):
        _send(sock, [_DENIED, reason], deadline)


def _peername(sock: socket.socket) -> str:
    try:
        name = sock.getpeername()
    except OSError:
        return "?"
    if isinstance(name, tuple) and len(name) >= 2:
        return f"{name[0]}:{name[1]}"
    return safe_repr(name) if name else "local socket"
