from core_harness import Net


def test_three_nodes_elect_replicate_commit():
    net = Net(["a", "b", "c"])
    lead = net.elect("a")
    lead.propose([b"x", b"y"], 5)
    net.drive()
    net.spread_commit("a")
    for p in "abc":
        assert net.data(p) == [b"x", b"y"], p
        assert net.cores[p].commit == 4
