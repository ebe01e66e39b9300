"""add-node / remove-node, `down` leaving no process behind, the client commands with --dir,
the events timeline, and the `make run` demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.cluster.conftest import Cli, kill_pids
from zraft.cluster import demo
from zraft.cluster.local import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_add_node_then_remove_node(cli: Cli, up) -> None:
    up()
    added = cli.json("add-node")
    assert added["node"] == 4 and len(added["peers"]) == 4
    cli.pids.add(added["pid"])
    assert cli("write", "--dir", str(cli.dir), "k", "v")[0] == 0

    def voter() -> bool:
        row = cli.status()[4]
        # a caught-up voter may also be the leader: an election (a leader starved of CPU
        # for an election timeout) can pick node 4, which then keeps leading
        assert row["state"] in ("follower", "leader") and row["lag"] == 0, \
            {k: row[k] for k in ("state", "lag", "term", "last_index")}
        return True
    wait_until(voter, 15, "node 4 to be a caught-up voter")  # names the last row seen
    code, out = cli("conf", "get", "--dir", str(cli.dir), "--json")
    assert code == 0 and added["peer"] in json.loads(out)["peers"]

    removed = cli.json("remove-node", "4")
    assert added["peer"] not in removed["peers"] and len(removed["peers"]) == 3
    assert 4 not in cli.status()
    assert not psutil.pid_exists(added["pid"]) or \
        psutil.Process(added["pid"]).status() == psutil.STATUS_ZOMBIE
    code, out = cli("conf", "get", "--dir", str(cli.dir), "--json")
    assert sorted(json.loads(out)["peers"]) == sorted(removed["peers"])
    assert cli("read", "--dir", str(cli.dir), "k")[1].strip() == "v"
    assert (cli.dir / "node4").is_dir(), "a removed node's data stays"
    again = cli.json("add-node")
    cli.pids.add(again["pid"])
    assert again["node"] == 5, "a new node never reuses a removed node's directory"


def test_down_leaves_no_process_behind(tmp_path: Path) -> None:
    """The real command line, in separate processes, as a user would run it."""
    directory = tmp_path / "c"
    zraft = [sys.executable, "-m", "zraft.cli"]

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*zraft, *argv], capture_output=True, text=True, timeout=60)

    result = run("cluster", "up", "--dir", str(directory), "--election-timeout", "300", "--json")
    pids = set(json.loads(result.stdout)["pids"]) if result.returncode == 0 else set()
    try:
        assert result.returncode == 0, result.stderr
        assert all(psutil.pid_exists(p) for p in pids)
        assert run("write", "--dir", str(directory), "answer", "42").returncode == 0
        read = run("read", "--dir", str(directory), "answer", "--json")
        assert json.loads(read.stdout)["value"] == 42
        assert run("cluster", "pause", "2", "--dir", str(directory)).returncode == 0
        down = run("cluster", "down", "--dir", str(directory), "--purge", "--json")
        assert down.returncode == 0, down.stderr
        assert set(json.loads(down.stdout)["stopped"]) == pids
        assert not directory.exists()
        for pid in pids:  # reaped by init once our short-lived parent exited
            wait_until(lambda pid=pid: not psutil.pid_exists(pid)
                       or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                       10, f"pid {pid} to be gone")
    finally:
        kill_pids(pids)


def test_events_timeline_shows_the_leader_change_after_a_kill(cli: Cli, up) -> None:
    first = up()["leader"]
    cli.json("kill", "leader")
    wait_until(lambda: any(r["state"] == "leader" for r in cli.status().values()), 15,
               "a new leader")
    timeline = cli.json("events")
    kinds = [e["category"] for e in timeline]
    assert "fault" in kinds and "leader" in kinds
    kill_at = next(e["t"] for e in timeline if e.get("kind") == "kill")
    later = [e for e in timeline if e["category"] == "leader" and e["t"] > kill_at]
    assert later and later[0]["peer"] != first
    assert [e["t"] for e in timeline] == sorted(e["t"] for e in timeline)
    code, text = cli.cluster("events", "--kind", "leader")
    assert code == 0 and "became LEADER" in text and later[0]["peer"] in text


def test_demo_runs_green(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "demo"
    try:
        assert demo.run(str(directory), seconds=4.0) == 0
        out = capsys.readouterr().out
        assert "DEMO FAILED" not in out
        for needle in ("cluster up in", "watch fired (data_changed)", "became leader in",
                       "caught up", "cluster down --dir"):
            assert needle in out
        assert all(n.alive() for n in demo.LocalCluster.load(directory).nodes), \
            "the demo leaves the cluster running"
    finally:
        cluster = demo.LocalCluster.load(directory)
        pids = {n.pid for n in cluster.nodes if n.pid}
        cluster.stop()
        kill_pids(pids)


def test_down_keeps_the_data_and_up_brings_it_back(cli: Cli, up) -> None:
    up()
    assert cli("write", "--dir", str(cli.dir), "kept", "yes")[0] == 0
    stopped = cli.json("down")["stopped"]
    assert len(stopped) == 3 and not cli.json("down")["stopped"]  # a second down: nothing left
    assert all(r["state"] == "down" for r in cli.status().values())
    again = cli.json("up")
    cli.pids.update(again["pids"])
    assert set(again["pids"]).isdisjoint(stopped)
    assert cli("read", "--dir", str(cli.dir), "kept")[1].strip() == "yes"
