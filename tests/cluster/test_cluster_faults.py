"""`zraft cluster status --json` right after each fault command reports the right states."""

from __future__ import annotations

import pytest

from tests.cluster.conftest import Cli
from zraft.cluster.local import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def states(cli: Cli) -> dict[int, str]:
    return {i: row["state"] for i, row in cli.status().items()}


def leader_of(cli: Cli, exclude: int | None = None) -> int | None:
    found = [i for i, s in states(cli).items() if s == "leader" and i != exclude]
    return found[0] if len(found) == 1 else None


def test_status_after_kill_pause_partition_heal_restart(cli: Cli, up) -> None:
    doc = up()
    assert len(doc["peers"]) == 3 and len(doc["pids"]) == 3
    rows = cli.status()
    assert sorted(r["state"] for r in rows.values()) == ["follower", "follower", "leader"]
    leader = next(i for i, r in rows.items() if r["state"] == "leader")
    for row in rows.values():
        assert row["pid"] and row["rss_mb"] > 0 and row["term"] >= 1
        assert row["snapshot_index"] == 0

    def settled() -> dict[int, dict]:
        rows = cli.status()
        return rows if all(r["commit"] == r["applied"] == r["last_index"] and r["lag"] == 0
                           for r in rows.values()) else {}
    rows = wait_until(settled, 10, "every node to apply everything")

    # kill: the leader is down at once, the others elect a new one
    assert cli.json("kill", str(leader))["pid"] == rows[leader]["pid"]
    now = states(cli)
    assert now[leader] == "down"
    assert all(s != "down" for i, s in now.items() if i != leader)
    new_leader = wait_until(lambda: leader_of(cli, exclude=leader), 15, "a new leader")

    # restart: running again on its data, answering as a follower
    cli.json("restart", str(leader))
    now = cli.status()
    assert now[leader]["state"] == "follower" and now[leader]["pid"] != rows[leader]["pid"]
    wait_until(lambda: cli.status()[leader]["lag"] == 0, 15, "the restarted node to catch up")

    # pause a follower: paused at once (never asked, so status does not wait on it)
    follower = next(i for i in (1, 2, 3) if i not in (leader, new_leader))
    cli.json("pause", str(follower))
    now = states(cli)
    assert now[follower] == "paused" and now[new_leader] == "leader"
    cli.json("resume", str(follower))
    assert states(cli)[follower] in ("follower", "candidate")

    # partition the leader away: every node reports what it drops; the majority elects
    blocked = cli.json("partition", str(new_leader))["blocked"]
    assert len(blocked) == 3
    rows = cli.status()
    others = [i for i in (1, 2, 3) if i != new_leader]
    assert sorted(rows[new_leader]["blocked"]) == sorted(rows[i]["address"] for i in others)
    for i in others:
        assert rows[i]["blocked"] == [rows[new_leader]["address"]]
    majority_leader = wait_until(
        lambda: next((i for i in others if states(cli)[i] == "leader"), None), 15,
        "a leader in the majority")
    assert majority_leader != new_leader
    assert cli.status()[new_leader]["state"] != "down"
    # a node restarted during the partition gets its filter back
    cli.json("restart", str(majority_leader))
    rows = cli.status()
    assert rows[majority_leader]["blocked"] == [rows[new_leader]["address"]]
    assert cli.json("status")["partition"] is not None

    # heal: no filter left, one leader (the isolated old leader steps down)
    cli.json("heal")
    rows = cli.status()
    assert all(r["blocked"] == [] for r in rows.values())
    wait_until(lambda: leader_of(cli) is not None, 15, "a single leader after heal")

    # stop (SIGTERM) is down too
    cli.json("stop", str(follower))
    assert states(cli)[follower] == "down"


def test_node_spellings_and_errors(cli: Cli, up) -> None:
    up("--nodes", "3")
    code, _ = cli.cluster("kill", "node9")
    assert code == 1
    rows = cli.status()
    leader = next(i for i, r in rows.items() if r["state"] == "leader")
    assert cli.json("kill", "leader")["node"] == leader  # 'leader' names the current leader
    peer = rows[(leader % 3) + 1]["peer"]
    assert cli.json("pause", peer)["node"] == (leader % 3) + 1  # a peer id names a node
    assert states(cli)[(leader % 3) + 1] == "paused"
    code, _ = cli.cluster("up")
    assert code == 1, "up must refuse a directory whose cluster still runs"
