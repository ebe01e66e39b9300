"""Under TLS no frame carries the frame MAC's trailer (TLS records are authenticated and
ordered already); in plaintext every frame after the handshake does. Checked on the wire
(a raw client of a node), on node-to-node links and on both client libraries."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import pytest

from tests.transport.helpers import COOKIE, Inbox, wait_for
from tests.transport.test_tls import FAST, Echo, client_tls, node_tls
from zraft.aio.connection import ConnectionPool as AioPool
from zraft.client.connection import ConnectionPool
from zraft.cluster.certs import make_cluster_certs
from zraft.core.messages import VoteRequest
from zraft.transport.codec import unpack
from zraft.transport.frame_auth import TRAILER_SIZE, FrameAuth
from zraft.transport.framing import HEADER
from zraft.transport.handshake import client_handshake, cookie_bytes
from zraft.transport.tcp import TcpTransport, parse_addr
from zraft.transport.tls import connect_tls

REQUEST = [2, 1, "echo", ["w"]]  # [kind, req_id, op, args]
REPLY = [3, 1, "ok", ["w"]]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    made = make_cluster_certs(tmp_path_factory.mktemp("tls-no-mac") / "c", ["127.0.0.1"])
    return {"ca": made.ca, "node": made.node.cert, "node_key": made.node.key,
            "client": made.client.cert, "client_key": made.client.key}


def _node(certs: dict[str, Path] | None) -> TcpTransport:
    t = TcpTransport(COOKIE, Echo(), config=FAST,
                     tls=node_tls(certs) if certs is not None else None)
    t.start()
    return t


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, "the node closed the connection"
        out += chunk
    return out


def _exchange(address: str, certs: dict[str, Path] | None) -> tuple[bytes, FrameAuth]:
    """Handshake as a raw client, send REQUEST (sealed in plaintext, bare under TLS) and
    return the body of the first frame the node writes back."""
    import msgpack

    host, port = parse_addr(address)
    sock = socket.create_connection((host, port), timeout=5)
    try:
        if certs is not None:
            sock = connect_tls(client_tls(certs), sock, host, 5)
        auth = client_handshake(sock, cookie_bytes(COOKIE), "raw", 5)
        fa = FrameAuth.for_connection(auth.session_key, initiator=True)
        body = msgpack.packb(REQUEST, use_bin_type=True)
        frame = HEADER.pack(len(body)) + body
        sock.sendall(frame if certs is not None else fa.seal(frame))
        (length,) = HEADER.unpack(_recv_exact(sock, HEADER.size))
        return _recv_exact(sock, length), fa
    finally:
        sock.close()


def test_a_tls_connection_carries_no_mac_trailer_and_a_plaintext_one_does(certs):
    plain, tls = _node(None), _node(certs)
    try:
        body, _ = _exchange(tls.address, certs)
        assert unpack(body) == REPLY  # the bare frame: nothing after the msgpack body

        record, fa = _exchange(plain.address, None)
        inner = len(record) - TRAILER_SIZE  # [frames][seq 8][tag 16]
        assert unpack(record[HEADER.size:inner]) == REPLY
        assert fa.open(record) == record[HEADER.size:inner]  # MAC of the node's direction
        assert plain.status()["closed_bad_mac"] == 0 and tls.status()["closed_bad_mac"] == 0
    finally:
        plain.close()
        tls.close()


def test_tls_node_links_and_clients_run_without_the_mac(certs):
    inbox = Inbox()
    a = TcpTransport(COOKIE, Inbox(), config=FAST, tls=node_tls(certs))
    b = TcpTransport(COOKIE, inbox, config=FAST, tls=node_tls(certs))
    a.start()
    b.start()
    try:
        assert a.send(b.address, VoteRequest(3, f"p@{a.address}", f"p@{b.address}", 0, 0))
        assert [f.term for f in inbox.wait_count(1)] == [3]
        link = a._links[b.address]
        assert link.conn is not None and link.conn.frame_auth is None  # the dialing end
        wait_for(lambda: any(c.frame_auth is None for c in b._inbound))  # the accepting end
        assert all(c.frame_auth is None for c in b._inbound)

        for tls in (client_tls(certs), None):
            pool = ConnectionPool(COOKIE, connect_timeout=5, tls=tls)
            target = _node(certs if tls is not None else None)  # an echoing node
            try:
                done = threading.Event()
                got: list[object] = []
                pool.request(f"p@{target.address}", "echo", ["b"],
                             lambda s, p, got=got, done=done: (got.append((s, p)), done.set()))
                assert done.wait(10) and got == [("ok", ["b"])]
                conn = pool.connection(target.address)
                assert (conn._auth is None) == (tls is not None)
            finally:
                pool.close()
                target.close()
    finally:
        a.close()
        b.close()


def test_aio_client_runs_without_the_mac_under_tls_only(certs):
    plain, tls = _node(None), _node(certs)

    async def ask(node: TcpTransport, ctx) -> tuple[object, bool]:
        pool = AioPool(COOKIE, tls=ctx)
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        pool.request(f"p@{node.address}", "echo", ["aio"],
                     lambda status, payload: done.done() or done.set_result((status, payload)))
        try:
            answer = await asyncio.wait_for(done, 10)
            return answer, pool.connection(node.address)._auth is None
        finally:
            pool.close()
            await pool.wait_closed()

    try:
        assert asyncio.run(ask(tls, client_tls(certs))) == (("ok", ["aio"]), True)
        assert asyncio.run(ask(plain, None)) == (("ok", ["aio"]), False)
    finally:
        plain.close()
        tls.close()
