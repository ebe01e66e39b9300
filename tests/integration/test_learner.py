"""A new member is a learner on live nodes: it catches up without a vote, so a new member
that cannot keep up never blocks the group's writes, and becomes a voter once caught up."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.integration.conftest import Harness
from zraft.client import api
from zraft.cluster.local import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def leader_status(h: Harness) -> dict[str, Any]:
    return h.stat(h.leader_index())


def test_a_stalled_new_member_stays_a_learner_and_writes_go_on(make_cluster) -> None:
    h = make_cluster(3)
    for i in range(20):
        assert h.write([f"k{i}", i]) == "ok"
    leader_peer, old = api.get_conf(h.peers[0], 10, pool=h.pool)
    n = h.cluster.add_node()
    new_peer = h.cluster.peer_id(n)
    api.create_peer(new_peer, "dict", timeout=10, pool=h.pool)
    h.cluster.pause(n)  # the new member cannot catch up while stopped
    outcome: dict[str, Any] = {}

    def change() -> None:
        try:
            outcome["peers"] = api.set_new_conf(leader_peer, [*old, new_peer], old, 60,
                                                pool=h.pool)
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    changer = threading.Thread(target=change, daemon=True)
    changer.start()

    def staging() -> dict[str, Any] | None:
        st = leader_status(h)
        pr = st.get("progress", {}).get(new_peer)
        return st if st.get("config_change") == "staging" and pr and pr["learner"] else None
    st = wait_until(staging, 15, "the new member to be a staging learner")
    assert sorted(st["config"]["old"]) == sorted(old) and not st["config"]["new"]
    for i in range(20, 40):  # the learner does not count: three voters still commit
        assert h.write([f"k{i}", i]) == "ok"
    assert "peers" not in outcome and "error" not in outcome

    h.cluster.resume(n)
    changer.join(60)
    assert not changer.is_alive() and "error" not in outcome, outcome
    assert outcome["peers"] == sorted([*old, new_peer])
    st = leader_status(h)
    assert sorted(st["config"]["old"]) == sorted([*old, new_peer])
    assert not st["progress"][new_peer]["learner"]
    assert h.write(["after", 1]) == "ok"

    def caught_up() -> bool:
        mine = api.stat(new_peer, timeout=2, pool=h.pool)
        return mine["role"] == "follower" and mine["applied"] >= st["commit"]
    wait_until(caught_up, 15, "the new voter to apply everything")
