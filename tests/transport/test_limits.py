"""Resource caps of a node's transport: fd-derived connection caps, eviction of the oldest
pending handshake, accept backoff, and the node-wide budget of partial-frame memory
(issue 11, section 1)."""

from __future__ import annotations

import contextlib
import itertools
import resource
import socket
import subprocess
import sys

import pytest

from tests.transport.helpers import COOKIE, Inbox, wait_for
from zraft.transport.codec import ClientReply, ClientRequest
from zraft.transport.errors import BufferLimitExceeded
from zraft.transport.framing import HEADER, BufferBudget, FrameDecoder
from zraft.transport.handshake import client_handshake
from zraft.transport.limits import AcceptBackoff, connection_caps
from zraft.transport.tcp import TcpTransport, TransportConfig, connect, parse_addr

# -- caps from the fd limit -----------------------------------------------------------------


def test_caps_keep_a_reserve_for_storage_and_follow_the_fd_limit():
    small = connection_caps(256, in_use=20)
    assert (small.reserve, small.max_handshaking, small.max_connections) == (64, 43, 129)
    issue = connection_caps(1024, in_use=20)  # the fd limit of the report
    assert issue.reserve == 256 and issue.max_handshaking == 187  # not a fixed 1,024
    assert issue.max_connections == 561
    assert issue.reserve + issue.max_handshaking + issue.max_connections + 20 == 1024
    big = connection_caps(1 << 20, in_use=30)
    assert big.max_handshaking == 1024  # one thread each: capped
    tiny = connection_caps(32, in_use=40)
    assert tiny.max_connections >= 8 and tiny.max_handshaking >= 4


