"""Protocol-aware recovery in the core: a peer whose log lost entries it may have
acknowledged (``HardState.recovering``) neither votes nor campaigns until it is whole again,
by a newer term's entry or by the leader's ``heal_to``; SPEC 11 item 9 is refused with a
SafetyAlarm; zraft_lib's request_timeout sends a silent follower back to probing."""

from __future__ import annotations

from core_harness import E, Net, flush, make_core, seeded_storage

from zraft.core.entries import HardState
from zraft.core.messages import (
    AppendEntries,
    AppendReply,
    Healed,
    InstallSnapshot,
    SafetyAlarm,
    VoteRequest,
)


def _damage(net: Net, peer: str, first_lost: int) -> None:
    """What the disk log does when its recovery finds a damaged tail: lose the entries and
    mark the peer recovering at its durable term; then the peer restarts."""
    st = net.storages[peer]
    st.lose_tail(first_lost)
    hs = st.hard_state
    st.set_hard_state(hs._replace(recovering=hs.term))
    net.restart(peer)


def _commit_on(net: Net, leader: str, follower: str, lagging: str, data: bytes) -> None:
    """Commit one entry that only ``leader`` and ``follower`` hold."""
    net.cut(leader, lagging)
    net.cores[leader].propose([data], 0)
    net.drive()
    net.spread_commit(leader)
    net.heal()


def test_a_recovering_peer_refuses_votes_and_prevotes():
    st = seeded_storage(["a", "b", "c"], term=3)
    st.set_hard_state(HardState(3, None, 3))
    b = make_core("b", st)
    for prevote in (True, False):
        b.step(VoteRequest(4, "a", "b", 1, 1, prevote))
        rd = flush(b)
        (reply,) = rd.persisted_messages
        assert not reply.granted
    assert b.status()["recovering"] == 3
    assert b.term == 4  # the term still moves on: only the vote is withheld


def test_a_recovering_peer_does_not_campaign_not_even_as_a_sole_voter():
    st = seeded_storage(["a", "b", "c"], term=2)
    st.set_hard_state(HardState(2, None, 2))
    b = make_core("b", st)
    for _ in range(100):
        b.tick()
    assert b.role == "follower"
    solo = seeded_storage(["a"], term=2)
    solo.set_hard_state(HardState(2, None, 2))
    a = make_core("a", solo)
    for _ in range(100):
        a.tick()
        while a.has_ready():
            flush(a)
    # the config it still has may be older than the one it lost (the entries that grew
    # the cluster): electing itself could lose committed entries (sim seed 14883)
    assert a.role == "follower"


def test_lost_committed_entry_survives_because_the_damaged_peer_does_not_vote():
    net = Net(["a", "b", "c"])
    net.elect("a")
    _commit_on(net, "a", "b", "c", b"precious")
    index = net.cores["a"].log.last_index()
    assert net.cores["a"].commit == index
    _damage(net, "b", index)  # b lost the entry it acknowledged
    assert net.cores["b"].recovering == net.cores["a"].term
    net.isolate("a")  # the only other holder is gone
    for _ in range(60):
        net.tick("c")
        net.tick("b")
    assert net.cores["c"].role != "leader"  # c lacks the entry: b must not elect it
    assert net.cores["b"].role != "leader"


def test_a_newer_terms_entry_heals():
    net = Net(["a", "b", "c"])
    net.elect("a")
    _commit_on(net, "a", "b", "c", b"x")
    _damage(net, "b", net.cores["a"].log.last_index())
    # a (which holds the entry) wins a new term with c's vote, then replicates to b
    net.cores["a"].campaign()
    net.drive()
    a = net.cores["a"]
    assert a.role == "leader"
    net.tick("a", 3)
    b = net.cores["b"]
    assert b.recovering == 0
    assert any(isinstance(e, Healed) for e in net.events["b"])
    assert b.log.last_index() == a.log.last_index()
    assert net.storages["b"].hard_state.recovering == 0  # durable


def test_same_term_leader_heals_with_heal_to_and_stops_trusting_stale_matches():
    net = Net(["a", "b", "c"])
    a = net.elect("a")
    _commit_on(net, "a", "b", "c", b"x")
    last = a.log.last_index()
    assert a.progress["b"].match == last
    _damage(net, "b", last)  # b restarts in a's term, missing its last entry
    b = net.cores["b"]
    assert b.recovering == a.term
    net.tick("a", 2)  # heartbeats: b's replies say it is recovering
    assert any(isinstance(m, AppendReply) and m.src == "b" and m.recovering for m in net.sent)
    assert any(isinstance(m, AppendEntries) and m.dst == "b" and m.heal_to >= last
               for m in net.sent)
    net.tick("a", 3)
    assert b.recovering == 0 and b.log.last_index() >= last
    assert a.progress["b"].heal_to == 0
    assert net.storages["b"].hard_state.recovering == 0


