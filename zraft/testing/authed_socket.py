"""A raw socket after the cookie handshake that speaks authenticated frames (protocol 2).

For tests and fuzzers that write hand-made bytes to a node: a hostile client holding the
cookie can MAC anything, so what they send must be sealed to reach the node's decoder at all.
``sendall`` seals every complete frame in what it is given and passes other bytes (a bad
length, a partial frame) through untouched; ``frames`` reads and authenticates replies.
"""

from __future__ import annotations

import socket
from typing import Any

from zraft.transport.frame_auth import FrameAuth, decoder_limit, seal_stream
from zraft.transport.framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder
from zraft.transport.handshake import Authenticated


class AuthedSocket:
    """``sock`` with its connection's frame authenticator (the dialing end's)."""

    def __init__(self, sock: socket.socket, auth: Authenticated, initiator: bool = True) -> None:
        self.sock = sock
        self.auth = FrameAuth.for_connection(auth.session_key, initiator)
        self._decoder = FrameDecoder(decoder_limit(DEFAULT_MAX_FRAME_SIZE, self.auth))

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(seal_stream(self.auth, data))

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are (no MAC): what an intruder without the session key sends."""
        self.sock.sendall(data)

    def feed(self, data: bytes) -> list[bytes]:
        """The authenticated bodies of the frames ``data`` (read from the socket) completes."""
        return self.auth.open_many(self._decoder.feed(data))

    def __getattr__(self, name: str) -> Any:  # recv, settimeout, close, shutdown, ...
        return getattr(self.sock, name)

    def __enter__(self) -> AuthedSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def authed(sock: socket.socket, auth: Authenticated) -> AuthedSocket:
    """Wrap a socket on which ``client_handshake`` returned ``auth``."""
    return AuthedSocket(sock, auth, initiator=True)


def accepted(sock: socket.socket, auth: Authenticated) -> AuthedSocket:
    """Wrap a socket on which ``server_handshake`` returned ``auth`` (a fake node's)."""
    return AuthedSocket(sock, auth, initiator=False)


__all__ = ["AuthedSocket", "accepted", "authed"]
