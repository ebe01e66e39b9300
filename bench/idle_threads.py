"""Threads and idle CPU per node against the number of idle groups (issue 15's first table).

``python -m bench.idle_threads [--groups 0,50,100] [--idle-s 10] [--settle-s 3]``: one
3-node local cluster at the default settings; groups (3 peers each, one per node, dict
backend) are added up to each count, then, once they settled, every node's thread count
and CPU over ``--idle-s`` seconds of idleness are read (psutil, by pid). Only public zraft
APIs, so the same file measures any build: run it with that build's interpreter.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster.admin import ask
from zraft.cluster.local import LocalCluster
from zraft.errors import AlreadyPresent


def _create(cluster: LocalCluster, pool: Any, i: int) -> None:
    peers = [f"g{i}@{n.address}" for n in cluster.nodes]
    for attempt in range(5):
        try:
            api.create(peers, "dict", timeout=30.0, pool=pool)
            return
        except AlreadyPresent:  # an earlier attempt made it (its answer timed out)
            return
        except Exception:  # a busy node (retry): try again
            if attempt == 4:
                raise
            time.sleep(1.0)


def _wakeups(cluster: LocalCluster, pool: Any) -> list[int | None]:
    """Each node's timer wake-ups so far (node_status; None: a build without the timer)."""
    out: list[int | None] = []
    for n in cluster.nodes:
        status, payload = ask(pool, cluster.peer_id(n), "node_status", [], 10.0)
        threads = payload.get("threads") if status == "ok" and isinstance(payload, dict) \
            else None
        out.append(threads["timer_wakeups"] if isinstance(threads, dict) else None)
    return out


def measure(cluster: LocalCluster, pool: Any, idle_s: float) -> list[dict[str, Any]]:
    procs = [psutil.Process(n.pid) for n in cluster.nodes]
    woken = _wakeups(cluster, pool)
    before = [p.cpu_times() for p in procs]
    time.sleep(idle_s)
    out = []
    for p, b in zip(procs, before, strict=True):
        t = p.cpu_times()
        cpu = (t.user + t.system - b.user - b.system) / idle_s * 100
        out.append({"threads": p.num_threads(), "cpu_pct": round(cpu, 1),
                    "rss_mb": round(p.memory_info().rss / 2**20, 1)})
    for row, w0, w1 in zip(out, woken, _wakeups(cluster, pool), strict=True):
        row["wakeups_s"] = None if w0 is None or w1 is None else round((w1 - w0) / idle_s)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", default="0,50,100")
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--settle-s", type=float, default=3.0)
    ap.add_argument("--parallel", type=int, default=8)
    args = ap.parse_args()
    counts = [int(x) for x in args.groups.split(",")]
    with tempfile.TemporaryDirectory(prefix="zraft-idle-") as tmp:
        cluster = LocalCluster(Path(tmp), 3)
        cluster.start()
        pool = ConnectionPool(cluster.cookie.encode(), connect_timeout=5.0)
        made = 0
        try:
            for count in counts:
                started = time.monotonic()
                with concurrent.futures.ThreadPoolExecutor(args.parallel) as ex:
                    list(ex.map(lambda i: _create(cluster, pool, i), range(made, count)))
                took = time.monotonic() - started
                made = max(made, count)
                time.sleep(args.settle_s)
                rows = measure(cluster, pool, args.idle_s)
                threads = "/".join(str(r["threads"]) for r in rows)
                cpu = "/".join(f"{r['cpu_pct']}" for r in rows)
                rss = "/".join(f"{r['rss_mb']:.0f}" for r in rows)
                # peer wake-ups per second: the timer's on a build with it, else the
                # ticker's (a Tick to every peer every tick: tick = election_timeout / 10)
                wake = "/".join(str(r["wakeups_s"]) if r["wakeups_s"] is not None
                                else f"{count * 10_000 // cluster.election_timeout}(ticks)"
                                for r in rows)
                print(f"groups {count:5d}: threads {threads}  idle CPU % {cpu}  "
                      f"RSS MB {rss}  wake-ups/s {wake}  (created in {took:.1f}s)",
                      flush=True)
        finally:
            pool.close()
            cluster.stop()


if __name__ == "__main__":
    main()
