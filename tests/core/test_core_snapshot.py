"""Snapshots: local compaction, SnapshotNeeded, InstallSnapshot on followers, restarts."""

from __future__ import annotations

import pytest
from core_harness import E, Net, flush, make_core, seeded_storage

from zraft.core.entries import ClusterConfig, SnapshotMeta
from zraft.core.errors import CoreError
from zraft.core.messages import (
    AppendEntries,
    AppendReply,
    InstallSnapshot,
    SnapshotNeeded,
)
from zraft.core.progress import PROBE, REPLICATE, SNAPSHOT

ABC = ClusterConfig.stable(["a", "b", "c"])


def test_snapshot_taken_compacts_and_keeps_last_term():
    net = Net(["a"])
    lead = net.elect("a")
    lead.propose([b"1", b"2"], 0)
    net.drive()
    lead.snapshot_taken(4)
    rd = lead.ready()
    assert rd.compact_to == 4
    net.storages["a"].compact(4)
    assert lead.log.snapshot == SnapshotMeta(4, 2, 1, ClusterConfig.stable(["a"]))
    assert lead.log.last_term() == 2 and lead.log.term(4) == 2 and lead.log.term(3) is None
    s = lead.status()
    assert (s["snapshot_index"], s["snapshot_term"], s["first_index"]) == (4, 2, 5)
    with pytest.raises(CoreError):
        lead.snapshot_taken(9)


def test_restart_after_compaction_recovers_config_and_terms():
    net = Net(["a"])
    lead = net.elect("a")
    lead.propose([b"1"], 0)
    net.drive()
    lead.snapshot_taken(3)
    net.drive()
    again = net.restart("a")
    assert again.log.config() == (1, ClusterConfig.stable(["a"]))
    assert again.commit == 3 and again.applied == 3 and again.log.last_term() == 2
    net.tick("a", 30)
    assert again.role == "leader"


def deliver_snapshots(net: Net, leader: str) -> list[SnapshotNeeded]:
    needed = [e for e in net.events[leader] if isinstance(e, SnapshotNeeded)]
    net.events[leader] = [e for e in net.events[leader] if not isinstance(e, SnapshotNeeded)]
    core = net.cores[leader]
    for ev in needed:
        net.cores[ev.peer].step(InstallSnapshot(core.term, leader, ev.peer, ev.meta, core.epoch))
    net.drive()
    return needed


def test_lagging_follower_gets_snapshot_then_entries():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    net.spread_commit("a")
    net.isolate("c")
    lead.propose([b"%d" % i for i in range(10)], 0)
    net.drive()
    lead.snapshot_taken(8)
    net.drive()
    net.heal()
    net.tick("a", 2)  # the heartbeat finds the lost pipeline; the probe needs a snapshot
    pr = lead.progress["c"]
    assert pr.state == SNAPSHOT
    (ev,) = deliver_snapshots(net, "a")
    assert ev.peer == "c" and ev.meta.index == 8 and ev.meta.config == ABC
    c = net.cores["c"]
    assert any(rd.snapshot == ev.meta for rd in net.readies["c"])
    assert c.commit >= 8 and c.log.first_index() == 9
    net.tick("a", 2)
    assert pr.state == REPLICATE and pr.match == lead.log.last_index()
    assert c.log.last_index() == lead.log.last_index()
    # 1, 2 were applied before the partition; 3..8 came inside the snapshot
    assert [e.index for e in net.applied["c"]] == [1, 2, 9, 10, 11, 12]


def test_snapshot_state_pauses_appends_keeps_heartbeats_and_retries_on_failure():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    net.isolate("c")
    lead.propose([b"x"] * 4, 0)
    net.drive()
    lead.snapshot_taken(5)
    net.drive()
    net.heal()
    net.tick("a", 2)
    assert lead.progress["c"].state == SNAPSHOT
    lead.propose([b"y"], 0)
    rd = lead.ready()
    to_c = [m for m in rd.messages if m.dst == "c"]
    assert all(not m.entries for m in to_c)  # no appends while a snapshot is pending
    lead.tick()
    lead.tick()
    beats = [m for m in lead.ready().messages if m.dst == "c"]
    assert beats and all(isinstance(m, AppendEntries) and not m.entries for m in beats)
    lead.snapshot_failed("c")
    assert lead.progress["c"].state == PROBE
    assert not [e for e in lead.ready().events if isinstance(e, SnapshotNeeded)]
    lead.tick()
    lead.tick()
    assert [e for e in lead.ready().events if isinstance(e, SnapshotNeeded)]


def test_install_snapshot_at_or_below_commit_just_acks():
    f = make_core("b", seeded_storage(["a", "b", "c"]))
    f.step(AppendEntries(1, "a", "b", 1, 1, [E(2, 1), E(3, 1)], 3, 7))
    flush(f)
    f.step(InstallSnapshot(1, "a", "b", SnapshotMeta(2, 1, 1, ABC), 9))
    rd = flush(f)
    assert rd.snapshot is None
    (r,) = rd.persisted_messages
    assert r.success and r.index == 2 and r.epoch == 9


