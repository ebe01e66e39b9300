"""The client's side of frame authentication: a reply rewritten on the way (or sent back
unsealed) fails that connection's requests with a clear reason, never "ok"."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable

import pytest

from zraft.client.connection import Connection
from zraft.testing.authed_socket import accepted
from zraft.transport.codec import pack, unpack
from zraft.transport.framing import HEADER
from zraft.transport.handshake import server_handshake

COOKIE = b"cookie"


def _node(reply: Callable[[bytes], bytes]) -> tuple[str, socket.socket]:
    """A fake node: handshake, read one request, answer "ok" through ``reply`` (which gets
    the sealed reply frame and returns what goes on the wire)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)

    def serve() -> None:
        sock, _ = lsock.accept()
        with sock:
            peer = accepted(sock, server_handshake(sock, COOKIE, "node", 5.0))
            sock.settimeout(10)
            bodies: list[bytes] = []
            while not bodies:
                bodies = peer.feed(sock.recv(65536))
            _kind, req_id, _op, _args = unpack(bodies[0])
            body = pack([3, req_id, "ok", "fine"])
            sock.sendall(reply(peer.auth.seal(HEADER.pack(len(body)) + body)))
            sock.recv(1)  # until the client closes

    threading.Thread(target=serve, daemon=True).start()
    host, port = lsock.getsockname()
    return f"{host}:{port}", lsock


@pytest.mark.parametrize("how", ["rewritten", "unsealed"])
def test_a_tampered_reply_fails_the_request_with_the_reason(how: str) -> None:
    def tamper(sealed: bytes) -> bytes:
        if how == "unsealed":  # what an injector without the session key sends
            body = pack([3, 1, "ok", "forged"])
            return HEADER.pack(len(body)) + body
        return sealed.replace(b"fine", b"fina")

    address, lsock = _node(tamper)
    got: queue.Queue[tuple[str, object]] = queue.Queue()
    conn = Connection(address, COOKIE, "c", on_push=lambda _p: None)
    try:
        conn.request("stat", [], lambda status, payload: got.put((status, payload)))
        status, payload = got.get(timeout=10)
        assert status == "noproc"
        assert "failed authentication" in str(payload)
    finally:
        conn.close()
        lsock.close()
