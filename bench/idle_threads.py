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


def measure(cluster: LocalCluster, idle_s: float) -> list[dict[str, Any]]:
    procs = [psutil.Process(n.pid) for n in cluster.nodes]
    before = [p.cpu_times() for p in procs]
    time.sleep(idle_s)
    out = []
    for p, b in zip(procs, before, strict=True):
        t = p.cpu_times()
        cpu = (t.user + t.system - b.user - b.system) / idle_s * 100
        out.append({"threads": p.num_threads(), "cpu_pct": round(cpu, 1),
                    "rss_mb": round(p.memory_info().rss / 2**20, 1)})
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
                rows = measure(cluster, args.idle_s)
                threads = "/".join(str(r["threads"]) for r in rows)
                cpu = "/".join(f"{r['cpu_pct']}" for r in rows)
                rss = "/".join(f"{r['rss_mb']:.0f}" for r in rows)
                print(f"groups {count:5d}: threads {threads}  idle CPU % {cpu}  "
                      f"RSS MB {rss}  (created in {took:.1f}s)", flush=True)
        finally:
            pool.close()
            cluster.stop()


if __name__ == "__main__":
    main()
