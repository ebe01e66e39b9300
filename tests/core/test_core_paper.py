"""One test per Raft paper rule, each in three parts: init, step, check (etcd style)."""

from __future__ import annotations

from core_harness import E, all_msgs, flush, make_core, seeded_storage

from zraft.core.entries import NOOP, HardState
from zraft.core.messages import AppendEntries, AppendReply, VoteReply, VoteRequest

PEERS = ["a", "b", "c"]


def core(peer="a", term=1, prevote=False, entries=(), **cfg):
    st = seeded_storage(PEERS, term)
    if entries:
        st.append(list(entries))
    c = make_core(peer, st, prevote=prevote, **cfg)
    return c


def elect(c):
    """Make core `c` leader of a 3-node cluster with votes from b."""
    c.campaign()
    flush(c)
    c.step(VoteReply(c.term, "b", c.id, True))
    assert c.role == "leader"
    return flush(c)


def test_init_state_from_storage():
    st = seeded_storage(PEERS, 3)
    st.set_hard_state(HardState(3, "b"))
    c = make_core("a", st)
    assert (c.role, c.term, c.vote, c.leader, c.commit) == ("follower", 3, "b", None, 0)
    assert c.log.last_index() == 1


def test_5_1_higher_term_makes_follower_and_resets_vote():
    c = core()
    elect(c)
    c.step(AppendEntries(9, "b", "a", 0, 0, [], 0, 1))
    assert (c.role, c.term, c.leader, c.vote) == ("follower", 9, "b", None)


def test_5_1_stale_term_append_is_rejected_with_own_term():
    c = core(term=5)
    c.step(AppendEntries(3, "b", "a", 0, 0, [], 0, 4))
    rd = flush(c)
    (reply,) = rd.persisted_messages
    assert isinstance(reply, AppendReply) and not reply.success and reply.term == 5
    assert c.term == 5 and c.leader is None


def test_5_2_election_timeout_starts_election():
    c = core()
    for _ in range(30):
        c.tick()
        if c.role == "candidate":
            break
    assert c.role == "candidate" and c.term == 2 and c.vote == "a"
    rd = flush(c)
    assert rd.hard_state == HardState(2, "a")
    reqs = rd.persisted_messages  # only after term+vote are durable
    assert {m.dst for m in reqs} == {"b", "c"} and not rd.messages
    assert all(isinstance(m, VoteRequest) and m.term == 2 and not m.prevote for m in reqs)


def test_5_2_timeouts_are_random_in_range_and_redrawn():
    seen = set()
    for seed in range(40):
        c = make_core("a", seeded_storage(PEERS), seed=seed, election_ticks=10)
        seen.add(c.timeout)
        first = c.timeout
        c._reset_election_timer()
        seen.add(c.timeout)
        assert 15 <= first < 25
    assert min(seen) >= 15 and max(seen) < 25 and len(seen) > 5


def test_5_2_candidate_wins_with_majority():
    c = core()
    c.campaign()
    flush(c)
    c.step(VoteReply(2, "b", "a", False))
    assert c.role == "candidate"
    c.step(VoteReply(2, "c", "a", True))
    assert c.role == "leader" and c.leader == "a"


def test_5_2_candidate_loses_with_majority_rejects():
    c = core()
    c.campaign()
    c.step(VoteReply(2, "b", "a", False))
    c.step(VoteReply(2, "c", "a", False))
    assert c.role == "follower" and c.term == 2


def test_5_2_candidate_yields_to_leader_of_same_term():
    c = core()
    c.campaign()
    c.step(AppendEntries(2, "b", "a", 1, 1, [], 0, 1))
    assert c.role == "follower" and c.leader == "b"


def test_5_2_one_vote_per_term_first_come():
    c = core("c")
    c.step(VoteRequest(2, "a", "c", 1, 1))
    c.step(VoteRequest(2, "b", "c", 1, 1))
    c.step(VoteRequest(2, "a", "c", 1, 1))  # a repeated request is granted again
    rd = flush(c)
    assert rd.hard_state == HardState(2, "a")
    granted = [(m.dst, m.granted) for m in rd.persisted_messages]
    assert granted == [("a", True), ("b", False), ("a", True)]


def test_5_4_1_voter_rejects_stale_log():
    c = core("c", entries=[E(2, 2)])
    c.step(VoteRequest(3, "a", "c", 5, 1))  # longer log, older last term
    c.step(VoteRequest(4, "b", "c", 1, 1))  # same last term would need index >= 2
    rd = flush(c)
    assert [m.granted for m in rd.persisted_messages] == [False, False]
    assert c.term == 4 and c.vote is None


