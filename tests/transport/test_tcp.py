"""TcpTransport over loopback: delivery, batching, replies, reconnect, dead peers, filters."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from tests.transport.helpers import COOKIE, Inbox, dead_port, wait_for
from zraft.core.entries import DATA, Entry
from zraft.core.messages import AppendEntries, AppendReply, VoteRequest
from zraft.transport import codec
from zraft.transport.codec import ClientReply, ClientRequest
from zraft.transport.errors import HandshakeError
from zraft.transport.frame_auth import seal_stream
from zraft.transport.handshake import client_handshake
from zraft.transport.tcp import TcpTransport, TransportConfig, connect, parse_addr

FAST = TransportConfig(reconnect_initial=0.01, reconnect_max=0.1, join_timeout=2.0)


@pytest.fixture
def pair():
    inbox_a, inbox_b = Inbox(), Inbox()
    a = TcpTransport(COOKIE, inbox_a, config=FAST)
    b = TcpTransport(COOKIE, inbox_b, config=FAST)
    a.start()
    b.start()
    yield a, inbox_a, b, inbox_b
    a.close()
    b.close()


def vote(src: str, dst: str, term: int = 1) -> VoteRequest:
    return VoteRequest(term, f"p@{src}", f"p@{dst}", 0, 0, False)


def test_send_and_receive_both_ways(pair):
    a, inbox_a, b, inbox_b = pair
    ents = [Entry(i, 1, DATA, b"x" * 100, i) for i in range(1, 11)]
    msg = AppendEntries(1, f"p@{a.address}", f"p@{b.address}", 0, 0, ents, 0, 1)
    assert a.send(b.address, msg)
    (got,) = inbox_b.wait_count(1)
    assert got == msg
    conn = inbox_b.calls[0][0]
    assert conn.peer_id == a.node_id and conn.inbound
    reply = AppendReply(1, msg.dst, msg.src, True, 10, 0, 0, 1)
    b.send(a.address, codec.encode_frame(reply))  # pre-encoded bytes work too
    assert inbox_a.wait_count(1) == [reply]
    # ONE connection carries both directions: b answered on the connection a dialed
    assert a.link_state(b.address)["direction"] == "outbound"
    assert b.link_state(a.address)["direction"] == "inbound"
    assert b.link_state(a.address)["connects"] == 1 and a.status()["accepted"] == 0
    wait_for(lambda: a.link_state(b.address)["frames_sent"] == 1)  # counted after sendall


def test_one_link_per_peer_carries_every_group(pair):
    a, _, b, inbox_b = pair
    for group in range(20):
        a.send(b.address, VoteRequest(1, f"g{group}@{a.address}", f"g{group}@{b.address}", 0, 0))
    frames = inbox_b.wait_count(20)
    assert sorted(f.src for f in frames) == sorted(f"g{g}@{a.address}" for g in range(20))
    assert len({id(conn) for conn, _ in inbox_b.calls}) == 1
    assert len(b.inbound_connections()) == 1
    assert a.status()["links"][b.address]["connects"] == 1


def test_all_frames_of_one_read_arrive_in_one_callback(pair):
    _, _, b, inbox_b = pair
    got = Inbox()
    conn = connect(b.address, COOKIE, "client-1", got, FAST)
    try:
        burst = codec.encode_frames(ClientRequest(i, "get", [i]) for i in range(50))
        conn.sock.sendall(seal_stream(conn.frame_auth, burst))  # one write of 50 frames
        inbox_b.wait_count(50)
        assert len(inbox_b.calls) < 50
        assert max(len(fs) for _, fs in inbox_b.calls) > 1
    finally:
        conn.close()
        conn.join(2)


def test_client_connection_gets_replies_on_the_same_connection(pair):
    _, _, b, inbox_b = pair
    replies = Inbox()

    def serve(conn, frames):
        for req in frames:
            conn.send(ClientReply(req.req_id, "ok", req.args))

    b.on_frames = serve  # replace the recorder with a server
    conn = connect(b.address, COOKIE, "client-7", replies, FAST)
    try:
        for i in range(100):
            conn.send(ClientRequest(i, "echo", {"n": i}))
        got = replies.wait_count(100)
        assert got == [ClientReply(i, "ok", {"n": i}) for i in range(100)]
        assert conn.peer_id == b.node_id
    finally:
        conn.close()
        conn.join(2)
    del inbox_b


def test_client_with_wrong_cookie_is_refused(pair):
    _, _, b, _ = pair
    with pytest.raises(HandshakeError):
        connect(b.address, b"wrong", "intruder", Inbox(), FAST)
    wait_for(lambda: b.counters["auth_failures"] == 1)


def test_reconnect_after_peer_server_restarts():
    inbox_a, inbox_b = Inbox(), Inbox()
    a = TcpTransport(COOKIE, inbox_a, config=FAST)
    b = TcpTransport(COOKIE, inbox_b, config=FAST)
    a.start()
    b.start()
    try:
        addr = b.address
        a.send(addr, vote(a.address, addr, 1))
        inbox_b.wait_count(1)
        b.close()
        wait_for(lambda: not a.link_state(addr)["connected"])
        b2_inbox = Inbox()
        b2 = TcpTransport(COOKIE, b2_inbox, listen=parse_addr(addr), config=FAST)
        b2.start()
        try:
            # Raft keeps sending; once the link is back, messages flow again.
            def delivered():
                a.send(addr, vote(a.address, addr, 2))
                return b2_inbox.frames

            wait_for(delivered, timeout=10, interval=0.02)
            assert a.link_state(addr)["connects"] >= 2
        finally:
            b2.close()
    finally:
        a.close()


def test_send_to_dead_peer_never_blocks_and_queue_is_bounded():
    cfg = TransportConfig(queue_max_frames=100, reconnect_initial=0.01, reconnect_max=0.05)
    a = TcpTransport(COOKIE, Inbox(), config=cfg)
    a.start()
    try:
        addr = f"127.0.0.1:{dead_port()}"
        msg = codec.encode_frame(vote(a.address, addr))
        start = time.monotonic()
        for _ in range(20_000):
            a.send(addr, msg)
        elapsed = time.monotonic() - start
        assert elapsed < 10.0, elapsed  # a blocking send would wait for connect timeouts
        state = wait_for(lambda: (s := a.link_state(addr))["connect_failures"] > 0 and s)
        assert state["queued"] <= 100
        assert state["dropped"] >= 20_000 - 100
        assert not state["connected"]
        assert state["last_error"]
    finally:
        start = time.monotonic()
        a.close()
        assert time.monotonic() - start < 30  # catches a hang, not slowness


def test_send_to_blackhole_peer_never_blocks():
    # A listener that accepts TCP but never says hello: the handshake times out in the link
    # thread, never in the caller's.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(100)
    cfg = TransportConfig(handshake_timeout=0.2, reconnect_initial=0.01, reconnect_max=0.05)
    a = TcpTransport(COOKIE, Inbox(), config=cfg)
    a.start()
    try:
        addr = f"127.0.0.1:{hole.getsockname()[1]}"
        start = time.monotonic()
        for i in range(1000):
            a.send(addr, vote(a.address, addr, i))
        assert time.monotonic() - start < 5.0  # far below the handshake timeouts of a block
        wait_for(lambda: a.link_state(addr)["connect_failures"] >= 1)
        assert "timed out" in a.link_state(addr)["last_error"]
    finally:
        a.close()
        hole.close()


def test_block_drops_traffic_both_ways(pair):
    a, inbox_a, b, inbox_b = pair
    a.send(b.address, vote(a.address, b.address, 1))
    inbox_b.wait_count(1)
    b.block([a.address])  # b drops what comes from a, and what it would send to a
    assert not b.send(a.address, vote(b.address, a.address, 1))
    a.send(b.address, vote(a.address, b.address, 2))
    wait_for(lambda: b.status()["inbound"][0]["dropped_in"] == 1)
    assert len(inbox_b.frames) == 1
    assert b.counters["dropped_by_filter"] == 1
    b.unblock()
    a.send(b.address, vote(a.address, b.address, 3))
    assert inbox_b.wait_count(2)[-1].term == 3
    assert inbox_a.frames == []


def test_callback_exception_does_not_kill_the_connection(pair):
    a, _, b, _ = pair
    seen = Inbox()

    def flaky(conn, frames):
        seen(conn, frames)
        if len(seen.calls) == 1:
            raise RuntimeError("boom")

    b.on_frames = flaky
    a.send(b.address, vote(a.address, b.address, 1))
    seen.wait_count(1)
    a.send(b.address, vote(a.address, b.address, 2))
    seen.wait_count(2)


def test_peer_that_skips_handshake_gets_nothing_delivered(pair):
    _, _, b, inbox_b = pair
    host, port = parse_addr(b.address)
    with socket.create_connection((host, port), timeout=2) as s:
        s.sendall(codec.encode_frame(vote("x", "y")))
        s.settimeout(5)
        data = b""
        while chunk := s.recv(4096):  # the server closes after refusing
            data += chunk
    wait_for(lambda: b.counters["auth_failures"] == 1)
    assert inbox_b.frames == []


def test_handshake_id_is_the_node_address(pair):
    _, _, b, _ = pair
    host, port = parse_addr(b.address)
    with socket.create_connection((host, port), timeout=2) as s:
        auth = client_handshake(s, COOKIE, "probe", 2)
    assert auth.peer_id == b.address == b.node_id


def test_close_is_prompt_with_open_connections():
    before = set(threading.enumerate())  # other tests' threads are not this test's business
    inbox = Inbox()
    servers = [TcpTransport(COOKIE, inbox, config=FAST) for _ in range(3)]
    for t in servers:
        t.start()
    for t in servers:
        for other in servers:
            if other is not t:
                t.send(other.address, vote(t.address, other.address))
    inbox.wait_count(6)
    start = time.monotonic()
    for t in servers:
        t.close()
    # close() is bounded by its join timeouts; this only catches a hang, not slowness
    # (no timing assertions: a loaded CI machine may be slow)
    assert time.monotonic() - start < 60
    ours = [th for th in threading.enumerate() if th not in before and th.name.startswith("zraft-")]
    wait_for(lambda: not [th for th in ours if th.is_alive()], timeout=30)


def test_parse_addr():
    assert parse_addr("127.0.0.1:80") == ("127.0.0.1", 80)
    assert parse_addr("[::1]:9") == ("::1", 9)
    for bad in ("nohost", ":80", "h:", "h:x"):
        with pytest.raises(ValueError):
            parse_addr(bad)


def test_close_is_prompt_with_a_silent_client_in_the_handshake():
    t = TcpTransport(COOKIE, Inbox(), config=TransportConfig(handshake_timeout=30))
    t.start()
    silent = socket.create_connection(parse_addr(t.address))
    try:
        wait_for(lambda: t.counters["accepted"] == 1)
        start = time.monotonic()
        t.close()
        assert time.monotonic() - start < 2.5
        assert not t.send("127.0.0.1:1", vote("a", "b"))  # closed: nothing is queued
    finally:
        silent.close()


def test_frames_over_the_size_limit_close_the_connection():
    inbox = Inbox()
    t = TcpTransport(COOKIE, inbox, config=TransportConfig(max_frame_size=1024))
    t.start()
    try:
        got = Inbox()
        conn = connect(t.address, COOKIE, "big-sender", got)
        conn.send(ClientRequest(1, "ok", b"x" * 100))
        inbox.wait_count(1)
        conn.send(ClientRequest(2, "too-big", b"x" * 2000))
        wait_for(lambda: t.counters["malformed"] == 1)
        wait_for(lambda: conn.closed)
        assert len(inbox.frames) == 1
    finally:
        t.close()


def _one_connection_per_pair(nodes: list[TcpTransport]) -> bool:
    for x in nodes:
        for y in nodes:
            if x is y:
                continue
            sx, sy = x.link_state(y.address), y.link_state(x.address)
            if not (sx and sy and sx["connected"] and sy["connected"]):
                return False
            if (sx["local"], sx["remote"]) != (sy["remote"], sy["local"]):
                return False  # the two links ride different TCP connections
        open_inbound = [c for c in x.inbound_connections() if not c.closed]
        if len(open_inbound) != sum(
            1 for y in nodes if y is not x and x.link_state(y.address)["direction"] == "inbound"
        ):
            return False  # a retired duplicate is still open
    return True


@pytest.mark.parametrize("round_", range(3))
def test_simultaneous_dials_converge_on_one_connection_per_pair_without_loss(round_):
    inbox = Inbox()
    nodes = [TcpTransport(COOKIE, inbox, config=FAST) for _ in range(3)]
    for t in nodes:
        t.start()
    try:
        per_pair = 200
        senders = []
        for x in nodes:
            for y in nodes:
                if x is not y:
                    msgs = [vote(x.address, y.address, term) for term in range(1, per_pair + 1)]
                    senders.append(threading.Thread(target=x.send_many, args=(y.address, msgs)))
        for s in senders:
            s.start()
        for s in senders:
            s.join(10)
        frames = inbox.wait_count(6 * per_pair, timeout=10)
        # every message arrived exactly once, in order per (src, dst)
        by_pair: dict[tuple[str, str], list[int]] = {}
        for f in frames:
            by_pair.setdefault((f.src, f.dst), []).append(f.term)
        assert len(by_pair) == 6
        assert all(terms == list(range(1, per_pair + 1)) for terms in by_pair.values())
        wait_for(lambda: _one_connection_per_pair(nodes), timeout=10)
    finally:
        for t in nodes:
            t.close()


def test_client_connections_never_become_peer_links(pair):
    _, _, b, _ = pair
    conn = connect(b.address, COOKIE, "127.0.0.1:1", Inbox(), FAST)  # looks like a node id
    try:
        wait_for(lambda: b.inbound_connections())
        assert b.status()["links"] == {}
        assert b.inbound_connections()[0].role == "client"
    finally:
        conn.close()
        conn.join(2)


def test_node_role_with_an_id_that_is_not_an_address_is_refused(pair):
    _, _, b, _ = pair
    with socket.create_connection(parse_addr(b.address), timeout=2) as s:
        client_handshake(s, COOKIE, "not-an-address", 2, role="node")
        s.settimeout(5)
        assert s.recv(1) == b""  # closed by the server
    assert b.status()["links"] == {}


def test_reconnect_when_the_restarted_peer_had_dialed_us():
    inbox_a, inbox_b = Inbox(), Inbox()
    a = TcpTransport(COOKIE, inbox_a, config=FAST)
    b = TcpTransport(COOKIE, inbox_b, config=FAST)
    a.start()
    b.start()
    try:
        addr = b.address
        b.send(a.address, vote(addr, a.address))  # b dials; a adopts the connection
        inbox_a.wait_count(1)
        wait_for(lambda: (s := a.link_state(addr)) and s["direction"] == "inbound")
        b.close()
        wait_for(lambda: not a.link_state(addr)["connected"])
        b2_inbox = Inbox()
        b2 = TcpTransport(COOKIE, b2_inbox, listen=parse_addr(addr), config=FAST)
        b2.start()
        try:

            def delivered():
                a.send(addr, vote(a.address, addr, 2))
                return b2_inbox.frames

            wait_for(delivered, timeout=10, interval=0.02)
            assert a.link_state(addr)["direction"] == "outbound"
        finally:
            b2.close()
    finally:
        a.close()


def test_peer_that_stops_reading_is_dropped_after_the_write_timeout():
    # A fake node that authenticates and then never reads: our writer blocks in sendall
    # until SO_SNDTIMEO fires; the caller of send() is never blocked.
    from zraft.transport.handshake import server_handshake

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    fake_addr = f"127.0.0.1:{lsock.getsockname()[1]}"
    held: list[socket.socket] = []

    def fake_node():
        lsock.settimeout(10)
        with contextlib.suppress(OSError):
            while True:
                conn, _ = lsock.accept()
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                server_handshake(conn, COOKIE, fake_addr, 2)
                held.append(conn)

    th = threading.Thread(target=fake_node, daemon=True)
    th.start()
    cfg = TransportConfig(write_timeout=0.3, reconnect_initial=0.01, reconnect_max=0.05)
    a = TcpTransport(COOKIE, Inbox(), config=cfg)
    a.start()
    try:
        big = codec.encode_frame(ClientReply(1, "ok", b"x" * (1 << 20)))
        start = time.monotonic()
        for _ in range(40):
            a.send(fake_addr, big)
        assert time.monotonic() - start < 1.0
        wait_for(lambda: a.link_state(fake_addr)["connects"] >= 2, timeout=10)
    finally:
        a.close()
        lsock.close()
        for s in held:
            s.close()


def test_ipv6_loopback_and_self_send():
    inbox = Inbox()
    try:
        a = TcpTransport(COOKIE, Inbox(), listen=("::1", 0), config=FAST)
        a.start()
    except OSError:
        pytest.skip("no IPv6 loopback")
    b = TcpTransport(COOKIE, inbox, listen=("::1", 0), config=FAST)
    b.start()
    try:
        assert b.address.startswith("[::1]:")
        a.send(b.address, vote(a.address, b.address))
        assert inbox.wait_count(1)[0].src == f"p@{a.address}"
        with pytest.raises(ValueError):
            a.send(a.address, vote(a.address, a.address))
    finally:
        a.close()
        b.close()


def test_client_on_close_fires_when_the_node_goes_away(pair):
    _, _, b, _ = pair
    closed = threading.Event()
    conn = connect(b.address, COOKIE, "client-x", Inbox(), FAST, on_close=lambda c: closed.set())
    b.close()
    assert closed.wait(5)
    assert conn.closed


def test_conn_send_on_a_node_connection_uses_the_peer_link(pair):
    a, inbox_a, b, _ = pair

    def answer(conn, frames):
        for f in frames:
            conn.send(codec.SnapshotControl("accept", [f.term]))

    b.on_frames = answer
    for term in range(1, 51):
        a.send(b.address, vote(a.address, b.address, term))
    got = inbox_a.wait_count(50)
    assert [f.args[0] for f in got] == list(range(1, 51))
    assert b.link_state(a.address)["frames_sent"] >= 1 or wait_for(
        lambda: b.link_state(a.address)["frames_sent"] == 50
    )


def test_start_without_serving_holds_the_port_and_refuses_until_serve():
    inbox = Inbox()
    t = TcpTransport(COOKIE, inbox, config=FAST)
    try:
        host, port = t.start(serve=False)
        with socket.socket() as s:
            assert s.connect_ex((host, port)) != 0  # bound, not listening: refused
        with socket.socket() as other, pytest.raises(OSError):
            other.bind((host, port))  # the port is ours already
        t.serve()
        with socket.socket() as s:
            assert s.connect_ex((host, port)) == 0
    finally:
        t.close()
