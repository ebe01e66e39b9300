"""Idle cost of groups, and failover of idle groups, on a 3-node local cluster.

    python bench/idle_cpu.py [--groups 0 50 100] [--seconds 10] [--failover]

Creates groups of 3 peers (``g<i>``, each bootstrapped on node 1, so node 1 leads them
all), one write each; at each count waits ``--settle`` seconds, then measures CPU time of
every node process over ``--seconds`` (percent of one core) and its threads. With
``--failover``: kill -9 node 1 and time until every group has a leader again (polled).

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


def leader_of(peers: list[str], pool: ConnectionPool) -> str | None:
    for peer in peers:
        try:
            if api.stat(peer, timeout=1, pool=pool).get("role") == "leader":
                return peer
        except Exception:
            continue
    return None


def failover(cluster: LocalCluster, pool: ConnectionPool, groups: int,
             limit: float = 60.0) -> dict[str, float | int]:
    victim = cluster.nodes[0]
    alive = cluster.nodes[1:]
    cluster.kill(victim)
    started = time.monotonic()
    waiting = set(range(groups))
    worst = 0.0
    while waiting and time.monotonic() - started < limit:
        for i in sorted(waiting):
            peers = [f"g{i}@{n.address}" for n in alive]
            if leader_of(peers, pool) is not None:
                waiting.discard(i)
                worst = time.monotonic() - started
        time.sleep(0.02)
    return {"groups": groups, "all_led_after_s": round(worst, 2), "leaderless": len(waiting)}


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
                results["failover"] = failover(cluster, pool, made)
                print(json.dumps(results["failover"]), flush=True)
        finally:
            pool.close()
            cluster.stop()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