def test_5_3_leader_appends_noop_and_replicates():
    c = core()
    rd = elect(c)
    assert [e.type for e in rd.entries] == [NOOP] and rd.entries[0].index == 2
    apps = [m for m in rd.messages if isinstance(m, AppendEntries)]
    assert {m.dst for m in apps} == {"b", "c"}
    assert all(m.prev_index == 1 and m.entries[0].type == NOOP for m in apps)


def test_5_3_leader_heartbeats_every_heartbeat_ticks():
    c = core(heartbeat_ticks=3)
    elect(c)
    for p in "bc":
        c.step(AppendReply(2, p, "a", True, 2, 0, 0, 1))
    assert not [m for m in all_msgs(flush(c)) if isinstance(m, AppendEntries)]
    c.tick()  # the commit of the noop is news: it goes out on the next tick, not at once
    news = [m for m in all_msgs(flush(c)) if isinstance(m, AppendEntries)]
    assert {m.dst for m in news} == {"b", "c"} and all(m.commit == 2 for m in news)
    c.tick()
    assert not [m for m in all_msgs(flush(c)) if isinstance(m, AppendEntries)]
    c.tick()
    beats = [m for m in flush(c).messages if isinstance(m, AppendEntries)]
    assert {m.dst for m in beats} == {"b", "c"} and all(not m.entries for m in beats)


def test_5_3_commit_on_majority_after_own_persist():
    c = core()
    elect(c)
    c.propose([b"v"], 0)
    rd = c.ready()  # entry handed out but not yet durable on the leader
    c.log.storage.append(rd.entries)
    c.step(AppendReply(2, "b", "a", True, 3, 0, 0, 1))
    assert c.commit == 2  # b has 3 but the leader's own copy is not durable: no majority
    c.persisted(rd.number)
    assert c.commit == 3
    assert [e.index for e in flush(c).committed] == [1, 2, 3]


def test_5_3_follower_commit_is_min_of_leader_commit_and_last_new():
    c = core("b")
    c.step(AppendEntries(1, "a", "b", 1, 1, [E(2, 1), E(3, 1)], 10, 1))
    assert c.commit == 3
    c.step(AppendEntries(1, "a", "b", 1, 1, [E(2, 1)], 10, 1))
    assert c.commit == 3  # never goes back, and the stale append changed nothing
    assert c.log.last_index() == 3


def test_5_3_follower_rejects_mismatch_with_hint():
    c = core("b", entries=[E(2, 1), E(3, 1)])
    c.step(AppendEntries(3, "a", "b", 5, 3, [], 0, 1))  # gap
    c.step(AppendEntries(3, "a", "b", 3, 2, [], 0, 1))  # term mismatch at 3
    rd = flush(c)
    r1, r2 = rd.persisted_messages
    assert (r1.success, r1.index, r1.hint_index, r1.hint_term) == (False, 5, 3, 1)
    assert (r2.success, r2.index, r2.hint_index, r2.hint_term) == (False, 3, 3, 1)


def test_5_3_follower_truncates_only_at_first_conflict():
    c = core("b", entries=[E(2, 1), E(3, 1), E(4, 1)])
    c.step(AppendEntries(2, "a", "b", 1, 1, [E(2, 1), E(3, 2)], 1, 1))
    assert [c.log.term(i) for i in (1, 2, 3)] == [1, 1, 2] and c.log.last_index() == 3
    rd = flush(c)
    assert rd.entries == [E(3, 2)]  # only the conflicting part goes to storage


def test_5_4_2_leader_commits_old_term_entries_only_through_current_term():
    # a has an entry of term 1 at index 2 (uncommitted), becomes leader in term 2
    c = core(entries=[E(2, 1)])
    elect(c)
    c.step(AppendReply(2, "b", "a", True, 2, 0, 0, 1))
    assert c.commit == 0  # index 2 is of term 1: not committed by counting
    c.step(AppendReply(2, "b", "a", True, 3, 0, 0, 1))
    assert c.commit == 3  # the NOOP of term 2 commits, and with it index 2


def test_5_5_leader_retries_after_reject():
    c = core()
    elect(c)
    c.step(AppendReply(2, "b", "a", False, 1, 0, 0, 1))
    rd = flush(c)
    (m,) = [m for m in rd.messages if m.dst == "b"]
    assert m.prev_index == 0 and [e.index for e in m.entries] == [1, 2]
