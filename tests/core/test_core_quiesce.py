"""Quiescence (roles/quiesce.py, docs/internals.md "Quiescence"): idle groups stop their
timers, wake on any input that matters, and failure signals keep them live."""

from __future__ import annotations

from core_harness import Net

from zraft.core.messages import AppendEntries, Quiesce, ReadState, VoteRequest


def quiet_net(**cfg) -> Net:
    cfg.setdefault("quiesce_ticks", 3)
    net = Net(["a", "b", "c"], **cfg)
    net.elect("a")
    net.cores["a"].propose([b"x"], 0)
    net.drive()
    net.tick(n=6)  # commit news, then idle ticks
    return net


def all_quiet(net: Net) -> bool:
    return all(c.quiesced for c in net.cores.values())


def test_an_idle_group_goes_quiet_and_sends_nothing_while_ticked():
    net = quiet_net()
    assert all_quiet(net)
    assert net.cores["a"].status()["quiesced"]
    sent = len(net.sent)
    net.tick(n=200)  # 10 election timeouts: no heartbeat, no election
    assert len(net.sent) == sent
    assert net.cores["a"].role == "leader" and net.cores["b"].leader == "a"


def test_without_quiesce_ticks_nothing_quiesces():
    net = quiet_net(quiesce_ticks=0)
    net.tick(n=50)
    assert not any(c.quiesced for c in net.cores.values())


def test_a_proposal_wakes_the_group_and_commits():
    net = quiet_net()
    a = net.cores["a"]
    a.propose([b"y"], 0)
    net.drive()
    assert not a.quiesced and not net.cores["b"].quiesced
    net.tick("a")
    assert net.data("b") == [b"x", b"y"]
    net.tick(n=6)
    assert all_quiet(net)  # and quiet again once idle


def test_a_read_on_a_quiesced_leader_takes_a_quorum_round():
    net = quiet_net()
    a = net.cores["a"]
    net.isolate("a")  # deposed meanwhile, say: it must not answer from its quiet state
    a.read("r1")
    net.drive()
    assert not a.quiesced
    assert not [r for r in net.reads["a"] if isinstance(r, ReadState)]
    net.heal()
    net.tick("a", n=2)  # the round repeats with the heartbeats
    assert [r.ctx for r in net.reads["a"] if isinstance(r, ReadState)] == ["r1"]


def test_a_failure_signal_about_the_leader_wakes_followers_who_elect_another():
    net = quiet_net()
    net.isolate("a")  # a's node crashed, as far as b and c can tell
    for p in ("b", "c"):
        net.cores[p].peer_unreachable("a")
        assert not net.cores[p].quiesced and net.cores[p].leader is None
    net.tick("b", n=10)  # within one election_ticks (10)
    net.tick("c", n=10)
    leader = net.leader()
    assert leader is not None and leader.id in ("b", "c")
    assert leader.term == 3  # one election, no split vote: each follower has its own slot


def test_a_signal_about_another_follower_leaves_a_follower_quiet():
    net = quiet_net()
    net.cores["b"].peer_unreachable("c")
    assert net.cores["b"].quiesced


def test_followers_ignoring_the_signal_stay_leaderless_forever():
    # the mutation the simulator's liveness check must catch: this is why the signal exists
    net = quiet_net(mutations=frozenset({"quiesce_ignore_failure"}))
    net.isolate("a")
    for p in ("b", "c"):
        net.cores[p].peer_unreachable("a")
    net.tick("b", n=200)
    net.tick("c", n=200)
    assert net.cores["b"].role == net.cores["c"].role == "follower"
    assert net.cores["b"].quiesced


def test_a_follower_that_missed_the_quiesce_wakes_the_leader_with_its_election():
    net = Net(["a", "b", "c"], quiesce_ticks=3)
    net.elect("a")
    net.filter = lambda m: not (isinstance(m, Quiesce) and m.dst == "c")
    net.tick(n=6)
    assert net.cores["a"].quiesced and net.cores["b"].quiesced
    assert not net.cores["c"].quiesced
    net.filter = None
    net.tick("c", n=30)  # c times out: its pre-vote wakes the leader, which heartbeats
    assert net.cores["a"].role == "leader" and net.cores["a"].term == 2
    assert net.cores["c"].leader == "a"


def test_a_restarted_follower_is_heartbeated_after_the_restart_signal():
    net = quiet_net()
    net.restart("c")
    assert not net.cores["c"].quiesced  # quiescence is volatile
    net.cores["a"].peer_restarted("c")
    net.drive()
    assert not net.cores["a"].quiesced
    assert net.cores["c"].leader == "a"


def test_any_message_from_another_peer_wakes_a_quiesced_follower():
    net = quiet_net()
    b = net.cores["b"]
    b.step(VoteRequest(1, "c", "b", 2, 1, True, b.cluster))
    assert not b.quiesced


def test_a_quiesce_from_a_stale_term_is_refused_and_a_lagging_follower_stays_awake():
    net = Net(["a", "b", "c"], quiesce_ticks=3)
    net.elect("a")
    c = net.cores["c"]
    c.step(Quiesce(0, "a", "c", 2, 2, 2, 1, c.cluster))  # an older term
    assert not c.quiesced
    # our log lacks what the leader says is committed: no quiescence, only the heartbeat
    c.step(Quiesce(c.term, "a", "c", 9, c.term, 9, 1, c.cluster))
    assert not c.quiesced


def test_the_leader_ignores_acknowledgements_of_its_quiesce():
    net = quiet_net()
    a = net.cores["a"]
    net.tick("a", n=3)
    assert a.quiesced
    # a heartbeat from elsewhere of our term would be a second leader: it wakes (and alarms)
    a.step(AppendEntries(a.term, "b", "a", 0, 0, [], 0, 0, 0, a.cluster))
    assert not a.quiesced


def test_a_quiesce_in_flight_from_a_dead_leader_cannot_put_its_followers_back_to_sleep():
    # found by the sweep (seed 817): the signal woke b, then a Quiesce a sent before dying
    # arrived; b slept again and nothing would ever wake it
    net = Net(["a", "b", "c"], quiesce_ticks=3)
    net.elect("a")
    b = net.cores["b"]
    stale = Quiesce(b.term, "a", "b", 2, b.term, 2, 1, b.cluster)
    b.peer_unreachable("a")
    b.step(stale)
    assert b.leader == "a" and not b.quiesced
    b.peer_reachable("a")  # a was only slow: its group may go quiet again
    b.step(stale)
    assert b.quiesced


def test_followers_woken_by_the_signal_at_once_do_not_split_the_vote():
    # the signal reaches every follower at the same moment: one shared random window split
    # the vote often (real nodes took 2.7-5.6 s instead of ~1 s to lead 20 groups again)
    splits = 0
    for seed in range(20):
        net = Net(["a", "b", "c", "d", "e"], seed=seed, quiesce_ticks=3)
        net.elect("a")
        net.tick(n=6)
        net.isolate("a")
        for p in "bcde":
            net.cores[p].peer_unreachable("a")
        for _ in range(10):  # one election_ticks, every follower ticking in step
            for p in "bcde":
                net.cores[p].tick()
            net.drive()
        leader = net.leader()
        if leader is None or leader.id == "a" or leader.term != 3:
            splits += 1
    assert splits == 0
