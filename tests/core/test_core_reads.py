"""Linearizable reads through zraft_lib's epoch mechanism (ReadIndex)."""

from __future__ import annotations

from core_harness import Net, flush, make_core, seeded_storage

from zraft.core.messages import AppendEntries, AppendReply, ReadFailed, ReadState, VoteReply


def test_non_leader_fails_read_with_hint():
    net = Net(["a", "b", "c"])
    net.elect("a")
    net.cores["b"].read("q")
    net.drive()
    assert net.reads["b"] == [ReadFailed("q", "not_leader", "a")]


def test_read_released_after_quorum_echoes_epoch():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    lead.propose([b"w"], 0)
    net.drive()
    lead.read("r1")
    lead.read("r2")
    rd = lead.ready()
    beats = [m for m in rd.messages if isinstance(m, AppendEntries)]
    assert {m.dst for m in beats} == {"b", "c"}
    epoch = beats[0].epoch
    assert all(m.epoch == epoch for m in beats) and epoch == lead.epoch
    assert not rd.reads  # no quorum yet
    lead.step(AppendReply(lead.term, "b", "a", True, 3, 0, 0, epoch))
    rd = lead.ready()
    assert rd.reads == [ReadState("r1", 3), ReadState("r2", 3)]


def test_reads_in_different_readies_get_different_epochs():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    lead.read("r1")
    e1 = lead.ready().messages[0].epoch
    lead.read("r2")
    e2 = lead.ready().messages[0].epoch
    assert e2 == e1 + 1
    lead.step(AppendReply(lead.term, "c", "a", True, 2, 0, 0, e1))
    assert [r.ctx for r in lead.ready().reads] == ["r1"]
    lead.step(AppendReply(lead.term, "b", "a", True, 2, 0, 0, e2))
    assert [r.ctx for r in lead.ready().reads] == ["r2"]


def test_read_waits_for_current_term_commit():
    c = make_core("a", seeded_storage(["a", "b", "c"]), prevote=False)
    c.campaign()
    flush(c)  # our own vote counts once durable
    c.step(VoteReply(2, "b", "a", True))
    c.read("early")
    rd = flush(c)
    assert not rd.reads and c.commit < c.term_start
    epochs = [m.epoch for m in rd.messages]
    c.step(AppendReply(2, "b", "a", True, 2, 0, 0, max(epochs)))
    assert c.commit == 2
    rd = flush(c)  # now the read gets its epoch
    e = max(m.epoch for m in rd.messages)
    assert not rd.reads
    c.step(AppendReply(2, "c", "a", True, 2, 0, 0, e))
    assert flush(c).reads == [ReadState("early", 2)]


def test_partitioned_leader_never_releases_read_and_fails_it_on_step_down():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    net.isolate("a")
    lead.read("r")
    net.drive()
    net.tick("a", 5)
    assert net.reads["a"] == []
    net.tick("a", 25)  # check-quorum
    assert lead.role == "follower"
    assert net.reads["a"] == [ReadFailed("r", "leader_changed", None)]


def test_single_voter_releases_reads_at_once():
    net = Net(["a"])
    lead = net.elect("a")
    lead.read("r")
    net.drive()
    assert net.reads["a"] == [ReadState("r", 2)]


def test_read_index_covers_writes_acknowledged_before_the_read():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    (idx,) = lead.propose([b"w"], 0)
    net.drive()
    assert lead.commit >= idx[0]
    lead.read("r")
    net.drive()
    (rs,) = net.reads["a"]
    assert rs.index >= idx[0]
