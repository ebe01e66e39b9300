"""Many groups on one local cluster, through the CLI: `zraft create --groups N` makes them
in one go (named, refused as a whole when taken), `zraft cluster status` shows them
one line each when few and as counts per node when many, and `zraft bench --groups N`
writes to every one of them."""

from __future__ import annotations

import json

import pytest

from tests.cluster.conftest import Cli
from zraft.cluster import admin, group_status
from zraft.cluster.fanout import fan_out
from zraft.cluster.local import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_create_status_and_bench_with_groups(cli: Cli, up,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    up()
    code, out = cli("create", "--dir", str(cli.dir), "--groups", "3", "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert (doc["groups"], doc["first"], doc["last"], doc["nodes"]) == (3, "g00001", "g00003",
                                                                       3)
    # taken names refuse the whole batch: nothing more is created
    code, _ = cli("create", "--dir", str(cli.dir), "--groups", "4")
    assert code == 1
    status = cli.json("status")["groups"]
    assert (status["count"], status["led"], status["leaderless"]) == (4, 4, 0)  # + zraft
    assert [g["name"] for g in status["groups"]] == ["g00001", "g00002", "g00003", "zraft"]
    code, text = cli.cluster("status")
    assert code == 0 and "groups: 4, 4 led" in text and "g00002  node " in text
    monkeypatch.setattr(group_status, "GROUP_LINES", 2)
    code, text = cli.cluster("status")
    lines = text.splitlines()
    at = lines.index("groups: 4, 4 led")
    assert lines[at + 1].split() == ["NODE", "GROUPS", "LED", "HERE", "FOLLOWER", "CANDIDATE",
                                     "NO", "ANSWER"]
    assert [line.split()[1] for line in lines[at + 2:at + 5]] == ["4", "4", "4"]
    assert sum(int(line.split()[2]) for line in lines[at + 2:at + 5]) == 4  # one leader each

    code, out = cli("bench", "--dir", str(cli.dir), "--groups", "3", "--clients", "1",
                    "--inflight", "6", "--duration", "1", "--json", "--quiet")
    assert code == 0, out
    result = json.loads(out)
    assert result["ops"] > 0 and result["config"]["groups"] == 3
    cluster = LocalCluster.load(cli.dir)
    pool = admin.pool_for(cluster)
    try:  # every group got writes: its commit index is past its creation's entries
        leaders = [f"g0000{i}@{cluster.node(g['leader']).address}"
                   for i, g in enumerate(status["groups"][:3], start=1)]
        answers = fan_out(pool, [(p, "stat", [p.partition("@")[0]]) for p in leaders], 5.0)
        assert all(s == "ok" and info["commit"] > 5 for s, info in answers), answers
    finally:
        pool.close()


def test_create_groups_usage_errors(cli: Cli) -> None:
    for bad in (["--groups", "0"], ["--groups", "x"], ["--groups", "2", "--prefix", "a/b"]):
        with pytest.raises(SystemExit) as info:
            cli("create", "--peers", "zraft@127.0.0.1:1", "--cookie", "c", *bad)
        assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli("create", "--peers", "zraft@127.0.0.1:1", "--cookie", "c", "--groups", "2",
            "--exist-ok")
    assert info.value.code == 2
