"""Pieces of the local-cluster tooling that need no process: percentiles, the timeline,
status states, partition groups, fault parsing, and reloading a cluster by pid."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from zraft.cluster import admin, events, status
from zraft.cluster.local import CLUSTER_FILE, LocalCluster
from zraft.loadgen.faults import Fault
from zraft.loadgen.recorder import LatencyHistogram, Recorder, _rank


def test_hdr_percentiles_match_exact_ones_within_precision() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(7, 1)) + 1 for _ in range(20_000)]
    hist = LatencyHistogram()
    for v in values:
        hist.record(v)
    exact = sorted(values)
    for p in (50, 90, 99, 99.9):
        assert hist.percentile(p) == pytest.approx(_rank(exact, p), rel=0.002)
    assert hist.max() == pytest.approx(exact[-1], rel=0.002)
    assert hist.count == len(values)


def test_recorder_timeline_buckets_ops_and_latencies() -> None:
    rec = Recorder(start=100.0, bucket=0.5)
    rec.done("write", 100.0, 100.1)  # bucket 0, 100 ms
    rec.done("read", 100.3, 100.302)  # bucket 0, 2 ms
    rec.done("write", 101.0, 101.2)  # bucket 2
    rec.error("noproc")
    rows = rec.timeline(duration=2.0)
    assert [r["t"] for r in rows] == [0.0, 0.5, 1.0, 1.5]
    assert [r["ops_per_s"] for r in rows] == [4.0, 0.0, 2.0, 0.0]
    assert rows[0]["p50_ms"] == pytest.approx(2.0, abs=0.01)
    assert rows[0]["p99_ms"] == pytest.approx(100.0, abs=0.01)
    assert rows[1]["p50_ms"] is None
    assert rec.completed() == 3 and rec.errors == {"noproc": 1}


def test_fault_parsing() -> None:
    assert Fault.parse("2.5:kill-leader") == Fault(2.5, "kill-leader")
    for bad in ("kill-leader", "3:explode", "x:heal"):
        with pytest.raises(ValueError):
            Fault.parse(bad)


def test_timeline_merges_node_logs_and_faults(tmp_path: Path) -> None:
    log = tmp_path / "node1" / "log"
    log.mkdir(parents=True)
    (log / "console.log").write_text(
        '2026 [INFO] zraft.events: EVENT {"t": 3.0, "kind": "role", "role": "leader", '
        '"peer": "z@a:1", "term": 2, "node": "a:1"}\n'
        "2026 [INFO] zraft.something: not an event\n"
        '2026 [INFO] zraft.events: EVENT {"t": 1.0, "kind": "role", "role": "candidate", '
        '"peer": "z@a:1", "term": 2, "node": "a:1"}\n'
        "2026 [INFO] zraft.events: EVENT {broken json\n")
    (log / "console.log.1").write_text(
        '... EVENT {"t": 0.5, "kind": "config", "peer": "z@a:1", "index": 4, "peers": ["z@a:1"]}\n')
    (tmp_path / "faults.jsonl").write_text(
        '{"t": 2.0, "kind": "kill", "source": "cluster", "index": 2, "peer": "z@b:2"}\nnope\n')
    merged = events.timeline(tmp_path)
    assert [(e["t"], e["category"]) for e in merged] == [
        (0.5, "config"), (1.0, "election"), (2.0, "fault"), (3.0, "leader")]
    assert [e["t"] for e in events.leader_changes(merged)] == [3.0]
    text = events.render(merged)
    assert "kill node 2" in text and "z@a:1 became LEADER (term 2)" in text
    assert events.timeline(tmp_path, since=1.5, until=2.5)[0]["kind"] == "kill"


def test_status_state_rules() -> None:
    leader = {"role": "leader", "progress": {"z@b:2": {"learner": True}, "z@c:3": {}}}
    conf = {"config": {"old": ["z@a:1", "z@b:2", "z@c:3"], "new": []}}
    assert status._state("z@a:1", leader, leader) == "leader"
    assert status._state("z@c:3", {"role": "follower", **conf}, leader) == "follower"
    assert status._state("z@c:3", {"role": "precandidate", **conf}, leader) == "candidate"
    assert status._state("z@b:2", {"role": "follower", **conf}, leader) == "learner"
    outsider = {"role": "follower", "config": {"old": ["z@a:1"], "new": []}}
    assert status._state("z@d:4", outsider, None) == "learner"


def test_partition_groups_put_unlisted_nodes_together(tmp_path: Path, monkeypatch) -> None:
    cluster = LocalCluster(tmp_path, 4)
    sent: dict[str, list] = {}

    def fake_each(pool, cl, request, timeout):
        for n in cl.nodes:
            _op, args = request(n)
            sent[n.address] = args[0]
    monkeypatch.setattr(admin, "_each_node", fake_each)
    n1, n2, n3, n4 = cluster.nodes
    blocked = admin.partition(None, cluster, [[n1]])  # type: ignore[arg-type]
    assert blocked == sent
    assert sorted(blocked[n1.address]) == sorted([n2.address, n3.address, n4.address])
    for n in (n2, n3, n4):
        assert blocked[n.address] == [n1.address]
    blocked = admin.partition(None, cluster, [[n1, n2], [n3]])  # type: ignore[arg-type]
    assert sorted(blocked[n1.address]) == sorted([n3.address, n4.address])
    assert sorted(blocked[n3.address]) == sorted([n1.address, n2.address, n4.address])
    assert sorted(blocked[n4.address]) == sorted([n1.address, n2.address, n3.address])
    fault = json.loads((tmp_path / "faults.jsonl").read_text().splitlines()[-1])
    assert fault["groups"] == [[1, 2], [3], [4]]


def test_load_never_adopts_a_recycled_pid(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, 2)
    cluster.save()
    doc = json.loads((tmp_path / CLUSTER_FILE).read_text())
    doc["nodes"][0].update(pid=os.getpid(), create_time=1.0)  # our pid, another start time
    doc["nodes"][1].update(pid=None, create_time=None)
    (tmp_path / CLUSTER_FILE).write_text(json.dumps(doc))
    loaded = LocalCluster.load(tmp_path)
    assert [n.proc for n in loaded.nodes] == [None, None]
    assert not any(n.alive() for n in loaded.nodes)
    assert loaded.peers == cluster.peers and loaded.cookie == cluster.cookie
    assert loaded.node("node2") is loaded.nodes[1] and loaded.node(2) is loaded.nodes[1]


@pytest.mark.integration
def test_env_reaches_the_node_and_an_exiting_node_fails_fast(tmp_path: Path) -> None:
    """`env=` sets a node's environment (kept in cluster.json); a node that exits at start
    is reported at once with its exit code, not after the listen timeout."""
    import time

    from zraft.errors import ZRaftError

    cluster = LocalCluster(tmp_path, 1, env={"ZRAFT_TEST_MUTATIONS": "no_such_mutation"})
    started = time.monotonic()
    with pytest.raises(ZRaftError, match="exited \\(code 2\\)"):
        cluster.start()
    assert time.monotonic() - started < 10
    assert "no_such_mutation" in (tmp_path / "node1" / "stdout.log").read_text()
    cluster.stop()
    assert LocalCluster.load(tmp_path).env == {"ZRAFT_TEST_MUTATIONS": "no_such_mutation"}


def test_sparkline_scales_to_the_peak_and_width() -> None:
    from zraft.loadgen.commands import sparkline

    assert sparkline([0, 4, 8]) == " ▄█"
    assert len(sparkline(list(range(500)), width=40)) == 40


def test_events_follow_prints_new_events(tmp_path: Path, monkeypatch, capsys) -> None:
    """--follow prints the timeline, then each event logged later, once."""
    from zraft.cli import main as zraft_main
    from zraft.cluster import commands

    faults = tmp_path / "faults.jsonl"
    faults.write_text('{"t": 10.0, "kind": "heal", "source": "cluster"}\n')
    sleeps = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:
            with open(faults, "a") as f:
                f.write('{"t": 11.0, "kind": "kill", "source": "cluster", "index": 2}\n')
        else:
            raise KeyboardInterrupt
    monkeypatch.setattr(commands.time, "sleep", fake_sleep)
    assert zraft_main(["cluster", "events", "--dir", str(tmp_path), "--follow"]) == 130
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "heal" in lines[0] and "kill node 2" in lines[1]
