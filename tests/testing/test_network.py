"""The simulated network: seeded, FIFO unless reordering, faults as documented."""

from __future__ import annotations

import random

from zraft.testing.sim.network import SimNetwork


def drain(net, fifo=False):
    out = []
    while net.in_flight:
        env = net.take(fifo)
        if env is not None:
            out.append(env.msg)
    return out


def test_fifo_by_default():
    net = SimNetwork(random.Random(1))
    for i in range(5):
        net.send("a", "b", i)
    assert drain(net) == [0, 1, 2, 3, 4]


def test_reorder_is_seeded():
    def run(seed):
        net = SimNetwork(random.Random(seed))
        net.reorder = 0.5
        for i in range(20):
            net.send("a", "b", i)
        return drain(net)

    assert run(3) == run(3)
    assert run(3) != list(range(20))
    assert sorted(run(3)) == list(range(20))


def test_drop_and_duplicate():
    net = SimNetwork(random.Random(2))
    net.drop = 1.0
    net.send("a", "b", 1)
    assert not net.in_flight and net.dropped == 1
    net.drop, net.duplicate = 0.0, 1.0
    net.send("a", "b", 2)
    assert drain(net) == [2, 2]


def test_partitions_drop_in_flight_messages():
    net = SimNetwork(random.Random(3))
    net.send("a", "b", 1)
    net.send("b", "a", 2)
    net.send("a", "c", 3)
    net.cut_one_way("a", "b")
    assert drain(net) == [2, 3]
    net.partition(["a"], ["b", "c"])
    net.send("c", "a", 4)
    assert drain(net) == [] and not net.can_reach("c", "a")
    net.heal()
    net.send("c", "a", 5)
    assert drain(net) == [5]


def test_isolate_and_discard():
    net = SimNetwork(random.Random(4))
    net.send("b", "c", 1)
    net.send("b", "a", 2)
    net.isolate("a", ["a", "b", "c"])
    assert not net.can_reach("a", "b") and not net.can_reach("c", "a")
    assert net.can_reach("b", "c")
    net.discard_to("c")
    assert [e.msg for e in net.in_flight] == [2]
    net.calm()
    assert net.drop == net.duplicate == net.reorder == 0.0


def test_messages_sent_across_a_cut_stay_lost_after_heal():
    net = SimNetwork(random.Random(5))
    net.cut_one_way("a", "b")
    net.send("a", "b", 1, payload="image")
    net.heal()
    assert drain(net) == []
    assert [e.msg for e in net.lost] == [1]  # payload-carrying losses are reported


def test_replay_delivers_a_stale_copy_after_newer_messages():
    net = SimNetwork(random.Random(6))
    net.replay = 1.0
    net.send("a", "b", 1)
    assert net.take().msg == 1
    net.replay = 0.0
    net.send("a", "b", 2)
    assert drain(net) == [1, 2]
    net.replay = 0.5
    net.calm()
    assert net.replay == 0.0
