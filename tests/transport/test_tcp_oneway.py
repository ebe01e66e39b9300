"""One-way partitions: a node can drop what arrives from a peer, or what it sends to it."""

from __future__ import annotations

import pytest

from tests.transport.helpers import COOKIE, Inbox, wait_for
from tests.transport.test_tcp import vote
from zraft.transport.tcp import TcpTransport


def _pair() -> tuple[TcpTransport, Inbox, TcpTransport, Inbox]:
    ia, ib = Inbox(), Inbox()
    a, b = TcpTransport(COOKIE, ia), TcpTransport(COOKIE, ib)
    a.start()
    b.start()
    return a, ia, b, ib


def _count(inbox: Inbox) -> int:
    return sum(len(frames) for _conn, frames in list(inbox.calls))


def test_block_in_drops_only_arrivals() -> None:
    a, ia, b, ib = _pair()
    try:
        a.block([b.address], "in")
        a.send(b.address, vote(a.address, b.address, 1))
        wait_for(lambda: _count(ib) >= 1)  # a -> b still flows
        b.send(a.address, vote(b.address, a.address, 2))
        b.send(a.address, vote(b.address, a.address, 3))
        a.send(b.address, vote(a.address, b.address, 4))
        wait_for(lambda: _count(ib) >= 2)
        assert _count(ia) == 0  # b -> a dropped on arrival at a
        a.unblock()
        b.send(a.address, vote(b.address, a.address, 5))
        wait_for(lambda: _count(ia) >= 1)
    finally:
        a.close()
        b.close()


def test_block_out_drops_only_sends() -> None:
    a, ia, b, ib = _pair()
    try:
        a.block([b.address], "out")
        assert not a.send(b.address, vote(a.address, b.address, 1))
        b.send(a.address, vote(b.address, a.address, 2))
        wait_for(lambda: _count(ia) >= 1)  # b -> a still flows
        assert _count(ib) == 0
        assert a.status()["blocked_out"] == [b.address] and a.status()["blocked_in"] == []
    finally:
        a.close()
        b.close()


def test_unknown_direction_is_refused() -> None:
    a, _ia, b, _ib = _pair()
    try:
        with pytest.raises(ValueError, match="direction"):
            a.block([b.address], "sideways")
    finally:
        a.close()
        b.close()
