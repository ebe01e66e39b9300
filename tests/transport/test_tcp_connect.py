"""TcpTransport.connect: dial with nothing queued, so a restarted node's peers adopt its
connection at once instead of waiting out their reconnect backoff."""

from __future__ import annotations

import time

from tests.transport.helpers import COOKIE, Inbox, wait_for
from zraft.core.messages import VoteRequest
from zraft.transport.tcp import TcpTransport, TransportConfig, parse_addr

FAST = TransportConfig(reconnect_initial=0.01, reconnect_max=0.1, join_timeout=2.0)
# the "leader" side: a long backoff, as a link to a node that was down for a while has
SLOW = TransportConfig(reconnect_initial=1.0, reconnect_max=5.0, join_timeout=2.0)


def vote(src: str, dst: str, term: int = 1) -> VoteRequest:
    return VoteRequest(term, f"p@{src}", f"p@{dst}", 0, 0, False)


def test_connect_dials_with_nothing_queued() -> None:
    a, b = TcpTransport(COOKIE, Inbox(), config=FAST), TcpTransport(COOKIE, Inbox(), config=FAST)
    a.start()
    b.start()
    try:
        assert a.link_state(b.address) is None
        a.connect([b.address])
        # both ends, each in its own time: the acceptor may adopt the connection before the
        # dialer has read the handshake's last message (no order between them is promised)
        wait_for(lambda: (s := b.link_state(a.address)) and s["connected"]
                 and a.link_state(b.address)["connected"])
        assert b.link_state(a.address)["direction"] == "inbound"
        assert a.link_state(b.address)["direction"] == "outbound"
        assert a.link_state(b.address)["frames_sent"] == 0
    finally:
        a.close()
        b.close()


def test_connect_skips_self_and_blocked_nodes() -> None:
    a = TcpTransport(COOKIE, Inbox(), config=FAST)
    a.start()
    try:
        a.block(["127.0.0.1:1"], "out")
        a.connect([a.address, "127.0.0.1:1"])
        assert a.link_state(a.address) is None
        assert a.link_state("127.0.0.1:1") is None
    finally:
        a.close()


def test_a_wanted_link_to_a_dead_node_keeps_dialing_until_it_is_up() -> None:
    b = TcpTransport(COOKIE, Inbox(), config=FAST)
    b.start()
    addr = b.address
    b.close()
    a = TcpTransport(COOKIE, Inbox(), config=FAST)
    a.start()
    try:
        a.connect([addr])
        wait_for(lambda: a.link_state(addr)["connect_failures"] >= 2)
        b2 = TcpTransport(COOKIE, Inbox(), listen=parse_addr(addr), config=FAST)
        b2.start()
        try:
            wait_for(lambda: a.link_state(addr)["connected"])
        finally:
            b2.close()
    finally:
        a.close()


def test_restarted_node_that_connects_is_adopted_before_the_backoff_ends() -> None:
    """The leader (a) has frames for b and has failed to reach it (backoff >= 1 s); b
    restarts and calls connect: a's queued frames arrive at once, over b's connection."""
    inbox_a, inbox_b = Inbox(), Inbox()
    a = TcpTransport(COOKIE, inbox_a, config=SLOW)
    b = TcpTransport(COOKIE, inbox_b, config=FAST)
    a.start()
    b.start()
    addr = b.address
    try:
        a.send(addr, vote(a.address, addr, 1))
        inbox_b.wait_count(1)
        b.close()
        wait_for(lambda: not a.link_state(addr)["connected"])
        a.send(addr, vote(a.address, addr, 2))  # dials, fails, backs off for >= 1 s
        wait_for(lambda: a.link_state(addr)["connect_failures"] >= 1)
        assert a.link_state(addr)["state"] == "backoff"
        b2_inbox = Inbox()
        b2 = TcpTransport(COOKIE, b2_inbox, listen=parse_addr(addr), config=FAST)
        b2.start()
        try:
            started = time.monotonic()
            b2.connect([a.address])
            frames = b2_inbox.wait_count(1, timeout=5.0)
            assert time.monotonic() - started < 0.8  # a's own next dial is >= 1 s away
            assert frames[0].term == 2
            state = a.link_state(addr)
            assert state["direction"] == "inbound" and state["state"] == "connected"
            # the adopted connection ended the backoff: a later loss starts from scratch
            assert a._links[addr]._failure_streak == 0
        finally:
            b2.close()
    finally:
        a.close()