def test_heal_waits_until_the_entries_are_durable():
    net = Net(["a", "b", "c"])
    a = net.elect("a")
    _commit_on(net, "a", "b", "c", b"x")
    _damage(net, "b", a.log.last_index())
    net.auto_persist = False
    net.tick("a", 4)
    b = net.cores["b"]
    assert b.recovering  # its repair is not durable yet
    net.auto_persist = True
    net.release()
    net.drive()
    net.tick("a", 2)
    assert b.recovering == 0


def test_leader_lowers_a_stale_match_when_a_follower_says_it_is_recovering():
    net = Net(["a", "b", "c"])
    a = net.elect("a")
    a.propose([b"1", b"2"], 0)
    net.drive()
    last = a.log.last_index()
    assert a.progress["b"].match == last
    a.step(AppendReply(a.term, "b", "a", False, last, last - 2, 0, 0, True))
    pr = a.progress["b"]
    assert pr.match == last - 2 and pr.heal_to == last and pr.state == "probe"


def test_second_leader_in_a_term_raises_a_safety_alarm_instead_of_crashing():
    f = make_core("b", seeded_storage(["a", "b", "c"]))
    f.step(AppendEntries(2, "a", "b", 1, 1, [], 1, 1))
    flush(f)
    f.step(AppendEntries(2, "c", "b", 1, 1, [E(2, 2)], 1, 1))
    f.step(InstallSnapshot(2, "c", "b", seeded_storage(["a"]).snapshot, 1))
    rd = flush(f)
    alarms = [e for e in rd.events if isinstance(e, SafetyAlarm)]
    assert [(e.kind, e.src, e.term) for e in alarms] == [("second_leader", "c", 2)] * 2
    assert f.status()["safety_alarms"] == 2 and f.leader == "a"
    assert f.log.last_index() == 1  # the second leader's entry was not taken


def test_leader_refuses_an_append_of_its_own_term_with_an_alarm():
    net = Net(["a", "b", "c"])
    a = net.elect("a")
    a.step(AppendEntries(a.term, "c", "a", 1, 1, [], 1, 1))
    rd = flush(a)
    assert a.role == "leader" and a.safety_alarms == 1
    assert any(isinstance(e, SafetyAlarm) and e.src == "c" for e in rd.events)


def test_request_timeout_sends_a_silent_follower_back_to_probing():
    net = Net(["a", "b", "c"], request_timeout_ticks=6)
    a = net.elect("a")
    net.tick("a")
    assert a.progress["b"].state == "replicate"
    net.filter = lambda m: not (m.src == "b" or m.dst == "b")  # b goes silent
    a.propose([b"1"], 0)
    net.drive()
    assert a.progress["b"].inflight
    for _ in range(5):
        net.tick("a")
    assert a.progress["b"].state == "replicate"
    net.tick("a")
    assert a.progress["b"].state == "probe"


def test_messages_of_another_cluster_are_refused_with_an_alarm():
    b = make_core("b", seeded_storage(["a", "b", "c"]), cluster_id="blue")
    b.step(VoteRequest(9, "a", "b", 5, 5, False, "green"))
    b.step(AppendEntries(9, "a", "b", 1, 1, [E(2, 9)], 2, 1, 0, "green"))
    rd = flush(b)
    assert rd.persisted_messages == [] and b.term == 1 and b.log.last_index() == 1
    assert [e.kind for e in rd.events if isinstance(e, SafetyAlarm)] == ["foreign_cluster"] * 2
    assert b.status()["safety_alarms"] == 2
    b.step(AppendEntries(2, "a", "b", 1, 1, [E(2, 2)], 2, 1, 0, "blue"))
    rd = flush(b)
    (reply,) = rd.persisted_messages
    assert reply.success and reply.cluster == "blue"  # our own cluster: stamped and taken


def test_a_peer_without_a_cluster_id_joins_its_first_leaders_cluster():
    b = make_core("b", seeded_storage(["a", "b", "c"]))
    b.step(AppendEntries(2, "a", "b", 1, 1, [E(2, 2)], 2, 1, 0, "blue"))
    rd = flush(b)
    (reply,) = rd.persisted_messages
    assert reply.success and reply.cluster == "blue" and b.cluster == "blue"
    assert [e.cluster_id for e in rd.events if type(e).__name__ == "ClusterAdopted"] == ["blue"]
    b.step(AppendEntries(2, "a", "b", 2, 2, [], 2, 1, 0, "green"))  # from now on: checked
    assert b.safety_alarms == 1
