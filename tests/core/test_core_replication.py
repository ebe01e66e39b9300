"""Replication: pipelining, flow control, batching, fast back-off, stale/reordered appends."""

from __future__ import annotations

import random

from core_harness import E, Net, flush, make_core, seeded_storage

from zraft.core.entries import Entry
from zraft.core.messages import AppendEntries, AppendReply
from zraft.core.progress import PROBE, REPLICATE


def leader_with_followers(**cfg):
    """a is leader of a/b/c in term 2, b and c acked the NOOP (both REPLICATE)."""
    c = make_core("a", seeded_storage(["a", "b", "c"]), prevote=False, **cfg)
    c.campaign()
    flush(c)
    from zraft.core.messages import VoteReply

    c.step(VoteReply(2, "b", "a", True))
    flush(c)
    for p in "bc":
        c.step(AppendReply(2, p, "a", True, 2, 0, 0, 1))
    flush(c)
    assert c.progress["b"].state == REPLICATE
    return c


def appends(rd, dst):
    return [m for m in rd.messages if isinstance(m, AppendEntries) and m.dst == dst]


def test_proposals_before_a_ready_are_batched_into_one_append():
    c = leader_with_followers()
    for i in range(10):
        c.propose([b"p%d" % i], 0)
    rd = flush(c)
    (m,) = appends(rd, "b")
    assert [e.index for e in m.entries] == list(range(3, 13)) and m.prev_index == 2


def test_batches_are_capped_by_max_batch_bytes():
    size = Entry(1, 1, 2, b"x" * 100, 0).size()
    c = leader_with_followers(max_batch_bytes=3 * size)
    c.propose([b"x" * 100] * 10, 0)
    rd = flush(c)
    sizes = [len(m.entries) for m in appends(rd, "b")]
    assert sizes == [3, 3, 3, 1]


def test_every_append_encodes_within_its_cap_plus_the_message_fields():
    """Entry.size() bounds an entry's msgpack size, so an AppendEntries of entries up to
    max_batch_bytes (or of one larger entry alone) fits max(cap, entry) + its fields: what
    the node's max_entry_size / max_batch_bytes validation relies on."""
    from zraft.core.entries import ClusterConfig
    from zraft.transport.codec import encode

    cap = 4096
    c = leader_with_followers(max_batch_bytes=cap, max_inflight=10_000)
    rng = random.Random(7)
    datas = [b"x" * rng.choice([0, 1, 200, 255, 256, 3000, 9000]) for _ in range(300)]
    c.propose(datas, 2**63)  # the widest timestamps
    rd = flush(c)
    sent = appends(rd, "b")
    assert sum(len(m.entries) for m in sent) == len(datas)
    for m in sent:
        biggest = max(e.size() for e in m.entries)
        fields = len(encode(m._replace(entries=[])))
        assert len(encode(m)) <= max(cap, biggest) + fields + 5  # + the array32 header
        assert len(m.entries) == 1 or sum(e.size() for e in m.entries) <= cap
    big = ClusterConfig(tuple(f"n{i:02d}@h{'o' * 200}:{i + 1}" for i in range(40)), ())
    entry = Entry(2**63, 2**63, 1, big, 2**63)
    assert len(encode(AppendEntries(1, "a", "b", 0, 0, [entry], 0, 0))) < entry.size() + 100


def test_pipeline_respects_max_inflight_and_resumes_on_ack():
    size = Entry(1, 1, 2, b"x", 0).size()
    c = leader_with_followers(max_batch_bytes=size, max_inflight=3)
    c.propose([b"x"] * 6, 0)
    rd = flush(c)
    sent = appends(rd, "b")
    assert [m.entries[0].index for m in sent] == [3, 4, 5]
    pr = c.progress["b"]
    assert pr.next == 6 and len(pr.inflight) == 3
    c.step(AppendReply(2, "b", "a", True, 4, 0, 0, 1))
    rd = flush(c)
    assert [m.entries[0].index for m in appends(rd, "b")] == [6, 7]


