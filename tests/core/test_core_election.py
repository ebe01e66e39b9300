"""Election scenarios: PreVote, check-quorum, stickiness, step-down, blank and non-voters."""

from __future__ import annotations

from core_harness import Net, flush, make_core, seeded_storage

from zraft.core.entries import CONFIG, ClusterConfig, Entry, HardState
from zraft.core.messages import AppendEntries, AppendReply, RoleChanged, VoteReply, VoteRequest
from zraft.core.storage import MemoryStorage


def run_until_leader(net: Net, limit: int = 200):
    for _ in range(limit):
        net.tick()
        lead = net.leader()
        if lead is not None:
            return lead
    raise AssertionError("no leader")


def test_elects_exactly_one_leader_by_ticks_and_all_follow():
    net = Net(["a", "b", "c", "d", "e"])
    lead = run_until_leader(net)
    net.tick(n=5)
    assert [c.id for c in net.cores.values() if c.role == "leader"] == [lead.id]
    assert all(c.leader == lead.id and c.term == lead.term for c in net.cores.values())
    assert any(isinstance(e, RoleChanged) and e.role == "leader" for e in net.events[lead.id])


def test_prevote_does_not_bump_term_or_vote():
    c = make_core("a", seeded_storage(["a", "b", "c"]))
    c.campaign()
    assert c.role == "precandidate" and c.term == 1 and c.vote is None
    rd = flush(c)
    assert rd.hard_state is None  # nothing to persist for a pre-vote
    reqs = rd.persisted_messages
    assert {(m.dst, m.term, m.prevote) for m in reqs} == {("b", 2, True), ("c", 2, True)}
    voter = make_core("b", seeded_storage(["a", "b", "c"]))
    voter.step(reqs[0])
    vrd = flush(voter)
    (reply,) = vrd.persisted_messages
    assert reply.granted and reply.prevote and reply.term == 2
    assert voter.term == 1 and voter.vote is None and vrd.hard_state is None
    c.step(reply)
    assert c.role == "candidate" and c.term == 2 and c.vote == "a"


def test_prevote_rejected_with_higher_term_makes_follower():
    c = make_core("a", seeded_storage(["a", "b", "c"]))
    c.campaign()
    c.step(VoteReply(7, "b", "a", False, True))
    assert c.role == "follower" and c.term == 7


def test_partitioned_node_does_not_disrupt_with_prevote():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    term = lead.term
    net.isolate("c")
    net.tick(n=100)
    c = net.cores["c"]
    assert c.term == term  # pre-votes never succeeded, so no term inflation
    net.heal()
    net.tick(n=10)
    assert net.leader().id == "a" and net.cores["a"].term == term


def test_without_prevote_isolated_node_bumps_term_but_stickiness_protects_leader():
    net = Net(["a", "b", "c"], prevote=False)
    net.elect("a")
    net.isolate("c")
    net.tick(n=60)
    assert net.cores["c"].term > net.cores["a"].term
    net.heal()
    net.tick("a", 2)  # b hears from the leader
    b_term = net.cores["b"].term
    net.cores["c"].campaign()
    reqs = [m for m in net.cores["c"].ready().persisted_messages if m.dst == "b"]
    net.cores["b"].step(reqs[0])
    # b hears from a live leader: the higher-term request is ignored, no term change
    assert net.cores["b"].term == b_term and net.cores["b"].leader == "a"
    assert not net.cores["b"].ready().persisted_messages


def test_sticky_follower_ignores_vote_requests_within_min_timeout():
    c = make_core("b", seeded_storage(["a", "b", "c"]))
    c.step(AppendEntries(2, "a", "b", 1, 1, [], 0, 1))
    flush(c)
    c.step(VoteRequest(3, "c", "b", 5, 5))
    c.step(VoteRequest(3, "c", "b", 5, 5, prevote=True))
    rd = flush(c)
    assert c.term == 2 and not rd.messages and not rd.persisted_messages
    for _ in range(15):  # min election timeout = 1.5 x 10
        c.tick()
    c.step(VoteRequest(3, "c", "b", 5, 5))
    assert c.term == 3 and c.vote == "c"


def test_leader_ignores_vote_requests_even_with_higher_term():
    c = make_core("a", seeded_storage(["a"]))
    c.campaign()
    flush(c)  # our own vote counts once durable
    assert c.role == "leader"
    c.step(VoteRequest(99, "b", "a", 100, 99))
    c.step(VoteRequest(99, "b", "a", 100, 99, prevote=True))
    assert c.role == "leader" and c.term == 2


def test_leader_steps_down_on_higher_term_append_reply():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    lead.step(AppendReply(lead.term + 3, "b", "a", False, 0, 0, 0, 0))
    assert lead.role == "follower" and lead.term == 5


def test_leader_steps_down_on_higher_term_vote_reply_and_append():
    c = make_core("a", seeded_storage(["a", "b", "c"]), prevote=False)
    c.campaign()
    flush(c)  # our own vote counts once durable
    c.step(VoteReply(2, "b", "a", True))
    assert c.role == "leader"
    c.step(VoteReply(4, "c", "a", False))
    assert c.role == "follower" and c.term == 4
    c2 = make_core("a", seeded_storage(["a", "b", "c"]), prevote=False)
    c2.campaign()
    flush(c2)  # our own vote counts once durable
    c2.step(VoteReply(2, "b", "a", True))
    c2.step(AppendEntries(3, "c", "a", 0, 0, [], 0, 1))
    assert c2.role == "follower" and c2.leader == "c"


