"""Issue 13, section 1 (frame MAC), on real node processes: an on-path relay that forwards a
real cookie handshake untouched, then rewrites one byte of a client's write or injects a
copied frame, gets the relayed connection closed; the write is not acknowledged as ok, the
rewritten value never reaches the state, and the node and its other clients carry on.
(On main the node took the rewritten write and the client was told "ok".)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import Harness
from tests.transport.relay import FrameRelay, Tamper, flip_in
from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster.local import wait_until
from zraft.errors import ZRaftError

pytestmark = pytest.mark.integration


@pytest.fixture
def attack(make_cluster) -> Iterator[tuple[Harness, int, list[FrameRelay], ConnectionPool]]:
    h = make_cluster(3)
    assert h.write(["before", 1]) == "ok"  # h.pool's connections exist before the attack
    victim = ConnectionPool(h.cluster.cookie.encode(), client_id="victim")
    relays: list[FrameRelay] = []
    try:
        yield h, h.leader_index(), relays, victim
    finally:
        victim.close()
        for relay in relays:
            relay.close()


def _relay(h: Harness, node: int, relays: list[FrameRelay], tamper: Tamper) -> str:
    """The peer id of ``node``'s peer, reached through a relay in front of that node."""
    relay = FrameRelay(("127.0.0.1", h.cluster.node(node).port), tamper, tampered=1,
                       later="refuse")  # no clean retry for the victim either
    relays.append(relay)
    return f"{h.cluster.peer_name}@{relay.address}"


def _after_the_attack(h: Harness, node: int, relay: FrameRelay) -> None:
    """The relayed connection was closed by the node, counted once as a bad MAC; the node
    and every other connection (h.pool's, opened before the attack) carry on."""
    assert relay.closed_by_target.wait(10), "the node kept the relayed connection open"
    transport = wait_until(lambda: (t := h.node_status(node)["transport"])["closed_bad_mac"]
                           and t, 10, "the bad MAC to be counted")
    assert transport["closed_bad_mac"] == 1
    assert transport["thread_restarts"] == 0 and transport["fatal"] is None
    assert h.cluster.node(node).alive()
    assert h.write(["after", 2]) == "ok"
    assert h.query("before") == 1 and h.query("after") == 2


def test_a_rewritten_client_write_is_refused_and_never_applied(attack) -> None:
    h, leader, relays, victim = attack

    def rewrite(_index: int, frame: bytes) -> bytes:
        return flip_in(frame, b"value-A") if b"value-A" in frame else frame

    peer = _relay(h, leader, relays, rewrite)
    with pytest.raises(ZRaftError) as failed:
        api.write(peer, ["mac-k", "value-A"], timeout=3.0, pool=victim)
    assert "closed the connection" in str(failed.value) or "reach" in str(failed.value)
    _after_the_attack(h, leader, relays[0])
    assert h.query("mac-k") not in ("value-@", "value-A")  # "A" ^ 1 == "@": never applied


def test_an_injected_copy_of_a_write_is_refused_and_what_follows_is_not_applied(attack) -> None:
    h, leader, relays, victim = attack
    seen: list[bytes] = []

    def inject(_index: int, frame: bytes) -> bytes:
        if b"mac-a" in frame:
            seen.append(frame)
        if b"mac-b" in frame and seen:
            return seen[0] + frame  # a copy of the first write, ahead of the second
        return frame

    peer = _relay(h, leader, relays, inject)
    assert api.write(peer, ["mac-a", 1], timeout=5.0, pool=victim)[0] == "ok"  # genuine
    with pytest.raises(ZRaftError):
        api.write(peer, ["mac-b", 2], timeout=3.0, pool=victim)
    assert seen, "the relay never saw the first write"
    _after_the_attack(h, leader, relays[0])
    assert h.query("mac-a") == 1
    assert h.query("mac-b") != 2  # behind the injected copy: never applied
