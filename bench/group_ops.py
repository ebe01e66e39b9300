"""Requests to many groups at once, and what a node process costs: the building blocks of
``bench.many_groups``.

Rules:
- ``fan_out`` sends many independent requests over one ``ConnectionPool`` with at most
  ``window`` in flight, each answered or given up at the deadline (``timeout``): no
  thread per request, no retry.
- A group is named by its peer name; its peers are ``name@node`` on every node.
- ``NodeCost`` reads a node process from outside (psutil): threads, CPU seconds, RSS, and
  the disk its data directory really uses (allocated blocks, as ``du`` counts them: a
  preallocated segment counts whole).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from zraft.client.connection import ConnectionPool

Request = tuple[str, str, list[Any]]  # (peer id, op, args)


def fan_out(pool: ConnectionPool, requests: Sequence[Request], timeout: float,
            window: int = 256) -> list[tuple[str, Any]]:
    """Every request's ``(status, payload)`` in order; ``("timeout", None)`` for those not
    answered by the deadline (not sent at all past it)."""
    results: list[tuple[str, Any] | None] = [None] * len(requests)
    lock = threading.Lock()
    done = threading.Event()
    state = {"next": 0, "answered": 0}
    deadline = time.monotonic() + timeout
    cancels: dict[int, Any] = {}

    def send_next() -> None:
        with lock:
            i = state["next"]
            if i >= len(requests) or time.monotonic() > deadline:
                return
            state["next"] = i + 1
        peer, op, args = requests[i]
        cancels[i] = pool.request(peer, op, args, lambda s, p: on_reply(i, s, p))

    def on_reply(i: int, status: str, payload: Any) -> None:
        with lock:
            results[i] = (status, payload)
            state["answered"] += 1
            finished = state["answered"] >= len(requests)
        cancels.pop(i, None)
        if finished:
            done.set()
        else:
            send_next()

    if not requests:
        return []
    for _ in range(min(window, len(requests))):
        send_next()
    done.wait(max(0.0, deadline - time.monotonic()))
    for i, cancel in list(cancels.items()):
        if results[i] is None:
            cancel()
    return [r if r is not None else ("timeout", None) for r in results]


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