def test_stale_leader_learns_new_term_from_follower_reply():
    net = Net(["a", "b", "c"])
    net.elect("a")
    net.isolate("a")
    net.tick(n=40)
    b = net.cores["b"]
    assert b.term > 2 and net.leader().id != "a"
    b.step(AppendEntries(2, "a", "b", 0, 0, [], 0, 1))
    rd = flush(b)
    (r,) = [m for m in rd.persisted_messages if m.dst == "a"]
    assert not r.success and r.term == b.term > 2


def test_check_quorum_leader_steps_down_when_partitioned():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    net.isolate("a")
    net.tick("a", 25)
    assert lead.role == "follower"


def test_without_check_quorum_partitioned_leader_stays():
    net = Net(["a", "b", "c"], check_quorum=False)
    lead = net.elect("a")
    net.isolate("a")
    net.tick("a", 50)
    assert lead.role == "leader"
    net.tick(n=60)  # b, c elect someone else
    net.heal()
    net.tick(n=4)
    assert lead.role == "follower" and lead.term > 2


def test_blank_node_never_campaigns():
    c = make_core("z", MemoryStorage())
    for _ in range(200):
        c.tick()
    assert c.role == "follower" and c.term == 0
    assert not c.ready().messages and not c.ready().persisted_messages


def test_node_not_in_its_committed_latest_config_never_campaigns():
    c = make_core("z", MemoryStorage())
    cfg_entry = Entry(1, 1, CONFIG, ClusterConfig.stable(["a", "b"]), 0)
    c.step(AppendEntries(1, "a", "z", 0, 0, [cfg_entry], 1, 1))  # a learner, say
    flush(c)
    assert c.commit == 1
    for _ in range(200):
        c.tick()
    rd = c.ready()
    assert c.role == "follower" and not rd.messages and not rd.persisted_messages


def test_excluded_node_campaigns_while_its_latest_config_is_uncommitted():
    # thesis 4.2.2: a leader removing itself that lost leadership before C_new committed
    # must still be electable, or nobody may have an up-to-date enough log
    st = seeded_storage(["a", "b"])
    st.append([Entry(2, 1, CONFIG, ClusterConfig.joint(["a", "b"], ["b"]), 0),
               Entry(3, 1, CONFIG, ClusterConfig.stable(["b"]), 0)])
    c = make_core("a", st, prevote=False)
    c.campaign()
    assert c.role == "candidate"
    (req,) = flush(c).persisted_messages
    assert req.dst == "b"  # asks the members of its latest config only
    c.step(VoteReply(c.term, "b", "a", True))
    assert c.role == "leader"  # b's vote alone is a majority of {b}; a's does not count


def test_bootstrap_single_node_leads_at_once_and_commits_noop():
    # no election timeout: creating a group is fast (issue 15); its term and vote must be
    # durable before it leads (the first Ready carries them with the config entry)
    st = MemoryStorage()
    c = make_core("s", st)
    c.bootstrap(1000)
    rd = c.ready()
    assert rd.hard_state.term == 2 and rd.hard_state.vote == "s"
    assert rd.entries[0].term == 1 and rd.entries[0].data == ClusterConfig.stable(["s"])
    assert c.role == "candidate"  # not before the vote is durable
    st.set_hard_state(rd.hard_state)
    st.append(rd.entries)
    c.persisted(rd.number)
    c.advance(rd)
    assert c.role == "leader"  # no tick happened
    while c.has_ready():
        flush(c)
    assert c.commit == 2 and c.term == 2


def test_candidate_vote_requests_wait_for_durable_hard_state():
    c = make_core("a", seeded_storage(["a", "b", "c"]), prevote=False)
    c.campaign()
    rd = c.ready()
    assert rd.hard_state is not None and not rd.messages
    assert len(rd.persisted_messages) == 2


def test_vote_reply_from_previous_term_is_ignored():
    c = make_core("a", seeded_storage(["a", "b", "c"]), prevote=False)
    c.campaign()
    c.campaign()  # term 3 now
    flush(c)  # our own vote counts once durable
    c.step(VoteReply(2, "b", "a", True))
    assert c.role == "candidate"
    c.step(VoteReply(3, "b", "a", True))
    assert c.role == "leader"


def test_many_cores_side_by_side_are_independent():
    nets = [Net(["a", "b", "c"], seed=s) for s in range(3)]
    leaders = [run_until_leader(n) for n in nets]
    for n, lead in zip(nets, leaders, strict=True):
        assert sum(c.role == "leader" for c in n.cores.values()) == 1
        assert lead.term >= 2


def test_single_voter_leads_only_after_its_term_and_vote_are_durable():
    """core-bugs.md #4: a lone voter used to lead at once, before HardState(term, vote)
    was durable; after a crash it could lead the same term again with another log."""
    st = seeded_storage(["a"])
    c = make_core("a", st)
    c.campaign()
    assert c.role == "candidate" and c.term == 2
    rd = c.ready()
    assert rd.hard_state == HardState(2, "a") and not rd.entries
    assert c.role == "candidate"  # handed out, not durable yet
    # crash here: the durable state is still term 1, and nothing was led in term 2
    again = make_core("a", st)
    assert again.term == 1 and again.role == "follower"
    st.set_hard_state(rd.hard_state)
    c.persisted(rd.number)
    assert c.role == "leader" and c.term == 2
    assert [e.index for e in c.ready().entries] == [2]  # the NOOP comes only now


def test_candidate_counts_own_vote_only_after_persist_in_multi_voter_cluster():
    c = make_core("a", seeded_storage(["a", "b", "c"]), prevote=False)
    c.campaign()
    c.step(VoteReply(2, "b", "a", True))
    assert c.role == "candidate"  # b + (not yet durable) a
    flush(c)
    assert c.role == "leader"
