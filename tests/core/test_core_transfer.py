"""Leadership transfer (Raft thesis 3.10): one test per rule of zraft/core/roles/transfer.py."""

from __future__ import annotations

import pytest
from core_harness import Net

from zraft.core.errors import NotLeader, TransferInProgress
from zraft.core.messages import (
    AppendEntries,
    ConfigChangeResult,
    TimeoutNow,
    TransferResult,
    VoteRequest,
)


def results(net: Net, peer: str) -> list[TransferResult]:
    return [e for e in net.events[peer] if isinstance(e, TransferResult)]


def formed(peers=("a", "b", "c"), **cfg) -> Net:
    net = Net(list(peers), **cfg)
    net.elect("a")
    net.cores["a"].propose([b"x"], 0)
    net.drive()
    net.tick("a")
    return net


def test_transfer_to_a_caught_up_voter_hands_over_without_prevote_or_stickiness():
    net = formed()
    old_term = net.cores["a"].term
    seen: list = []
    net.filter = lambda m: seen.append(m) or True
    net.cores["a"].transfer_leader("b", "ctx")
    net.drive()
    b = net.cores["b"]
    assert b.role == "leader" and b.term == old_term + 1
    assert net.cores["a"].role == "follower" and net.cores["a"].leader == "b"
    # no pre-vote, and the votes carried the transfer flag (c was inside a's lease)
    votes = [m for m in seen if isinstance(m, VoteRequest)]
    assert votes and all(m.transfer and not m.prevote for m in votes)
    assert results(net, "a") == [TransferResult("ctx", None, "b", "b")]


def test_transfer_to_none_picks_the_most_up_to_date_voter():
    net = formed()
    net.cut("a", "c")  # c falls behind
    net.cores["a"].propose([b"y"], 0)
    net.drive()
    net.heal()
    net.cores["a"].transfer_leader(None, 1)
    net.drive()
    assert net.leader().id == "b"
    assert results(net, "a")[-1].error is None and results(net, "a")[-1].target == "b"


def test_leader_takes_no_proposal_and_no_config_change_while_transferring():
    net = formed()
    a = net.cores["a"]
    net.cut("a", "b")  # b cannot catch up: the transfer stays pending
    a.transfer_leader("b", 1)
    with pytest.raises(TransferInProgress) as err:
        a.propose([b"z"], 0)
    assert isinstance(err.value, NotLeader) and err.value.target == "b"
    a.change_config(["a", "b"], a.status()["config_index"], "cc", 10)
    net.drive()
    assert [e.error for e in net.events["a"] if isinstance(e, ConfigChangeResult)] == ["retry"]
    assert a.status()["transfer"] == "b"


def test_lagging_target_is_caught_up_before_timeout_now():
    net = formed()
    a = net.cores["a"]
    net.cut("a", "b")
    for i in range(5):
        a.propose([b"v%d" % i], 0)
    net.drive()
    sent: list = []
    net.filter = lambda m: sent.append(m) or True
    a.transfer_leader("b", 1)
    net.drive()
    assert not any(isinstance(m, TimeoutNow) for m in sent)  # b holds nothing new yet
    net.heal()
    net.tick("a", n=2)  # heartbeats find b; appends catch it up; then TimeoutNow
    timeout_nows = [m for m in sent if isinstance(m, TimeoutNow)]
    assert timeout_nows and timeout_nows[0].last_index == a.log.last_index() - 1  # + b's noop
    assert net.leader().id == "b"
    assert [e.data for e in net.applied["b"] if e.type == 2][-5:] == [b"v%d" % i
                                                                      for i in range(5)]


def test_transfer_abandoned_after_the_timeout_resumes_proposals():
    net = formed()
    a = net.cores["a"]
    net.isolate("b")
    a.transfer_leader("b", 1, timeout_ticks=4)
    net.tick("a", n=3)
    assert a.transfer is not None
    net.tick("a")
    assert a.transfer is None and a.role == "leader"
    assert results(net, "a") == [TransferResult(1, "timeout", "a", "b")]
    a.propose([b"again"], 0)  # proposals are taken again


