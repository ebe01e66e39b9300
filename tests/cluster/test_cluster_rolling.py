"""`zraft cluster rolling-restart`: every node restarted on its data, the leader last after
handing its leadership over; the data written before is still there."""

from __future__ import annotations

from tests.cluster.conftest import Cli


def test_rolling_restart_restarts_every_node_and_hands_over_once(cli: Cli, up) -> None:
    doc = up()
    before = {row["node"]: row["pid"] for row in cli.json("status")["nodes"]}
    assert cli("write", "color", "red", "--dir", str(cli.dir))[0] == 0
    result = cli.json("rolling-restart")
    steps = result["steps"]
    assert sorted(s["node"] for s in steps) == sorted(before)
    assert [bool(s["handed_to"]) for s in steps] == [False, False, True]
    assert all(s["pid"] != before[s["node"]] for s in steps)  # each really restarted
    code, out = cli("read", "color", "--dir", str(cli.dir))
    assert code == 0 and out.strip() == "red"
    assert len(doc["pids"]) == 3
