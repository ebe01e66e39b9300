"""Issue 13, section 1 (frame MAC) on a node-to-node link: a relay between two transports
forwards the handshake untouched and rewrites one byte of an AppendEntries frame. The
receiving node drops the link (counted as closed_bad_mac), the sender re-establishes it,
and nothing corrupt is delivered. (On main the rewritten entry was delivered as sent.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.transport.helpers import COOKIE, Inbox, wait_for
from tests.transport.relay import FrameRelay, flip_in
from zraft.core.entries import DATA, Entry
from zraft.core.messages import AppendEntries
from zraft.transport.tcp import TcpTransport, TransportConfig, parse_addr

FAST = TransportConfig(reconnect_initial=0.01, reconnect_max=0.1, join_timeout=2.0)


@pytest.fixture
def nodes() -> Iterator[tuple[TcpTransport, TcpTransport, Inbox]]:
    inbox_b = Inbox()
    a, b = TcpTransport(COOKIE, Inbox(), config=FAST), TcpTransport(COOKIE, inbox_b, config=FAST)
    a.start()
    b.start()
    yield a, b, inbox_b
    a.close()
    b.close()


def _entries(a: TcpTransport, b: TcpTransport, i: int) -> AppendEntries:
    entry = Entry(i, 1, DATA, f"entry-{i}-payload".encode() * 8, i)
    return AppendEntries(1, f"p@{a.address}", f"p@{b.address}", i - 1, 1 if i > 1 else 0,
                         [entry], 0, 1)


@pytest.mark.parametrize("entry_size", ["small", "large"])  # both MACs (BLAKE2b / SHA-256)
def test_a_rewritten_append_entries_drops_the_link_and_nothing_corrupt_arrives(
        nodes, entry_size: str) -> None:
    a, b, inbox_b = nodes
    big = entry_size == "large"

    def sent(i: int) -> AppendEntries:
        msg = _entries(a, b, i)
        if big:
            entry = msg.entries[0]
            msg = msg._replace(entries=[entry._replace(data=entry.data * 40)])
        return msg

    relay = FrameRelay(parse_addr(b.address),
                       lambda _i, f: flip_in(f, b"entry-1-") if b"entry-1-" in f else f)
    try:
        assert a.send(relay.address, sent(1))
        wait_for(lambda: b.status()["closed_bad_mac"] == 1)
        assert relay.closed_by_target.wait(5)
        wait_for(lambda: not a.link_state(relay.address)["connected"])
        for i in range(2, 6):  # the link comes back (the relay no longer tampers)
            assert a.send(relay.address, sent(i))
        got = inbox_b.wait_count(4)
        assert got == [sent(i) for i in range(2, 6)]  # whole, in order, nothing rewritten
        assert a.link_state(relay.address)["connects"] == 2
        assert b.status()["closed_bad_mac"] == 1 and b.status()["malformed"] == 0
    finally:
        relay.close()
