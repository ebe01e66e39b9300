"""Scripted simulator scenarios: the classic Raft situations, each checked end to end."""

from __future__ import annotations

from zraft.core.messages import InstallSnapshot
from zraft.testing.linearizability import FAIL, OK, UNKNOWN, check_history
from zraft.testing.sim.cluster import SimCluster


def settle(cluster: SimCluster, op, steps: int = 20_000):
    assert cluster.run(steps, lambda: op.outcome != UNKNOWN), f"{op} never completed"
    return op


def finish(cluster: SimCluster) -> None:
    """Heal, converge, and check durability and linearizability."""
    assert cluster.stabilize(), "cluster did not converge"
    cluster.check_final()
    cluster.resolve_unknown()
    result = check_history(cluster.history)
    assert result.ok, result.describe()


def test_elects_a_leader_and_commits():
    c = SimCluster(1)
    leader = c.elect()
    w = settle(c, c.write(leader, "k", 1))
    assert w.outcome == OK
    r = settle(c, c.read(leader, "k"))
    assert (r.outcome, r.result) == (OK, 1)
    finish(c)
    assert all(c.nodes[p].machine.data == {"k": 1} for p in c.members())


def test_leader_crash_and_reelection():
    c = SimCluster(2)
    old = c.elect()
    assert settle(c, c.write(old, "k", 1)).outcome == OK
    c.crash(old)
    new = c.elect()
    assert new != old
    assert c.nodes[new].term > c.nodes[old].term
    assert settle(c, c.write(new, "k", 2)).outcome == OK
    r = settle(c, c.read(new, "k"))
    assert (r.outcome, r.result) == (OK, 2)
    c.restart(old)
    finish(c)
    assert c.nodes[old].machine.data == {"k": 2}


def test_partitioned_leader_steps_down_and_cannot_answer_reads():
    c = SimCluster(3, nodes=5)
    old = c.elect()
    assert settle(c, c.write(old, "k", 1)).outcome == OK
    c.isolate(old)
    stale = c.read(old, "k")  # no quorum can confirm it
    # check-quorum: within a few election timeouts the isolated leader gives up.
    assert c.run(20_000, lambda: c.nodes[old].role != "leader")
    assert stale.outcome in (FAIL, UNKNOWN)
    assert settle(c, c.read(old, "k")).outcome == FAIL
    assert c.run(20_000, lambda: c.leader() not in (None, old))
    new = c.leader()
    assert settle(c, c.write(new, "k", 2)).outcome == OK
    finish(c)


def change(c: SimCluster, peers: list[str]) -> None:
    ctx = c.change_config(peers)
    assert ctx is not None
    assert c.run(30_000, lambda: c.config_result_for(ctx) is not None)
    assert c.config_result_for(ctx).error is None, c.config_result_for(ctx)


def test_membership_add_remove_and_remove_leader():
    c = SimCluster(4)
    leader = c.elect()
    assert settle(c, c.write(leader, "k", 1)).outcome == OK
    added = c.add_node()
    change(c, ["n1", "n2", "n3", added])
    assert c.run(30_000, c.converged)
    assert c.members() == ["n1", "n2", "n3", added]
    assert c.nodes[added].machine.data == {"k": 1}
    victim = next(p for p in c.members() if p != c.leader())
    change(c, [p for p in c.members() if p != victim])
    assert c.run(30_000, c.converged)
    assert victim not in c.members()
    assert c.nodes[victim].removed  # it learnt it was removed and stopped
    leader = c.leader()
    change(c, [p for p in c.members() if p != leader])
    assert c.run(30_000, lambda: c.leader() not in (None, leader) and c.converged())
    assert leader not in c.members() and len(c.members()) == 2
    new = c.leader()
    assert settle(c, c.write(new, "k", 2)).outcome == OK
    finish(c)


def test_far_behind_follower_catches_up_by_snapshot():
    c = SimCluster(5, snapshot_every=5)
    leader = c.elect()
    lagging = next(p for p in sorted(c.nodes) if p != leader)
    c.crash(lagging)
    for i in range(30):
        assert settle(c, c.write(c.leader(), "k", i)).outcome == OK
    leader = c.leader()
    assert c.nodes[leader].storage.first_index() > 2  # compacted past what lagging has
    snapshots = []
    send = c.network.send

    def spy(src, dst, msg, payload=None):
        if isinstance(msg, InstallSnapshot):
            snapshots.append(msg)
        send(src, dst, msg, payload)

    c.network.send = spy
    c.restart(lagging)
    finish(c)
    assert snapshots and snapshots[0].dst == lagging
    assert c.nodes[lagging].machine.data == {"k": 29}
    assert c.nodes[lagging].storage.snapshot.index >= snapshots[0].meta.index


def test_crash_loses_unpersisted_entries():
    c = SimCluster(6)
    leader = c.elect()
    assert settle(c, c.write(leader, "k", 1)).outcome == OK
    assert c.run(5_000, lambda: not c.nodes[leader].writes)
    durable = c.nodes[leader].storage.last_index()
    for peer in sorted(c.nodes):  # nothing leaves the leader
        if peer != leader:
            c.cut_one_way(leader, peer)
    lost = c.write(leader, "k", 2)
    assert c.nodes[leader].writes, "the write should still be queued"
    c.crash(leader)
    assert c.nodes[leader].storage.last_index() == durable
    c.restart(leader)
    assert c.nodes[leader].storage.last_index() == durable
    assert lost.outcome == UNKNOWN
    finish(c)
    assert all(c.nodes[p].machine.data == {"k": 1} for p in c.members())


def test_same_seed_same_transcript():
    def run(seed):
        c = SimCluster(seed, nodes=5, transcript=True)
        c.network.reorder, c.network.drop, c.network.duplicate = 0.3, 0.1, 0.1
        leader = c.elect()
        for i in range(10):
            c.write(leader, "k", i)
            c.run(50)
        c.crash(leader)
        c.run(2000)
        return "\n".join(c.transcript).encode()

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_bootstrap_one_node_then_add_the_rest():
    c = SimCluster(7, nodes=3, bootstrap=True)
    # durable before anything else happens, and the sole voter leads at once (no election
    # timeout: its bootstrap campaigns, and it leads once its vote is durable)
    assert c.nodes["n1"].storage.last_index() >= 1
    assert c.leader() == "n1" and c.nodes["n1"].term == 2
    assert c.nodes["n2"].storage.last_index() == 0
    first = c.elect()
    assert first == "n1" and c.members() == ["n1"]
    assert settle(c, c.write(first, "k", 1)).outcome == OK  # a one-node cluster commits
    assert c.grow()
    assert c.members() == ["n1", "n2", "n3"]
    assert c.run(30_000, c.converged)
    assert all(c.nodes[p].machine.data == {"k": 1} for p in c.members())
    c.crash("n1")
    assert c.run(30_000, lambda: c.leader() not in (None, "n1"))
    assert settle(c, c.write(c.leader(), "k", 2)).outcome == OK
    finish(c)