def test_the_soft_fd_limit_is_raised_to_the_hard_limit():
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 256:
        pytest.skip("hard fd limit too low to lower the soft one under it")
    code = ("import resource; from zraft.transport.limits import raise_fd_limit; "
            "print(raise_fd_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard)))
    returned, now = map(int, out.stdout.split())
    expect = hard if hard != resource.RLIM_INFINITY else 1 << 20
    assert returned == now == min(expect, 1 << 20)


def test_accept_backoff_doubles_to_a_cap_and_resets():
    backoff = AcceptBackoff(initial=0.01, maximum=1.0)
    err = OSError(24, "Too many open files")
    delays = [backoff.failed(err) for _ in range(10)]
    assert delays[:4] == [0.01, 0.02, 0.04, 0.08] and delays[-1] == 1.0
    assert all(a <= b for a, b in itertools.pairwise(delays))
    backoff.succeeded()
    assert backoff.failed(err) == 0.01


# -- pending handshakes ---------------------------------------------------------------------


def _echo(conn, frames):
    for f in frames:
        conn.send(ClientReply(f.req_id, "ok", f.args))


def test_silent_connections_are_evicted_oldest_first_and_a_client_gets_in():
    cfg = TransportConfig(max_handshaking=4, max_connections=64, handshake_timeout=30.0,
                          join_timeout=2.0)
    server = TcpTransport(COOKIE, _echo, config=cfg)
    server.start()
    silent = [socket.create_connection(parse_addr(server.address), timeout=5)
              for _ in range(12)]
    try:
        wait_for(lambda: server.status()["handshakes_evicted"] >= 8)
        assert len(server._handshaking) <= 4
        for sock in silent[:8]:  # the oldest were closed by the server
            sock.settimeout(5)
            while sock.recv(4096):  # the hello, then EOF
                pass
        replies = Inbox()
        # with a 30 s handshake timeout, only eviction lets this one in quickly
        conn = connect(server.address, COOKIE, "real", replies, cfg)
        conn.send(ClientRequest(1, "echo", "in"))
        assert replies.wait_count(1) == [ClientReply(1, "ok", "in")]
        conn.close()
    finally:
        for sock in silent:
            sock.close()
        server.close()


def test_clients_over_the_cap_are_refused_and_peer_nodes_still_get_in():
    cfg = TransportConfig(max_handshaking=4, max_connections=3, join_timeout=2.0,
                          reconnect_initial=0.01, reconnect_max=0.1)
    server = TcpTransport(COOKIE, _echo, config=cfg)
    server.start()
    peer = TcpTransport(COOKIE, Inbox(), config=cfg)
    peer.start()
    clients = [connect(server.address, COOKIE, f"c{i}", Inbox(), cfg) for i in range(3)]
    try:
        wait_for(lambda: len(server.inbound_connections()) == 3)
        extra = socket.create_connection(parse_addr(server.address), timeout=5)
        with extra:
            client_handshake(extra, COOKIE, "extra", 5.0)
            assert extra.recv(10) == b""  # closed right after its handshake
        assert server.status()["refused_over_limit"] == 1
        peer.connect([server.address])  # a node: admitted over the client cap
        wait_for(lambda: (server.link_state(peer.address) or {}).get("connected"))
        clients.pop().close()
        wait_for(lambda: len(server.inbound_connections()) == 3)
        replies = Inbox()
        clients.append(connect(server.address, COOKIE, "again", replies, cfg))
        clients[-1].send(ClientRequest(1, "echo", "in"))
        assert replies.wait_count(1) == [ClientReply(1, "ok", "in")]
    finally:
        for c in clients:
            c.close()
        peer.close()
        server.close()


# -- memory held for partial frames ---------------------------------------------------------


def _partial(total: int, sent: int) -> bytes:
    return HEADER.pack(total) + b"x" * sent


def test_partial_frames_beyond_the_allowance_are_charged_and_capped():
    budget = BufferBudget(10_000)
    a = FrameDecoder(1 << 20, budget, allowance=1_000)
    b = FrameDecoder(1 << 20, budget, allowance=1_000)
    assert a.feed(_partial(50_000, 996)) == [] and budget.used == 0  # within the allowance
    a.feed(b"x" * 6_000)
    assert budget.used == 6_000
    b.feed(_partial(50_000, 4_996))
    assert budget.used == 10_000
    with pytest.raises(BufferLimitExceeded):
        b.feed(b"x")
    assert budget.refused == 1
    b.release()
    assert budget.used == 6_000
    a.feed(b"x" * (50_000 - 6_996))  # a's frame completes: its charge goes back
    assert budget.used == 0


def test_the_decoder_gives_a_large_frame_s_memory_back():
    shrunk = []
    decoder = FrameDecoder(64 << 20, BufferBudget(64 << 20), on_shrink=lambda: shrunk.append(1))
    body = b"y" * (20 << 20)
    data = HEADER.pack(len(body)) + body + _partial(10, 3)
    chunk = 256 * 1024
    out = []
    for i in range(0, len(data), chunk):
        out += decoder.feed(data[i:i + chunk])
    assert out == [body] and decoder.pending() == 7
    assert decoder._buf.__alloc__() < 1 << 20 and shrunk


def test_a_connection_over_the_node_wide_budget_is_closed_others_work():
    cfg = TransportConfig(max_buffered_bytes=2 << 20, partial_allowance=64 << 10,
                          join_timeout=2.0)
    server = TcpTransport(COOKIE, _echo, config=cfg)
    server.start()
    hogs = []
    try:
        for i in range(3):  # 3 x 1.5 MiB of 4 MiB frames: the third cannot fit
            sock = socket.create_connection(parse_addr(server.address), timeout=5)
            client_handshake(sock, COOKIE, f"hog{i}", 5.0)
            hogs.append(sock)
            with contextlib.suppress(OSError):  # closed by the server while sending
                sock.sendall(_partial(4 << 20, 3 << 19))
        wait_for(lambda: server.status()["closed_over_buffer_budget"] >= 1)
        status = server.status()
        assert status["buffered_bytes"] <= 2 << 20 and status["buffered_bytes_peak"] <= 2 << 20
        replies = Inbox()
        good = connect(server.address, COOKIE, "good", replies, cfg)
        good.send(ClientRequest(1, "echo", b"z" * 100_000))
        assert replies.wait_count(1) == [ClientReply(1, "ok", b"z" * 100_000)]
        good.close()
        for sock in hogs:
            sock.close()
        wait_for(lambda: server.status()["buffered_bytes"] == 0)  # all given back
    finally:
        for sock in hogs:
            sock.close()
        server.close()
