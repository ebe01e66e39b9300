"""Idle cost of groups, and failover of idle groups, on a 3-node local cluster.

    python bench/idle_cpu.py [--groups 0 50 100] [--seconds 10] [--failover]

Creates groups of 3 peers (``g<i>``, each bootstrapped on node 1, so node 1 leads them
all), one write each; at each count waits ``--settle`` seconds, then measures CPU time of
every node process over ``--seconds`` (percent of one core) and its threads. With
``--failover``: kill -9 node 1 and time until every group has a leader again (from the
nodes' EVENT lines: the first leader election of each group after the kill).

Runs the zraft that ``python`` imports (the nodes too: LocalCluster puts that package on
their path), so the same script measures two builds side by side:
``/work/main/.venv/bin/python bench/idle_cpu.py`` (run from outside the worktree) vs
``.venv/bin/python bench/idle_cpu.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import psutil

import zraft
from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster import LocalCluster


def cpu_percent(procs: list[psutil.Process], seconds: float) -> list[float]:
    before = [sum(p.cpu_times()[:2]) for p in procs]
    time.sleep(seconds)
    after = [sum(p.cpu_times()[:2]) for p in procs]
    return [round(100 * (a - b) / seconds, 1) for a, b in zip(after, before, strict=True)]


def create(cluster: LocalCluster, pool: ConnectionPool, first: int, last: int) -> float:
    started = time.monotonic()
    for i in range(first, last):
        peers = [f"g{i}@{n.address}" for n in cluster.nodes]
        api.create(peers, "dict", timeout=30, pool=pool)
        api.write(peers[0], ["put", "k", i], timeout=30, pool=pool)
    return time.monotonic() - started


def leaders_since(cluster: LocalCluster, nodes: list, since: float) -> dict[str, float]:
    """group name -> wall time of its first leader election after ``since``, from the
    ``EVENT`` role lines in the nodes' console logs (polling stat per group would time the
    polling: 200 stat calls take seconds on a busy machine)."""
    found: dict[str, float] = {}
    for n in nodes:
        path = n.directory / "log" / "console.log"
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            at = line.find("EVENT {")
            if at < 0 or '"role"' not in line:
                continue
            event = json.loads(line[at + 6:])
            if event.get("kind") != "role" or event.get("role") != "leader":
                continue
            t = float(event["t"])
            group = str(event.get("peer", "")).partition("@")[0]
            if t >= since and (group not in found or t < found[group]):
                found[group] = t
    return found


def failover(cluster: LocalCluster, groups: int, limit: float = 60.0) -> dict[str, object]:
    victim = cluster.nodes[0]
    alive = cluster.nodes[1:]
    killed_at = time.time()
    cluster.kill(victim)
    deadline = time.monotonic() + limit
    found: dict[str, float] = {}
    while time.monotonic() < deadline:
        found = leaders_since(cluster, alive, killed_at)
        if len(found) >= groups:
            break
        time.sleep(0.5)
    after = sorted(t - killed_at for t in found.values())
    return {"groups": groups, "led_again": len(found),
            "median_s": round(after[len(after) // 2], 2) if after else None,
            "all_led_after_s": round(after[-1], 2) if after else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, nargs="+", default=[0, 50, 100])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--election-timeout", type=int, default=500)
    parser.add_argument("--failover", action="store_true")
    args = parser.parse_args(argv)
    build = str(Path(zraft.__file__).resolve().parent.parent)
    results: dict = {"build": build, "election_timeout_ms": args.election_timeout,
                     "idle": []}
    with tempfile.TemporaryDirectory(prefix="zraft-idle-") as tmp:
        cluster = LocalCluster(Path(tmp) / "c", 3, election_timeout=args.election_timeout)
        cluster.start()
        pool = ConnectionPool(cluster.cookie.encode())
        try:
            procs = [psutil.Process(n.pid) for n in cluster.nodes]
            made = 0
            for count in sorted(args.groups):
                took = create(cluster, pool, made, count) if count > made else 0.0
                made = max(made, count)
                time.sleep(args.settle)
                cpu = cpu_percent(procs, args.seconds)
                row = {"groups": made, "create_s": round(took, 1), "cpu_percent": cpu,
                       "threads": [p.num_threads() for p in procs]}
                results["idle"].append(row)
                print(json.dumps(row), flush=True)
            if args.failover and made:
                results["failover"] = failover(cluster, made)
                print(json.dumps(results["failover"]), flush=True)
        finally:
            pool.close()
            cluster.stop()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
