"""The simulator drives a core the way a real node must (the Ready obligations)."""

from __future__ import annotations

from zraft.core.messages import AppendReply, InstallSnapshot, VoteReply, VoteRequest
from zraft.testing.linearizability import OK, UNKNOWN, check_history
from zraft.testing.sim.cluster import SimCluster


def in_flight(c: SimCluster, kind: type, src: str | None = None) -> list:
    return [e.msg for e in c.network.in_flight
            if isinstance(e.msg, kind) and (src is None or e.src == src)]


def deliver_everything(c: SimCluster) -> None:
    """Deliver every in-flight message (FIFO) without completing any write."""
    while c.network.in_flight:
        envelope = c.network.take(fifo=True)
        if envelope is not None:
            c.nodes[envelope.dst].receive(envelope.msg, envelope.payload)


def test_votes_leave_only_after_the_hard_state_is_durable():
    c = SimCluster(21)
    c.nodes["n1"].core.campaign()
    c.nodes["n1"].drain()
    deliver_everything(c)  # pre-votes and their replies: no term change, nothing to persist
    assert c.nodes["n1"].role == "candidate"
    assert c.nodes["n1"].writes, "the candidate's new term and vote are not durable yet"
    assert not [m for m in in_flight(c, VoteRequest) if not m.prevote]
    c.persist("n1")
    requests = [m for m in in_flight(c, VoteRequest) if not m.prevote]
    assert sorted(m.dst for m in requests) == ["n2", "n3"]
    deliver_everything(c)
    # The voters adopted the term and voted, but their votes wait for their own writes.
    assert c.nodes["n2"].writes and c.nodes["n3"].writes
    assert not [m for m in in_flight(c, VoteReply) if not m.prevote]
    c.persist("n2")
    assert [m.src for m in in_flight(c, VoteReply) if m.granted] == ["n2"]
    deliver_everything(c)
    assert c.nodes["n1"].role == "leader"
    assert c.nodes["n2"].storage.hard_state.vote == "n1"


def test_append_replies_wait_for_the_follower_write():
    c = SimCluster(22)
    leader = c.elect()
    assert c.stabilize()
    while any(n.writes for n in c.nodes.values()):
        c.persist()
    deliver_everything(c)
    index = c.nodes[leader].storage.last_index() + 1
    c.write(leader, "k", 1)
    deliver_everything(c)
    followers = [p for p in sorted(c.nodes) if p != leader]
    for follower in followers:
        assert c.nodes[follower].writes[-1].entries[-1].index == index
    assert not [r for r in in_flight(c, AppendReply) if r.index >= index]
    c.persist(followers[0])
    acks = [r for r in in_flight(c, AppendReply) if r.index >= index]
    assert [r.src for r in acks] == [followers[0]]


def test_local_snapshots_compact_every_few_entries():
    c = SimCluster(23, snapshot_every=5)
    leader = c.elect()
    for i in range(12):
        op = c.write(c.leader() or leader, "k", i)
        assert c.run(20_000, lambda op=op: op.outcome != UNKNOWN)
    assert c.stabilize()
    for peer in c.members():
        node = c.nodes[peer]
        assert node.storage.first_index() > 5
        assert max(node.durable_images) >= 10


def test_failed_snapshot_transfer_is_retried():
    c = SimCluster(24, snapshot_every=5)
    sent = []
    send = c.network.send

    def spy(src, dst, msg, payload=None):
        if isinstance(msg, InstallSnapshot):
            sent.append(msg)
        send(src, dst, msg, payload)

    c.network.send = spy
    c.snapshot_failure_rate = 1.0  # every transfer fails before it starts
    leader = c.elect()
    lagging = next(p for p in sorted(c.nodes) if p != leader)
    c.crash(lagging)
    for i in range(20):
        op = c.write(c.leader(), "k", i)
        assert c.run(20_000, lambda op=op: op.outcome != UNKNOWN)
    c.restart(lagging)
    c.run(3000)
    assert not sent
    assert c.nodes[lagging].machine.applied < c.nodes[c.leader()].machine.applied
    c.snapshot_failure_rate = 0.0
    assert c.stabilize()
    assert sent and c.nodes[lagging].machine.data == {"k": 19}
    c.check_final()
    c.resolve_unknown()
    assert check_history(c.history).ok


def test_writes_are_acknowledged_by_the_proposer_once_applied():
    c = SimCluster(25)
    leader = c.elect()
    op = c.write(leader, "k", 7)
    assert c.run(20_000, lambda: op.outcome != UNKNOWN)
    assert op.outcome == OK and op.complete_time > op.invoke_time
    assert c.acknowledged and c.effects


def test_operator_snapshot_compacts_now():
    c = SimCluster(26, snapshot_every=1000)
    leader = c.elect()
    for i in range(3):
        op = c.write(leader, "k", i)
        assert c.run(20_000, lambda op=op: op.outcome != UNKNOWN)
    node = c.nodes[leader]
    assert node.storage.first_index() == 2
    assert c.snapshot(leader)
    assert not c.snapshot(leader)  # nothing new applied since
    while node.writes:
        c.persist(leader)
    assert node.storage.first_index() == node.machine.applied + 1
    assert node.durable_images[node.machine.applied] == {"k": 2}
