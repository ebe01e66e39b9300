"""Membership: staging learners, joint consensus, leader removal, removed peers stop."""

from __future__ import annotations

from core_harness import E, Net, flush, make_core, seeded_storage

from zraft.core.entries import CONFIG, ClusterConfig, Entry
from zraft.core.messages import (
    AppendEntries,
    ConfigChangeResult,
    Removed,
    VoteReply,
    VoteRequest,
)


def results(net, peer):
    return [e for e in net.events[peer] if isinstance(e, ConfigChangeResult)]


def configs_in_log(core):
    return [e.data for e in core.log.slice(1, core.log.last_index() + 1, 1 << 30)
            if e.type == CONFIG]


def test_add_member_goes_through_staging_joint_and_final():
    net = Net(["a"])
    lead = net.elect("a")
    lead.propose([b"x"] * 5, 0)
    net.drive()
    b = net.add("b")
    lead.change_config(["a", "b"], 1, "ctx", 100)
    # staging: b is a learner, no CONFIG appended yet until it catches up
    assert lead.progress["b"].learner
    net.drive()
    (res,) = results(net, "a")
    assert res.error is None and res.config == ClusterConfig.stable(["a", "b"])
    assert configs_in_log(lead)[1:] == [
        ClusterConfig.joint(["a"], ["a", "b"]), ClusterConfig.stable(["a", "b"])
    ]
    assert res.config_index == lead.log.config()[0] <= lead.commit
    assert not lead.progress["b"].learner
    net.drive()
    assert b.log.config()[1] == ClusterConfig.stable(["a", "b"])
    assert net.data("b") == [b"x"] * 5


def test_learner_is_not_counted_for_commit():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    net.add("d")
    net.cut("a", "b")
    net.cut("a", "c")
    lead.propose([b"p"], 0)  # staging target stays at the current commit
    lead.change_config(["a", "b", "c", "d"], 1, "ctx", 1000)
    assert lead.progress["d"].learner
    net.drive()
    net.tick("a", 2)
    # d has everything, but it is not a voter: a + d make no quorum of {a, b, c}
    assert lead.progress["d"].match == lead.log.last_index()
    assert lead.commit < lead.log.last_index()


def test_staging_timeout_reports_timeout_and_drops_learner():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    net.add("d")
    net.isolate("d")
    lead.change_config(["a", "b", "c", "d"], 1, "ctx", 10)
    net.tick("a", 10)
    assert [r.error for r in results(net, "a")] == ["timeout"]
    assert "d" not in lead.progress and lead.change is None
    assert lead.log.config()[1] == ClusterConfig.stable(["a", "b", "c"])


def test_change_config_errors_in_zraft_lib_order():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    net.spread_commit("a")
    lead.change_config(["a", "b"], 99, "stale", 100)  # newer_exists
    net.cores["b"].change_config(["a", "b"], 1, "follower", 100)  # not_leader
    lead.change_config(["a", "b", "c"], 1, "same", 100)  # no change: ok at once
    lead.change_config(["a", "b"], 1, "first", 100)
    lead.change_config(["a"], 1, "second", 100)  # process_prev_change (joint not yet)
    net.drive()
    got = [(r.ctx, r.error) for r in results(net, "a")]
    assert got == [("stale", "newer_exists"), ("same", None), ("second", "not_stable"),
                   ("first", None)]
    assert [(r.ctx, r.error) for r in results(net, "b")] == [("follower", "not_leader")]
    idx, _cfg = lead.log.config()
    lead.change_config(["a"], idx - 1, "old", 100)
    net.drive()
    assert results(net, "a")[-1].error == "newer_exists"
    # a change still staging blocks the next one
    net.add("z")
    net.isolate("z")
    lead.change_config(["a", "b", "z"], idx, "stage", 100)
    lead.change_config(["a"], idx, "blocked", 100)
    net.drive()
    assert results(net, "a")[-1][:2] == ("blocked", "process_prev_change")


def test_not_stable_during_joint():
    c = make_core("a", seeded_storage(["a", "b", "c"]))
    c.step(AppendEntries(1, "b", "a", 1, 1,
                         [Entry(2, 1, CONFIG, ClusterConfig.joint("abc", "ab"), 0)], 1, 1))
    c.change_config(["a"], 2, "x", 10)
    (ev,) = [e for e in flush(c).events if isinstance(e, ConfigChangeResult)]
    assert ev.error == "not_stable"


