"""Quiescence on real node processes (docs/internals.md, "Quiescence"): idle groups go
quiet, the per-node-pair liveness heartbeat's failure signal gets a kill -9'd leader's
groups a new leader, and a single-voter group leads at once after bootstrap."""

from __future__ import annotations

import time

from zraft.client import api
from zraft.cluster.local import wait_until


def _group(h, name: str, first: int) -> list[str]:
    """Peers of group ``name`` on every node, node ``first`` first (it bootstraps, so it
    leads after create)."""
    nodes = [first] + [n.index for n in h.cluster.nodes if n.index != first]
    return [f"{name}@{h.cluster.node(i).address}" for i in nodes]


def _all_quiet(h, groups: list[list[str]], alive: list[str] | None = None) -> bool:
    for peers in groups:
        for peer in peers:
            if alive is not None and peer not in alive:
                continue
            if not api.stat(peer, timeout=2, pool=h.pool).get("quiesced"):
                return False
    return True


def _leader_of(h, peers: list[str], skip: str) -> str | None:
    for peer in peers:
        if peer == skip:
            continue
        try:
            st = api.stat(peer, timeout=1, pool=h.pool)
        except Exception:
            continue
        if st.get("role") == "leader":
            return peer
    return None


def test_kill9_of_the_node_leading_quiesced_groups_elects_new_leaders(make_cluster):
    h = make_cluster(3, create=False)
    groups = [_group(h, f"g{i}", 1) for i in range(3)]
    for peers in groups:
        api.create(peers, "dict", timeout=20, pool=h.pool)
        api.write(peers[0], ["put", "k", 1], timeout=10, pool=h.pool)
    wait_until(lambda: _all_quiet(h, groups), 20, "every peer of every group quiesced")
    h.cluster.kill(1)
    started = time.monotonic()
    leaders = {}
    for peers in groups:
        dead = peers[0]
        leaders[dead] = wait_until(lambda p=peers, d=dead: _leader_of(h, p, d), 20,
                                   f"a new leader of {dead}")
    took = time.monotonic() - started
    print(f"\nkill -9 of the leaders' node: every group led again after {took:.2f} s")
    for peers in groups:  # and they commit
        api.write(leaders[peers[0]], ["put", "k", 2], timeout=10, pool=h.pool)
    status = h.node_status(2)
    assert status["liveness"]["reports"]["unreachable"] >= 1


def test_a_single_voter_group_leads_at_once_after_create(make_cluster):
    # election timer: 7.5 s at least; creating the group and writing must not wait for it
    h = make_cluster(1, create=False, election_timeout=5000)
    peer = _group(h, "solo", 1)[0]
    started = time.monotonic()
    api.create([peer], "dict", timeout=20, pool=h.pool)
    api.write(peer, ["put", "k", 1], timeout=20, pool=h.pool)
    took = time.monotonic() - started
    assert took < 7.5, f"create + first write took {took:.1f} s: an election timeout"
