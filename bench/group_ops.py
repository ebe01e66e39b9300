"""Requests to many groups at once, and what a node process costs: the building blocks of
``bench.many_groups``.

Rules:
- Requests to many peers go through ``zraft.cluster.fanout.fan_out`` (a window in flight,
  one deadline, no thread per request).
- A group is named by its peer name; its peers are ``name@node`` on every node.
- ``NodeCost`` reads a node process from outside (psutil): threads, CPU seconds, RSS, and
  the disk its data directory really uses (allocated blocks, as ``du`` counts them: a
  preallocated segment counts whole).
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from zraft.client.connection import ConnectionPool
from zraft.cluster.fanout import fan_out


def group_leaders(pool: ConnectionPool, names: Sequence[str], nodes: Sequence[str],
                  timeout: float = 10.0) -> dict[str, str | None]:
    """Each group's leader peer id as its peers on ``nodes`` (addresses) see it: the peer
    that says it leads with the highest term; None if none does."""
    reqs = [(f"{name}@{node}", "stat", [name]) for name in names for node in nodes]
    best: dict[str, tuple[int, str] | None] = dict.fromkeys(names)
    for (peer, _op, args), (status, payload) in zip(reqs, fan_out(pool, reqs, timeout),
                                                    strict=True):
        if status == "ok" and isinstance(payload, dict) and payload.get("role") == "leader":
            term = int(payload.get("term") or 0)
            cur = best[args[0]]
            if cur is None or term > cur[0]:
                best[args[0]] = (term, peer)
    return {name: (b[1] if b else None) for name, b in best.items()}


# ---------------------------------------------------------------- node processes


def disk_bytes(path: Path) -> int:
    """Bytes allocated under ``path`` (``du``'s count: st_blocks x 512)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


@dataclass
class NodeCost:
    threads: int
    cpu_pct: float  # % of one core over the window
    rss_mb: float
    disk_mb: float


def measure_nodes(procs: Sequence[psutil.Process], data_dirs: Sequence[Path],
                  window: float) -> list[NodeCost]:
    """Each node's threads and RSS (at the end), CPU over ``window`` seconds, disk."""
    before = [cpu_seconds(p) for p in procs]
    t0 = time.monotonic()
    time.sleep(window)  # the measurement window itself, not a synchronisation
    elapsed = time.monotonic() - t0
    out = []
    for p, b, d in zip(procs, before, data_dirs, strict=True):
        out.append(NodeCost(threads=p.num_threads(),
                            cpu_pct=100.0 * (cpu_seconds(p) - b) / elapsed,
                            rss_mb=p.memory_info().rss / 2**20,
                            disk_mb=disk_bytes(d) / 2**20))
    return out


def fsync_count(metrics_port: int, timeout: float = 5.0) -> float | None:
    """Fsyncs the node did so far, from its ``/metrics`` (the count of the
    ``zraft_fsync_seconds`` histogram over all peers); None without a metrics endpoint."""
    if not metrics_port:
        return None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=timeout) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith("zraft_fsync_seconds_count"):
            with contextlib.suppress(ValueError):
                total += float(line.rsplit(" ", 1)[1])
    return total