def test_remove_follower_it_learns_and_emits_removed():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    lead.change_config(["a", "b"], 1, "rm", 100)
    net.drive()
    net.tick(n=10)
    assert results(net, "a")[0].error is None
    assert [e for e in net.events["c"] if isinstance(e, Removed)]
    c = net.cores["c"]
    assert c.removed and "c" not in lead.progress
    for _ in range(100):
        c.tick()
    assert c.role == "follower" and not c.promotable()


def test_remove_leader_steps_down_and_cluster_continues():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    lead.change_config(["b", "c"], 1, "rm-leader", 100)
    net.drive()
    assert results(net, "a")[0].error is None
    assert lead.role == "follower"
    assert [e for e in net.events["a"] if isinstance(e, Removed)]
    net.tick(n=60)
    new = net.leader()
    assert new is not None and new.id in "bc"
    new.propose([b"after"], 0)
    net.drive()
    net.spread_commit(new.id)
    assert net.data("b")[-1] == b"after" and net.data("c")[-1] == b"after"
    assert lead.role == "follower" and not lead.promotable()


def test_joint_config_needs_both_majorities():
    # log: joint {a,b,c} -> {a,d,e}; a is leader; only b, c acknowledge
    st = seeded_storage(["a", "b", "c"])
    joint = ClusterConfig.joint(["a", "b", "c"], ["a", "d", "e"])
    st.append([Entry(2, 1, CONFIG, joint, 0)])
    c = make_core("a", st, prevote=False)
    c.campaign()
    flush(c)  # our own vote counts once durable
    for p in "bc":
        c.step(VoteReply(2, p, "a", True))
    assert c.role == "candidate"  # b, c make only the old majority
    c.step(VoteReply(2, "d", "a", True))
    assert c.role == "leader"
    flush(c)
    from zraft.core.messages import AppendReply

    for p in "bc":
        c.step(AppendReply(2, p, "a", True, 3, 0, 0, 1))
    assert c.commit == 0
    c.step(AppendReply(2, "e", "a", True, 3, 0, 0, 1))
    assert c.commit == 3
    # the joint entry is committed: the leader appends the stable new config
    assert c.log.config()[1] == ClusterConfig.stable(["a", "d", "e"])


def test_follower_config_rolls_back_when_config_entry_truncated():
    f = make_core("b", seeded_storage(["a", "b", "c"]))
    joint = ClusterConfig.joint(["a", "b", "c"], ["a", "b"])
    f.step(AppendEntries(1, "a", "b", 1, 1, [Entry(2, 1, CONFIG, joint, 0)], 1, 1))
    assert f.log.config()[1] == joint
    f.step(AppendEntries(2, "c", "b", 1, 1, [E(2, 2)], 1, 1))
    assert f.log.config() == (1, ClusterConfig.stable(["a", "b", "c"]))


def test_removed_candidate_is_told_to_stop():
    voter = make_core("a", seeded_storage(["a", "b", "c"]))
    st = seeded_storage(["a", "b", "c"])
    final = ClusterConfig.stable(["a", "b"])
    voter.step(AppendEntries(1, "b", "a", 1, 1, [
        Entry(2, 1, CONFIG, ClusterConfig.joint("abc", "ab"), 0),
        Entry(3, 1, CONFIG, final, 0)], 3, 1))
    flush(voter)
    for _ in range(20):
        voter.tick()
    c = make_core("c", st, prevote=False)
    c.campaign()
    req = next(m for m in flush(c).persisted_messages if m.dst == "a")
    voter.step(VoteRequest(req.term + 5, "c", "a", req.last_index, req.last_term))
    rd = flush(voter)
    (reply,) = rd.persisted_messages
    assert reply.removed and not reply.granted and voter.term == 1  # no term disruption
    c.step(reply)
    assert c.removed and c.role == "follower"
    assert [e for e in flush(c).events if isinstance(e, Removed)]
    for _ in range(100):
        c.tick()
    assert not c.ready().persisted_messages


def test_removed_reply_from_non_member_is_ignored():
    c = make_core("c", seeded_storage(["a", "b", "c"]))
    c.campaign()
    c.step(VoteReply(1, "zz", "c", False, True, True))
    assert not c.removed


def test_new_leader_finishes_committed_joint_config():
    net = Net(["a", "b", "c", "d", "e"])
    lead = net.elect("a")
    net.filter = lambda m: not (
        isinstance(m, AppendEntries) and any(
            e.type == CONFIG and not e.data.new for e in m.entries))
    lead.change_config(["a", "b", "c", "d"], 1, "x", 100)
    net.drive()
    assert lead.change.phase == "final"
    net.isolate("a")
    net.filter = None
    net.tick(n=80)
    new = net.leader()
    assert new.id in "bcd"
    net.drive()
    assert new.log.config()[1] == ClusterConfig.stable(["a", "b", "c", "d"])
    assert new.commit >= new.log.config()[0]
    assert [r.error for r in results(net, "a")] == ["leader_changed"]


