"""The light-session ring (zraft_session_obj) with bug 21 fixed: the leader is the ring head."""

from __future__ import annotations

import pytest

from zraft.client.light_session import LightSession, NoLeaderYet, RingCell
from zraft.errors import AllFailed, NoPeers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ids(*names: int) -> list[str]:
    return [f"p{n}@h:1" for n in names]


def ring(peers: list[str], clock: Clock, ft: float = 1.0, et: float = 0.5) -> LightSession:
    return LightSession.new(peers, fail_timeout=ft, election_timeout=et, clock=clock)


def test_spec_scenario_set_leader_3_fail_walks_the_ring() -> None:
    clock = Clock()
    s = ring(ids(1, 2, 3, 4, 5), clock).set_leader("p3@h:1")
    assert s.leader == "p3@h:1"
    walked = []
    for _ in range(4):
        s = s.fail()
        walked.append(s.leader)
    assert walked == ids(4, 5, 1, 2)
    with pytest.raises(AllFailed):
        s.fail()
    assert s.reset().leader == "p1@h:1"


def test_leader_is_the_first_given_and_the_head_even_if_unsorted() -> None:
    clock = Clock()
    s = ring(ids(3, 1, 2), clock)
    assert s.leader == "p3@h:1"
    assert s.ring == tuple(ids(3, 1, 2)[:1] + ids(1, 2))
    # fail marks the leader (the peer requests went to), not the smallest id
    s2 = s.fail()
    assert s2.leader == "p1@h:1"
    assert s2.ring[-1] == "p3@h:1"


def test_failed_peers_come_back_after_fail_timeout() -> None:
    clock = Clock()
    s = ring(ids(1, 2), clock, ft=1.0)
    s = s.fail()  # p1 failed
    assert s.leader == "p2@h:1"
    clock.now += 0.5
    with pytest.raises(AllFailed):
        s.fail()  # p2 failed, p1 still hidden
    clock.now += 0.6  # p1's mark is 1.1 s old
    assert s.fail().leader == "p1@h:1"


def test_not_leader_marks_give_no_leader_yet_then_expire() -> None:
    clock = Clock()
    s = ring(ids(1, 2), clock, et=0.5)
    s = s.next()
    assert s.leader == "p2@h:1"
    with pytest.raises(NoLeaderYet):
        s.next()
    clock.now += 0.6
    assert s.next().leader == "p1@h:1"


def test_change_leader_rotates_and_inserts_unknown_peers() -> None:
    clock = Clock()
    s = ring(ids(1, 2, 3), clock)
    s2 = s.change_leader("p3@h:1")
    assert s2.leader == "p3@h:1"
    assert s2.ring == tuple(ids(3, 1, 2))
    s3 = s2.change_leader("p9@h:1")
    assert s3.leader == "p9@h:1" and "p9@h:1" in s3.peers
    # each previous head (p1, then p3) was marked not-leader: with p9 failing, p2 is next
    assert s3.fail().leader == "p2@h:1"


def test_change_leader_to_the_head_keeps_it() -> None:
    s = ring(ids(1, 2), Clock())
    assert s.change_leader("p1@h:1").leader == "p1@h:1"


def test_change_leader_to_a_recently_failed_peer_skips_it() -> None:
    clock = Clock()
    s = ring(ids(1, 2, 3), clock).set_leader("p2@h:1").fail()  # p2 failed, head p3
    s = s.change_leader("p2@h:1")  # p3 says p2 leads, but p2 just failed
    assert s.leader == "p1@h:1"


def test_objects_are_immutable() -> None:
    s = ring(ids(1, 2), Clock())
    s.fail()
    assert s.leader == "p1@h:1"


def test_no_peers() -> None:
    with pytest.raises(NoPeers):
        LightSession.new([])


def test_default_timeouts_follow_zraft_lib() -> None:
    s = LightSession.new(ids(1))
    assert s.election_timeout == 0.5 and s.fail_timeout == 1.0


def test_ring_cell_moves_once_for_many_reports_from_one_peer() -> None:
    cell = RingCell(ring(ids(1, 2, 3), Clock()))
    assert cell.update("p1@h:1", LightSession.fail) == "p2@h:1"
    # a second, stale report about p1 does not move the ring again
    assert cell.update("p1@h:1", LightSession.fail) == "p2@h:1"
    assert cell.session.leader == "p2@h:1"


def test_ring_cell_leaves_the_ring_unchanged_on_all_failed() -> None:
    cell = RingCell(ring(ids(1), Clock()))
    with pytest.raises(AllFailed):
        cell.update("p1@h:1", LightSession.fail)
    assert cell.session.leader == "p1@h:1"
