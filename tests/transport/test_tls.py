"""TLS in the transport, in process: node-to-node and client connections over TLS (the
reactor included), large frames (writes that would block, records buffered in the SSL
object), refusals with a clear error, and handshakes that never hold up other clients."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path

import pytest

from tests.transport.helpers import COOKIE, Inbox, wait_for
from zraft.cluster.certs import issue, make_ca, make_cluster_certs
from zraft.core.messages import VoteRequest
from zraft.transport.codec import ClientReply, ClientRequest
from zraft.transport.errors import HandshakeError
from zraft.transport.tcp import TcpTransport, TransportConfig, connect, parse_addr
from zraft.transport.tls import NodeTls, TlsError, TlsFiles, TlsSocket, client_context

FAST = TransportConfig(reconnect_initial=0.01, reconnect_max=0.1, join_timeout=2.0,
                       handshake_timeout=3.0)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls")
    made = make_cluster_certs(d / "cluster", ["127.0.0.1"])
    other = make_ca(d / "other", "other")
    stranger = issue(other, d / "other", "stranger")
    return {"ca": made.ca, "node": made.node.cert, "node_key": made.node.key,
            "client": made.client.cert, "client_key": made.client.key,
            "other_ca": other.cert_path, "stranger": stranger.cert,
            "stranger_key": stranger.key}


def node_tls(certs: dict[str, Path], verify_client: bool = True) -> NodeTls:
    return NodeTls.build(TlsFiles(str(certs["node"]), str(certs["node_key"]),
                                  str(certs["ca"])), verify_client)


def client_tls(certs: dict[str, Path], ca: str = "ca", cert: str = "client") -> ssl.SSLContext:
    return client_context(TlsFiles(str(certs[cert]), str(certs[f"{cert}_key"]),
                                   str(certs[ca])))


class Echo:
    """A node-side on_frames that answers every client request with its own args."""

    def __call__(self, conn, frames) -> None:
        for f in frames:
            if isinstance(f, ClientRequest):
                conn.send(ClientReply(f.req_id, "ok", f.args))


@pytest.fixture
def server(certs):
    t = TcpTransport(COOKIE, Echo(), config=FAST, tls=node_tls(certs))
    t.start()
    yield t
    t.close()


def test_node_links_carry_frames_both_ways_over_tls(certs):
    inbox_a, inbox_b = Inbox(), Inbox()
    a = TcpTransport(COOKIE, inbox_a, config=FAST, tls=node_tls(certs))
    b = TcpTransport(COOKIE, inbox_b, config=FAST, tls=node_tls(certs))
    a.start()
    b.start()
    try:
        big = "x" * (3 << 20)  # far more than a socket buffer: writes must wait and resume
        for i in range(20):
            a.send(b.address, VoteRequest(i, f"p@{a.address}", f"p@{b.address}", 0, 0))
        a.send(b.address, VoteRequest(99, f"{big}@{a.address}", f"p@{b.address}", 0, 0))
        frames = inbox_b.wait_count(21, timeout=20)
        assert [f.term for f in frames] == [*range(20), 99]
        assert frames[-1].src.startswith(big)
        b.send(a.address, VoteRequest(7, f"p@{b.address}", f"p@{a.address}", 0, 0))
        assert inbox_a.wait_count(1)[0].term == 7
        conn = inbox_b.calls[0][0]
        assert isinstance(conn.sock, TlsSocket) and conn.sock.version() in ("TLSv1.3",
                                                                             "TLSv1.2")
    finally:
        a.close()
        b.close()


def test_client_requests_through_the_reactor_over_tls(server, certs):
    replies = Inbox()
    conn = connect(server.address, COOKIE, "c1", replies, config=FAST, tls=client_tls(certs))
    try:
        # many small requests, then large ones (records left inside the SSL object by a
        # full read must still be read: the reactor cannot see them with epoll)
        for i in range(200):
            conn.send(ClientRequest(i, "echo", [i]))
        payload = "y" * (600 * 1024)
        for i in range(200, 205):
            conn.send(ClientRequest(i, "echo", [payload]))
        got = replies.wait_count(205, timeout=20)
        assert [r.req_id for r in got] == list(range(205))
        assert got[-1].payload == [payload]
        assert server.status()["inbound"][0]["role"] == "client"
    finally:
        conn.close()


def test_plaintext_client_is_refused_with_a_clear_error(server):
    with pytest.raises(HandshakeError, match="requires TLS"):
        connect(server.address, COOKIE, "plain", Inbox(), config=FAST)
    wait_for(lambda: server.status()["auth_failures"] >= 1)


def test_wrong_ca_and_unknown_client_certificates_are_refused(server, certs):
    with pytest.raises(HandshakeError, match="not trusted"):
        connect(server.address, COOKIE, "c", Inbox(), config=FAST,
                tls=client_tls(certs, ca="other_ca"))
    # a certificate of another CA: the node refuses it (TLS 1.3 tells the client on its
    # first read, i.e. during the cookie handshake)
    with pytest.raises(HandshakeError, match=r"(?i)unknown ca"):
        connect(server.address, COOKIE, "c", Inbox(), config=FAST,
                tls=client_tls(certs, cert="stranger"))
    no_cert = client_context(TlsFiles("", "", str(certs["ca"])))
    with pytest.raises(HandshakeError, match=r"(?i)certificate required"):
        connect(server.address, COOKIE, "c", Inbox(), config=FAST, tls=no_cert)
    # and the node still serves a good client
    ok = Inbox()
    conn = connect(server.address, COOKIE, "good", ok, config=FAST, tls=client_tls(certs))
    conn.send(ClientRequest(1, "echo", ["hi"]))
    assert ok.wait_count(1)[0].payload == ["hi"]
    conn.close()


def test_tls_client_against_a_plaintext_node_fails_clearly(certs):
    t = TcpTransport(COOKIE, Echo(), config=FAST)
    t.start()
    try:
        with pytest.raises(HandshakeError, match="TLS handshake"):
            connect(t.address, COOKIE, "c", Inbox(), config=FAST, tls=client_tls(certs))
    finally:
        t.close()


def test_stalled_handshakes_never_hold_up_another_client(server, certs):
    """Silent connections and a half-sent TLS hello wait on their own threads, against
    the handshake deadline; a good client is served meanwhile."""
    hostile = []
    try:
        for first in (b"", b"\x16\x03\x01\x02\x00\x01"):  # silence; a truncated hello
            s = socket.create_connection(parse_addr(server.address))
            if first:
                s.sendall(first)
            hostile.append(s)
        ok = Inbox()
        conn = connect(server.address, COOKIE, "good", ok, config=FAST, tls=client_tls(certs))
        conn.send(ClientRequest(1, "echo", ["through"]))
        assert ok.wait_count(1)[0].payload == ["through"]
        # the truncated hello is still pending while the good client was served
        assert server.status()["handshaking"] >= 1
        conn.close()
    finally:
        for s in hostile:
            with contextlib.suppress(OSError):
                s.close()


def test_bad_tls_files_are_one_line_errors(certs, tmp_path):
    with pytest.raises(TlsError, match="not found"):
        NodeTls.build(TlsFiles(str(tmp_path / "none.pem"), str(certs["node_key"]),
                               str(certs["ca"])), True)
    with pytest.raises(TlsError, match="does not match"):
        NodeTls.build(TlsFiles(str(certs["node"]), str(certs["client_key"]),
                               str(certs["ca"])), True)
    bad = tmp_path / "bad-ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(TlsError, match="tls_ca"):
        NodeTls.build(TlsFiles(str(certs["node"]), str(certs["node_key"]), str(bad)), True)


def test_tls_socket_dontwait_and_eof(certs):
    """The wrapper's contract, on a socketpair: DONTWAIT maps 'would block' to
    BlockingIOError, a blocking read waits for data, a FIN reads as EOF."""
    a, b = socket.socketpair()
    srv = node_tls(certs, verify_client=False).server.wrap_socket(
        a, server_side=True, do_handshake_on_connect=False)
    cli = client_tls(certs).wrap_socket(b, server_hostname="127.0.0.1",
                                        do_handshake_on_connect=False)
    t = threading.Thread(target=srv.do_handshake)
    t.start()
    cli.do_handshake()
    t.join(5)
    x, y = TlsSocket(srv, 5.0), TlsSocket(cli, 5.0)
    buf = bytearray(1 << 16)
    with pytest.raises(BlockingIOError):
        x.recv_into(buf, 0, socket.MSG_DONTWAIT)
    assert y.send(b"hello", socket.MSG_DONTWAIT) == 5
    assert bytes(buf[:x.recv_into(buf)]) == b"hello"
    y.sendall(b"z" * 100_000)
    got = 0
    while got < 100_000:
        got += x.recv_into(buf)
    y.shutdown(socket.SHUT_WR)
    assert x.recv_into(buf) == 0
    x.close()
    y.close()


def test_reactor_reads_what_the_ssl_object_holds(certs):
    """A read smaller than a TLS record leaves decrypted bytes inside the SSL object and
    none in the kernel: epoll stays silent, so the reactor must come back by itself."""
    small = TransportConfig(join_timeout=2.0, handshake_timeout=3.0, recv_size=1000)
    t = TcpTransport(COOKIE, Echo(), config=small, tls=node_tls(certs))
    t.start()
    replies = Inbox()
    conn = connect(t.address, COOKIE, "c", replies, config=FAST, tls=client_tls(certs))
    try:
        conn.send(ClientRequest(1, "echo", ["q" * 10_000]))  # one record, read 1000 at a time
        assert replies.wait_count(1, timeout=10)[0].payload == ["q" * 10_000]
    finally:
        conn.close()
        t.close()


def test_aio_client_over_tls_and_refused_in_plaintext(server, certs):
    import asyncio

    from zraft.aio.connection import ConnectionPool as AioPool

    async def ask(tls: ssl.SSLContext | None) -> tuple[str, object]:
        pool = AioPool(COOKIE, tls=tls)
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        pool.request(f"p@{server.address}", "echo", ["aio"],
                     lambda status, payload: done.done() or done.set_result((status, payload)))
        try:
            return await asyncio.wait_for(done, 10)
        finally:
            pool.close()
            await pool.wait_closed()

    assert asyncio.run(ask(client_tls(certs))) == ("ok", ["aio"])
    status, payload = asyncio.run(ask(None))
    assert status == "noproc" and "requires TLS" in payload["message"]
    status, payload = asyncio.run(ask(client_tls(certs, ca="other_ca")))
    assert status == "noproc" and "TLS handshake failed" in payload["message"]


def test_contexts_trust_the_cluster_ca_only(certs):
    """Never the system's CAs: a public CA's certificate must not pass for a node or a
    client."""
    tls = node_tls(certs)
    for ctx in (tls.server, tls.client, client_tls(certs)):
        assert ctx.cert_store_stats()["x509_ca"] == 1
        assert [c["subject"] for c in ctx.get_ca_certs()] == [
            ((("organizationName", "zraft"),), (("commonName", "zraft ca"),))]
    assert tls.server.verify_mode == ssl.CERT_REQUIRED
    assert tls.client.check_hostname and client_tls(certs).check_hostname


def test_node_names_are_checked_as_dns_names_and_ips(server, certs, tmp_path):
    """The host of the address dialed must be a subjectAltName of the node's certificate:
    a DNS name (localhost) and an IP (127.0.0.1) in it both work, a name missing is refused."""
    port = parse_addr(server.address)[1]
    for host in ("localhost", "127.0.0.1"):
        ok = Inbox()
        conn = connect(f"{host}:{port}", COOKIE, "c", ok, config=FAST, tls=client_tls(certs))
        conn.send(ClientRequest(1, "echo", [host]))
        assert ok.wait_count(1)[0].payload == [host]
        conn.close()
    # a node whose certificate names another host only
    from zraft.cluster.certs import load_ca

    other = issue(load_ca(certs["ca"].parent), tmp_path, "elsewhere", ["db.example.org"])
    t = TcpTransport(COOKIE, Echo(), config=FAST, tls=NodeTls.build(
        TlsFiles(str(other.cert), str(other.key), str(certs["ca"])), False))
    t.start()
    try:
        with pytest.raises(HandshakeError, match=r"(?i)not trusted.*(hostname|ip address)"):
            connect(t.address, COOKIE, "c", Inbox(), config=FAST, tls=client_tls(certs))
    finally:
        t.close()
