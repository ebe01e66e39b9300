"""The sqlite backend against the dict backend, side by side in one run (issue 14).

``python -m bench.sqlite_compare [--w2-ops N] [--w5-ops N] [--rounds N] [--w2-only]
[--quick]``: a fresh 3-node cluster per backend (``ZraftSide``, the nodes and client of
``bench.workloads``), both started at once;
- W2-style durable inserts: 1 connection x 1,000 outstanding writes of 100-byte values
  (dict: ``["put", k, v]``; sqlite: ``INSERT OR REPLACE INTO kv(k, v) VALUES (?, ?)``
  over the same 10,000 keys), ops/s, on the two clusters in turn, ``--rounds`` times
  (``w2_rounds``); ``w2_ratio`` is the median of the rounds' sqlite/dict ratios, and
  ``w2_cpu_ratio`` the median of dict/sqlite CPU of the three nodes per write (the
  throughput ratio on a machine of their own; far steadier on a shared one);
- then, one backend after the other (the other cluster stopped), W5: 4 KiB values, 1,000
  outstanding, RSS per node after the writes and once idle, then the follower catch-up
  of ``bench.workloads.catch_up`` (by snapshot).
Prints one JSON document.

The catch-up by snapshot (``by_snapshot`` of each backend, issue 14's figure): a follower
stopped while the others wrote past their log compaction is restarted; the figure is the
snapshot's bytes (what the leader's sendfile sent: the session table and the backend's
files) over the time from when the follower's node accepted the leader's offer (its
``snapshot_receiving`` event, before its receiver listens) to when its state machine had
installed the snapshot (``snapshot_installed``: received, every byte checked against its
sha256, fsynced and placed in the snapshot store, then the backend's install: sqlite
copies the file beside its live database and renames it over; dict decodes it), both
stamped by the follower's clock. It leaves out the restart itself and Raft finding that the
follower needs a snapshot, and the entries after the snapshot that the follower then
applies from the log (all in ``catch_up_s``). ``ratio`` is its rate over raw loopback
sendfile of the same size measured in the same run (``bench.loopback``, best of 3).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import tempfile
from pathlib import Path
from typing import Any

import msgpack
import psutil

from bench.cpu_cost import _cpu
from bench.engine import Ops, Request
from bench.sides import ZraftSide
from bench.workloads import Sizes, _run, _summary, w5_large_values
from zraft.client import api
from zraft.cluster import admin
from zraft.cluster.local import LocalCluster

UPSERT = "INSERT OR REPLACE INTO kv(k, v) VALUES (?, ?)"


class SqlOps(Ops):
    """The same keys and values as ``Ops``, as SQL writes."""

    def put(self, i: int) -> Request:
        return self.put_kv(f"k{i % 10_000}", self.values[i % len(self.values)])

    def put_kv(self, key: str, value: bytes) -> Request:
        return "propose", [self.peer_name,
                           msgpack.packb([1, ["exec", UPSERT, [key, value]]]), None]


class SqliteSide(ZraftSide):
    """``ZraftSide`` whose group runs the sqlite backend."""

    def start(self) -> None:
        self.cluster = LocalCluster(self.dir, 3, election_timeout=self.election_timeout,
                                    max_log_count=self.max_log_count,
                                    extra_raft=self.extra_raft, backend="sqlite")
        self.cluster.start()
        self.cookie = self.cluster.cookie.encode()
        self.peer_name = self.cluster.peer_name
        self.peers = list(self.cluster.peers)
        self.pool = self.new_pool()
        admin.create(self.pool, self.cluster, "sqlite", 30.0)


def _side(backend: str, base: Path) -> ZraftSide:
    side = (SqliteSide if backend == "sqlite" else ZraftSide)(base / backend)
    side.start()
    if backend == "sqlite":
        leader = side.peers[side.leader()]
        api.write(leader, ["exec", "CREATE TABLE kv(k TEXT PRIMARY KEY, v BLOB)"],
                  timeout=10, pool=side.pool)
    return side


def w2_rounds(sides: dict[str, ZraftSide], sizes: Sizes, rounds: int) -> dict[str, Any]:
    """W2 on both clusters in turn, ``rounds`` times (which goes first alternates), each
    ``sizes.w2_ops`` writes: a ratio per round from two runs a few seconds apart, so that
    the other work of a shared machine weighs on both alike; the figure is their median."""
    runs: dict[str, list[dict[str, Any]]] = {b: [] for b in sides}
    ratios, cpu_ratios = [], []
    for r in range(rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for backend in order:
            side = sides[backend]
            ops = (SqlOps if backend == "sqlite" else Ops)(side.peer_name, 100)
            procs = [psutil.Process(side.pid(i)) for i in range(len(side.peers))]
            before = [_cpu(p) for p in procs]
            res = _run(side, ops.put, sizes.w2_ops, 1_000, 1, sizes.time_limit, ops.put(0))
            summary = _summary(res)
            # CPU of the three nodes per write: what throughput is made of on a machine
            # of its own, and far less moved than throughput by the machine's other work
            summary["nodes_cpu_us"] = round(sum(_cpu(p) - b for p, b in zip(
                procs, before, strict=True)) / max(1, res.ok) * 1e6, 1)
            runs[backend].append(summary)
        d, q = runs["dict"][-1], runs["sqlite"][-1]
        ratios.append(q["ops_per_s"] / d["ops_per_s"] if d["ops_per_s"] else 0.0)
        cpu_ratios.append(d["nodes_cpu_us"] / q["nodes_cpu_us"] if q["nodes_cpu_us"] else 0.0)
    return {"ops_per_s": {b: [x["ops_per_s"] for x in v] for b, v in runs.items()},
            "nodes_cpu_us": {b: [x["nodes_cpu_us"] for x in v] for b, v in runs.items()},
            "ratios": [round(x, 3) for x in ratios],
            "ratio": round(statistics.median(ratios), 3),
            "cpu_ratios": [round(x, 3) for x in cpu_ratios],
            "cpu_ratio": round(statistics.median(cpu_ratios), 3), "runs": runs}


def w5_and_catch_up(backend: str, side: ZraftSide, sizes: Sizes) -> dict[str, Any]:
    make = SqlOps if backend == "sqlite" else Ops
    w5 = w5_large_values(side, sizes, make(side.peer_name, 4096, 256))
    return {"W5": w5, "by_snapshot": by_snapshot(side, w5)}


def by_snapshot(side: ZraftSide, w5: dict[str, Any]) -> dict[str, Any] | None:
    """The catch-up by snapshot of the module docstring, from the follower's events."""
    sent = w5.get("catch_up_snapshot_bytes")
    for i in range(len(side.peers)):
        events = (side.node_status(i) or {}).get("events") or []
        start = next((e for e in reversed(events) if e.get("kind") == "snapshot_receiving"),
                     None)
        if start is None or not sent:
            continue
        end = next((e for e in events if e.get("kind") == "snapshot_installed"
                    and e["t"] >= start["t"]), None)
        if end is None:
            return {"error": "no snapshot_installed after snapshot_receiving"}
        seconds = max(end["t"] - start["t"], 0.001)  # (events are stamped to the ms)
        rate = sent / seconds / 1e6
        raw = w5.get("sendfile_mb_per_s") or 0.0
        return {"bytes": sent, "seconds": round(seconds, 3), "mb_per_s": round(rate, 1),
                "sendfile_mb_per_s": round(raw, 1),
                "ratio": round(rate / raw, 3) if raw else None}
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sqlite_compare",
                                     description=__doc__)
    parser.add_argument("--w2-ops", type=int, default=20_000)
    parser.add_argument("--w5-ops", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="a few hundred operations")
    parser.add_argument("--w2-only", action="store_true", help="W2 only (no W5, no catch-up)")
    parser.add_argument("--rounds", type=int, default=3, help="W2 rounds per backend")
    args = parser.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes(w2_ops=args.w2_ops, w5_ops=args.w5_ops,
                                                   time_limit=60.0)
    base = Path(tempfile.mkdtemp(prefix="zraft-sqlite-bench-"))
    out: dict[str, Any] = {"machine": f"{platform.machine()} {platform.processor()} "
                                      f"{os.cpu_count()} cpus",
                           "python": platform.python_version(),
                           "sqlite": sqlite3.sqlite_version,
                           "load_before": round(os.getloadavg()[0], 1)}
    sides: dict[str, ZraftSide] = {}
    try:
        for backend in ("dict", "sqlite"):
            sides[backend] = _side(backend, base)
        out["W2"] = w2_rounds(sides, sizes, max(1, args.rounds))
        out["w2_ratio"] = out["W2"]["ratio"]
        out["w2_cpu_ratio"] = out["W2"]["cpu_ratio"]
        for backend in list(sides):  # one after the other, on its own
            if not args.w2_only:
                out[backend] = w5_and_catch_up(backend, sides[backend], sizes)
            sides.pop(backend).stop()
    finally:
        for side in sides.values():
            side.stop()
    out["load_after"] = round(os.getloadavg()[0], 1)
    print(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