def test_probe_state_sends_one_append_and_resends_on_heartbeat():
    c = leader_with_followers()
    c.step(AppendReply(2, "b", "a", False, 3, 2, 1, 1))  # b in REPLICATE rejects: probe
    flush(c)
    assert c.progress["b"].state == PROBE
    c.propose([b"1"], 0)
    c.propose([b"2"], 0)
    rd = flush(c)
    assert len(appends(rd, "b")) <= 1
    c.propose([b"3"], 0)
    assert not appends(flush(c), "b")  # paused: one probe in flight
    c.tick()
    c.tick()
    rd = flush(c)
    (m,) = appends(rd, "b")
    # the heartbeat repeats the unanswered probe without entries ...
    assert not m.entries and m.prev_index == c.progress["b"].next - 1
    c.step(AppendReply(2, "b", "a", True, m.prev_index, 0, 0, 1))
    (m2,) = appends(flush(c), "b")
    # ... and its answer brings the entries (b is back to REPLICATE)
    assert m2.entries and c.progress["b"].state == REPLICATE


def test_fast_backoff_uses_follower_hint():
    # leader log: terms 1 (idx1), 2 x5 (2..6), 3 (noop at 7); follower has 1, then 1 x 20
    st = seeded_storage(["a", "b", "c"])
    st.append([E(i, 2) for i in range(2, 7)])
    from zraft.core.entries import HardState

    st.set_hard_state(HardState(2, None))
    c = make_core("a", st, prevote=False)
    c.campaign()
    flush(c)  # our own vote counts once durable
    from zraft.core.messages import VoteReply

    c.step(VoteReply(3, "c", "a", True))
    follower = make_core("b", seeded_storage(["a", "b", "c"]))
    follower.step(AppendEntries(1, "x", "b", 1, 1, [E(i, 1) for i in range(2, 22)], 0, 0))
    flush(follower)
    # first probe at prev=6 (term 2) is rejected; the hint jumps straight to index 1
    rounds = 0
    msgs = appends(flush(c), "b")
    while msgs and rounds < 10:
        rounds += 1
        for m in msgs:
            follower.step(m)
        for r in flush(follower).persisted_messages:
            c.step(r)
        msgs = appends(flush(c), "b")
    assert follower.log.last_index() == 7 and follower.log.term(7) == 3
    assert rounds <= 3


def test_stale_duplicate_append_never_truncates_matching_suffix():
    f = make_core("b", seeded_storage(["a", "b", "c"]))
    f.step(AppendEntries(1, "a", "b", 1, 1, [E(2, 1), E(3, 1), E(4, 1)], 1, 1))
    flush(f)
    f.step(AppendEntries(1, "a", "b", 1, 1, [E(2, 1)], 1, 1))  # old, delayed
    f.step(AppendEntries(1, "a", "b", 2, 1, [E(3, 1)], 1, 1))
    assert f.log.last_index() == 4
    rd = flush(f)
    assert not rd.entries
    assert [r.index for r in rd.persisted_messages if r.success] == [2, 3]


def test_reordered_appends_are_applied_in_order_without_loss():
    net = Net(["a", "b", "c"], max_batch_bytes=1)
    net.elect("a")
    rng = random.Random(5)
    for i in range(30):
        net.cores["a"].propose([b"%d" % i], 0)
        # deliver the pending queue in a random order
        net.process("a")
        q = list(net.queue)
        rng.shuffle(q)
        net.queue.clear()
        net.queue.extend(q)
        net.drive()
    net.tick(n=30)
    want = [b"%d" % i for i in range(30)]
    for p in "abc":
        assert net.data(p) == want


def test_lost_appends_recovered_by_next_heartbeat():
    net = Net(["a", "b", "c"])
    net.elect("a")
    net.filter = lambda m: not (isinstance(m, AppendEntries) and m.dst == "c" and m.entries)
    net.cores["a"].propose([b"lost"], 0)
    net.drive()
    net.filter = None
    net.tick(n=25)
    assert net.data("c") == [b"lost"]


def test_follower_reply_for_stale_leader_reject_is_ignored():
    c = leader_with_followers()
    c.propose([b"x"], 0)
    flush(c)
    c.step(AppendReply(2, "b", "a", True, 3, 0, 0, 1))
    c.step(AppendReply(2, "b", "a", False, 2, 1, 1, 1))  # reject at index <= match
    assert c.progress["b"].state == REPLICATE and c.progress["b"].match == 3


def test_committed_handed_out_once_in_order_and_only_when_durable():
    f = make_core("b", seeded_storage(["a", "b", "c"]))
    f.step(AppendEntries(1, "a", "b", 1, 1, [E(2, 1), E(3, 1)], 3, 1))
    rd = f.ready()  # not persisted yet
    assert rd.entries and not [e for e in rd.committed if e.index > 1]
    assert rd.committed == [f.log.slice(1, 2, 1 << 30)[0]]  # index 1 was already durable
    f.log.storage.append(rd.entries)
    f.persisted(rd.number)
    rd2 = f.ready()
    assert [e.index for e in rd2.committed] == [2, 3]
    assert not f.ready().committed