def test_leader_losing_power_with_an_unreplicated_joint_entry_recovers():
    """core-bugs.md #3 (seed 36): {n1} -> {n1..n5}; the joint entry reached only n1, which
    then lost leadership. n2..n5 are no voters in their own config ({n1}) so they never
    campaign, but they must still grant n1 the (pre)votes it needs for the new half."""
    peers = ["n1", "n2", "n3", "n4", "n5"]
    net = Net(["n1"])
    lead = net.elect("n1")
    for p in peers[1:]:
        net.add(p)
    net.filter = lambda m: not (
        isinstance(m, AppendEntries)
        and any(e.type == CONFIG and e.data.is_joint for e in m.entries))
    lead.change_config(peers, 1, "grow", 100)
    net.drive()
    assert lead.log.config()[1].is_joint
    assert all(net.cores[p].log.config()[1] == ClusterConfig.stable(["n1"]) for p in peers[1:])
    net.isolate("n1")
    net.tick(n=40)
    assert lead.role != "leader"  # check-quorum: the new half is unreachable
    net.heal()
    net.filter = None
    net.tick(n=120)
    new = net.leader()
    assert new is not None and new.id == "n1"
    assert all(net.cores[p].log.config()[1] == ClusterConfig.stable(peers) for p in peers)
    assert all(net.cores[p].commit >= new.log.config()[0] for p in peers)


def test_member_removed_inside_an_installed_snapshot_learns_it_and_stops():
    # c was a voter of {a,b,c}; while it was away, {a,b} committed and the log was
    # compacted, so c only ever sees the snapshot: no config entry that still had it.
    from zraft.core.entries import SnapshotMeta
    from zraft.core.messages import InstallSnapshot

    c = make_core("c", seeded_storage(["a", "b", "c"]))
    c.step(InstallSnapshot(2, "a", "c", SnapshotMeta(50, 2, 40, ClusterConfig.stable("ab")), 1))
    rd = flush(c)
    assert rd.snapshot is not None
    assert c.removed and [e for e in rd.events if isinstance(e, Removed)]
    for _ in range(100):
        c.tick()
    assert not c.promotable() and not c.ready().persisted_messages


def test_new_member_catching_up_by_snapshot_is_not_taken_for_removed():
    from zraft.core.entries import SnapshotMeta
    from zraft.core.messages import InstallSnapshot
    from zraft.core.storage import MemoryStorage

    d = make_core("d", MemoryStorage())  # blank: joining, never a member yet
    d.step(InstallSnapshot(2, "a", "d", SnapshotMeta(50, 2, 40, ClusterConfig.stable("abc")), 1))
    rd = flush(d)
    assert rd.snapshot is not None and not d.removed
    assert not [e for e in rd.events if isinstance(e, Removed)]


def _removed_with_re_add_on_its_way():
    """c's log: removed ({a,b} committed at 3), then re-added (joint at 4, uncommitted)."""
    c = make_core("c", seeded_storage(["a", "b", "c"]))
    c.step(AppendEntries(1, "a", "c", 1, 1, [
        Entry(2, 1, CONFIG, ClusterConfig.joint("abc", "ab"), 0),
        Entry(3, 1, CONFIG, ClusterConfig.stable("ab"), 0),
        Entry(4, 1, CONFIG, ClusterConfig.joint("ab", "abc"), 0)], 3, 1))
    flush(c)
    return c


def test_removed_member_with_its_re_add_in_the_log_does_not_stop():
    c = _removed_with_re_add_on_its_way()
    assert c.commit == 3 and not c.removed  # {a,b} committed, but {a,b,c} is on its way
    c.step(AppendEntries(1, "a", "c", 4, 1, [
        Entry(5, 1, CONFIG, ClusterConfig.stable("abc"), 0)], 5, 1))
    flush(c)
    assert c.commit == 5 and not c.removed and c.promotable()


def test_dropped_re_add_leaves_the_member_removed_at_the_next_commit():
    c = _removed_with_re_add_on_its_way()
    assert not c.removed
    # a new leader of {a,b} never saw the re-add: it overwrites index 4 and commits past it
    c.step(AppendEntries(2, "b", "c", 3, 1, [E(4, 2), E(5, 2)], 5, 1))
    rd = flush(c)
    assert c.removed and [e for e in rd.events if isinstance(e, Removed)]