def test_install_snapshot_keeps_matching_suffix():
    f = make_core("b", seeded_storage(["a", "b", "c"]))
    f.step(AppendEntries(1, "a", "b", 1, 1, [E(2, 1), E(3, 1), E(4, 1)], 1, 1))
    flush(f)
    meta = SnapshotMeta(3, 1, 1, ABC)
    f.step(InstallSnapshot(1, "a", "b", meta, 1))
    rd = flush(f)
    assert rd.snapshot == meta
    assert f.log.last_index() == 4 and f.commit == 3 and f.applied == 3
    assert f.log.storage.last_index() == 4 and f.log.storage.first_index() == 4


def test_install_snapshot_discards_conflicting_log_and_takes_config():
    f = make_core("b", seeded_storage(["a", "b", "c"]))
    f.step(AppendEntries(1, "a", "b", 1, 1, [E(2, 1), E(3, 1)], 1, 1))
    flush(f)
    cfg = ClusterConfig.stable(["a", "b", "c", "d"])
    meta = SnapshotMeta(10, 3, 9, cfg)
    f.step(InstallSnapshot(3, "d", "b", meta, 1))
    rd = flush(f)
    assert rd.snapshot == meta and not rd.committed
    assert f.log.last_index() == 10 and f.log.last_term() == 3
    assert f.log.config() == (9, cfg) and f.leader == "d" and f.term == 3
    (r,) = rd.persisted_messages
    assert r == AppendReply(3, "b", "d", True, 10, 0, 0, 1)


def test_install_snapshot_from_lower_term_is_rejected():
    f = make_core("b", seeded_storage(["a", "b", "c"], term=5))
    f.step(InstallSnapshot(3, "a", "b", SnapshotMeta(10, 3, 1, ABC), 1))
    rd = flush(f)
    (r,) = rd.persisted_messages
    assert not r.success and r.term == 5 and rd.snapshot is None


def test_follower_stuck_in_snapshot_state_is_probed_again_after_retry_ticks():
    net = Net(["a", "b", "c"], snapshot_retry_ticks=20)
    lead = net.elect("a")
    net.isolate("c")
    lead.propose([b"x"] * 4, 0)
    net.drive()
    lead.snapshot_taken(5)
    net.drive()
    net.heal()
    for _ in range(3):  # a heartbeat (or commit news) finds the lost pipeline
        net.events["a"].clear()
        net.tick("a")
        if lead.progress["c"].state == SNAPSHOT:
            break
    assert lead.progress["c"].state == SNAPSHOT
    assert [e.peer for e in net.events["a"] if isinstance(e, SnapshotNeeded)] == ["c"]
    # the InstallSnapshot is never delivered (say c crashed before persisting it)
    net.events["a"].clear()
    net.tick("a", 18)
    assert not [e for e in net.events["a"] if isinstance(e, SnapshotNeeded)]
    net.tick("a", 2)
    assert [e.peer for e in net.events["a"] if isinstance(e, SnapshotNeeded)] == ["c"]


def test_lost_pipeline_whose_end_was_compacted_falls_back_to_snapshot():
    """core-bugs.md #1: REPLICATE follower, appends lost, then the leader compacted past
    next - 1: the heartbeat used to carry prev=0 and the follower was stuck forever."""
    net = Net(["a", "b", "c"], max_inflight=2, max_batch_bytes=1)
    lead = net.elect("a")
    net.filter = lambda m: not (isinstance(m, AppendEntries) and m.dst == "c" and m.entries)
    lead.propose([b"x"] * 6, 0)
    net.drive()
    pr = lead.progress["c"]
    assert pr.match == 2
    pr.become_replicate()  # as if the loss had not been noticed yet
    pr.next = 6
    pr.inflight.extend([4, 5])
    lead.snapshot_taken(lead.applied)
    net.drive()
    assert lead.log.term(pr.next - 1) is None
    net.filter = None
    net.tick("a", 2)
    assert [e.peer for e in net.events["a"] if isinstance(e, SnapshotNeeded)] == ["c"]
    deliver_snapshots(net, "a")
    net.tick("a", 2)
    assert net.cores["c"].log.last_index() == lead.log.last_index()


def test_acks_from_a_follower_awaiting_a_snapshot_do_not_loop():
    """Fuzz seed 296: a SNAPSHOT-state follower whose match is compacted acked every
    heartbeat (prev 0, commit 0) with its own commit; each ack asked for a commit notice,
    which again carried commit 0: an endless exchange without any tick."""
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    lead.propose([b"x"], 0)
    net.drive()
    net.isolate("c")
    lead.propose([b"y"] * 5, 0)
    net.drive()
    lead.snapshot_taken(lead.applied)
    net.drive()
    net.heal()
    net.tick("a", 2)
    assert lead.progress["c"].state == SNAPSHOT
    net.events["a"].clear()
    sent = len(net.sent)
    net.tick("a", 1)  # one heartbeat round: c acks; the drive() must settle
    assert len(net.sent) - sent < 10