def test_follower_never_truncates_committed_entries():
    f = make_core("b", seeded_storage(["a", "b", "c"]))
    f.step(AppendEntries(1, "a", "b", 1, 1, [E(2, 1), E(3, 1)], 3, 1))
    flush(f)
    # entries at or below commit are skipped, never compared: nothing is truncated
    f.step(AppendEntries(2, "c", "b", 1, 1, [E(2, 2), E(3, 2), E(4, 2)], 1, 1))
    assert [f.log.term(i) for i in (2, 3, 4)] == [1, 1, 2]
    (r,) = flush(f).persisted_messages
    assert r.success and r.index == 4


def test_leader_sends_commit_only_heartbeat_on_the_tick_after_commit():
    c = leader_with_followers()
    c.propose([b"x"], 0)
    flush(c)
    c.step(AppendReply(2, "b", "a", True, 3, 0, 0, 1))
    assert c.commit == 3
    assert not appends(flush(c), "b")  # not one heartbeat per commit: it waits for a tick
    c.tick()
    rd = flush(c)
    (m,) = appends(rd, "b")
    assert m.commit == 3 and not m.entries and m.prev_index == 3


def test_entry_time_is_monotonic():
    c = leader_with_followers()
    (i1,) = c.propose([b"1"], 500)
    (i2,) = c.propose([b"2"], 100)  # clock went back
    assert c.log.slice(i1[0], i2[0] + 1, 1 << 20)[1].time == 500


def test_follower_that_lost_acknowledged_entries_is_repaired():
    """core-bugs.md #2: a follower lost its acknowledged tail (disk damage) and rejects the
    heartbeat at match with a hint below match: the leader probes from the hint."""
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    lead.propose([b"1", b"2", b"3"], 0)
    net.drive()
    pr = lead.progress["b"]
    assert pr.match == 5 and pr.state == REPLICATE
    # b restarts from a damaged disk that only kept entries up to 3
    st = net.storages["b"]
    st._entries = st._entries[:3]
    net.restart("b")
    net.tick("a", 2)
    b = net.cores["b"]
    assert b.log.last_index() == 5 and pr.match == 5 and pr.state == REPLICATE
    assert [e.data for e in net.applied["b"] if e.type == 2][-3:] == [b"1", b"2", b"3"]


def test_stale_reject_below_match_for_an_old_position_is_ignored():
    c = leader_with_followers()
    c.propose([b"x", b"y"], 0)
    flush(c)
    c.step(AppendReply(2, "b", "a", True, 4, 0, 0, 1))
    pr = c.progress["b"]
    # an old reject of prev=2 (not our latest position 4) with a low hint: ignored
    c.step(AppendReply(2, "b", "a", False, 2, 1, 1, 1))
    assert pr.state == REPLICATE and pr.next == 5


def test_append_below_commit_is_acknowledged_at_commit():
    f = make_core("b", seeded_storage(["a", "b", "c"]))
    f.step(AppendEntries(1, "a", "b", 1, 1, [E(2, 1), E(3, 1), E(4, 1)], 4, 1))
    flush(f)
    f.step(AppendEntries(1, "a", "b", 0, 0, [E(1, 1)], 1, 1))  # far behind, prev 0
    (r,) = flush(f).persisted_messages
    # everything up to our commit is committed, hence matches the leader: say so
    assert r.success and r.index == 4


def test_status_reports_roles_indexes_config_and_progress():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    lead.propose([b"x"], 0)
    net.drive()
    s = lead.status()
    assert (s["role"], s["term"], s["vote"], s["leader"]) == ("leader", 2, "a", "a")
    assert (s["commit"], s["applied"], s["first_index"], s["last_index"]) == (3, 3, 1, 3)
    assert (s["snapshot_index"], s["snapshot_term"], s["config_state"]) == (0, 0, "stable")
    assert s["config"] == {"old": ["a", "b", "c"], "new": []} and s["epoch"] >= 1
    assert s["progress"]["b"]["match"] == 3 and s["progress"]["b"]["state"] == "replicate"
    assert set(s["progress"]["b"]) >= {"match", "next", "state", "learner", "inflight"}
    assert net.cores["b"].status()["progress"] == {}