def test_refusals_not_leader_unknown_peer_in_progress_no_target_and_self():
    net = formed()
    net.cores["b"].transfer_leader("c", 1)
    a = net.cores["a"]
    a.transfer_leader("zz", 2)
    a.transfer_leader("a", 3)
    net.cut("a", "b")
    a.transfer_leader("b", 4)
    a.transfer_leader("c", 5)
    net.drive()
    assert [(r.ctx, r.error) for r in results(net, "b")] == [(1, "not_leader")]
    assert [(r.ctx, r.error) for r in results(net, "a")] == [
        (2, "unknown_peer"), (3, None), (5, "transfer_in_progress")]
    solo = Net(["s"])
    solo.elect("s")
    solo.cores["s"].transfer_leader(None, 9)
    solo.drive()
    assert [(r.ctx, r.error) for r in results(solo, "s")] == [(9, "no_target")]


def test_timeout_now_ignored_when_the_target_lacks_the_named_entry_or_it_is_not_from_leader():
    net = formed()
    b = net.cores["b"]
    term, last = b.term, b.log.last_index()
    b.step(TimeoutNow(term, "a", "b", last + 5, term, b.cluster))  # stale/forged: b lacks it
    b.step(TimeoutNow(term, "c", "b", last, term, b.cluster))  # not our leader
    assert b.role == "follower" and b.term == term
    b.step(TimeoutNow(term, "a", "b", last, b.log.last_term(), b.cluster))
    assert b.role == "candidate" and b.term == term + 1


def test_a_transfer_vote_still_needs_an_up_to_date_log():
    net = formed()
    c = net.cores["c"]
    stale = VoteRequest(c.term + 1, "b", "c", 0, 0, False, c.cluster, True)
    c.step(stale)
    net.drive()
    assert c.vote is None  # stickiness bypassed (term moved), but the log check refused it


def test_without_transfer_flag_a_vote_inside_the_lease_is_ignored():
    net = formed()
    c = net.cores["c"]
    term = c.term
    b = net.cores["b"]
    c.step(VoteRequest(term + 1, "b", "c", b.log.last_index(), b.log.last_term(), False,
                       c.cluster))
    assert c.term == term  # sticky: a live leader was heard from


def test_old_leader_reports_other_leader_when_someone_else_wins():
    net = formed()
    a = net.cores["a"]
    net.cut("a", "b")
    a.transfer_leader("b", 1, timeout_ticks=100)
    net.drive()
    # c won a later term meanwhile: its first append reaches a
    a.step(AppendEntries(a.term + 1, "c", "a", a.log.last_index(), a.log.last_term(), [], 0,
                         0, 0, a.cluster))
    net.drive()
    assert a.role == "follower" and a.leader == "c"
    assert [(r.error, r.leader) for r in results(net, "a")] == [("other_leader", "c")]


def test_duplicate_timeout_now_after_the_election_is_harmless():
    net = formed()
    kept: list = []
    net.filter = lambda m: (kept.append(m) if isinstance(m, TimeoutNow) else None) or True
    net.cores["a"].transfer_leader("c", 1)
    net.drive()
    assert net.leader().id == "c"
    term = net.cores["c"].term
    for m in kept:
        net.cores["c"].step(m)
    net.drive()
    assert net.leader().id == "c" and net.cores["c"].term == term


def test_appends_from_the_new_leader_end_the_old_leaders_transfer():
    net = formed()
    net.cores["a"].transfer_leader("b", 1)
    net.drive()
    assert any(isinstance(m, AppendEntries) for m in net.sent if m.src == "b")
    assert results(net, "a")[0].error is None


def test_old_leader_waits_an_election_timeout_more_for_the_new_leaders_first_append():
    net = formed()
    a = net.cores["a"]
    net.filter = lambda m: not (isinstance(m, AppendEntries) and m.src == "b" and m.dst == "a")
    a.transfer_leader("b", 1, timeout_ticks=2)
    net.drive()
    assert a.role == "follower" and net.cores["b"].role == "leader"
    net.tick("a", n=3)  # past the caller's 2 ticks: still waiting to hear who leads
    assert results(net, "a") == []
    net.filter = None
    net.tick("b", n=2)
    assert results(net, "a") == [TransferResult(1, None, "b", "b")]
