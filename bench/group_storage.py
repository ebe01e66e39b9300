"""What groups cost a node in storage: disk, files, descriptors, and fsyncs under writes.

    .venv/bin/python -m bench.group_storage --groups 100 --active 1,10,100 [--strace]

Starts a 3-node local cluster (``zraft cluster``'s LocalCluster, in a temporary directory
unless ``--dir``), creates ``--groups`` groups of 3 peers (one per node), then prints per
node: disk used (allocated blocks of every file and directory under its data directory),
files, directories, open descriptors. Then, for each count in ``--active``, writes to that
many groups at once (one writer thread per group, each with one write outstanding) for
``--seconds`` and prints durable writes/s and fsync calls per second on the leader-heavy
node: from ``node_status`` (``log_sync``), or with ``--strace`` by counting
fsync/fdatasync/syncfs calls with ``strace -c -f`` attached to every node (works against
any build, e.g. main's). Runs the nodes of whatever ``zraft`` this interpreter imports.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

import zraft
from zraft.cluster.admin import node_status, pool_for
from zraft.cluster.local import LocalCluster

SYSCALLS = ("fsync", "fdatasync", "syncfs")


def disk_usage(root: Path) -> dict[str, int]:
    blocks = files = dirs = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        dirs += 1
        blocks += os.lstat(dirpath).st_blocks
        for name in filenames:
            files += 1
            blocks += os.lstat(os.path.join(dirpath, name)).st_blocks
    return {"bytes": blocks * 512, "files": files, "dirs": dirs}


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def create_groups(cluster: LocalCluster, pool: Any, count: int, workers: int) -> float:
    started = time.perf_counter()

    def make(i: int) -> None:
        peers = [f"g{i}@{n.address}" for n in cluster.nodes]
        zraft.create(peers, "dict", timeout=60, pool=pool)

    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(make, range(count)))
    return time.perf_counter() - started


def strace_start(pid: int, out: Path) -> subprocess.Popen[bytes]:
    cmd = ["strace", "-c", "-f", "-e", "trace=" + ",".join(SYSCALLS), "-o", str(out),
           "-p", str(pid)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attaching to every thread takes a moment
    return proc


def strace_stop(proc: subprocess.Popen[bytes], out: Path) -> dict[str, int]:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    counts = dict.fromkeys(SYSCALLS, 0)
    for line in out.read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] in counts and len(parts) >= 5:
            numbers = [p for p in parts[:-1] if re.fullmatch(r"[0-9.]+", p)]
            counts[parts[-1]] = int(numbers[3] if len(numbers) >= 4 else numbers[-1])
    return counts


def sync_counter(status: Any) -> int | None:
    log_sync = status.get("log_sync") if isinstance(status, dict) else None
    return log_sync["fsyncs"] if log_sync else None


def run_writes(cluster: LocalCluster, pool: Any, groups: list[int], seconds: float,
               use_strace: bool, workdir: Path) -> dict[str, Any]:
    stop = time.monotonic() + seconds
    done = [0] * len(groups)

    def writer(k: int, g: int) -> None:
        target: Any = f"g{g}@{cluster.nodes[0].address}"
        while time.monotonic() < stop:
            _result, target = zraft.write(target, ["k", done[k]], timeout=10, pool=pool)
            done[k] += 1

    before = {n.index: sync_counter(node_status(pool, cluster, n)) for n in cluster.nodes}
    traces = {}
    if use_strace:
        for n in cluster.nodes:
            out = workdir / f"strace-{n.index}-{len(groups)}.txt"
            traces[n.index] = (strace_start(n.pid or 0, out), out)
    started = time.perf_counter()
    stop = time.monotonic() + seconds
    threads = [threading.Thread(target=writer, args=(k, g)) for k, g in enumerate(groups)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    after = {n.index: sync_counter(node_status(pool, cluster, n)) for n in cluster.nodes}
    per_node = {}
    for n in cluster.nodes:
        row: dict[str, Any] = {}
        if before[n.index] is not None and after[n.index] is not None:
            row["fsyncs_per_s"] = round((after[n.index] - before[n.index]) / took)
        if use_strace:
            counts = strace_stop(*traces[n.index])
            row["strace_per_s"] = round(sum(counts.values()) / took)
            row["strace"] = counts
        per_node[n.index] = row
    return {"active": len(groups), "writes_per_s": round(sum(done) / took),
            "nodes": per_node}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--active", default="1,10,100")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=8, help="groups created at once")
    ap.add_argument("--strace", action="store_true")
    ap.add_argument("--dir")
    args = ap.parse_args()
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="group-storage-"))
    cluster = LocalCluster(workdir / "cluster", nodes=3).start()
    pool = pool_for(cluster)
    try:
        base = {n.index: disk_usage(n.directory) for n in cluster.nodes}
        took = create_groups(cluster, pool, args.groups, args.workers)
        print(f"created {args.groups} groups in {took:.1f} s")
        for n in cluster.nodes:
            use = disk_usage(n.directory)
            per = (use["bytes"] - base[n.index]["bytes"]) / max(args.groups, 1)
            proc = psutil.Process(n.pid)
            print(f"node {n.index}: disk {use['bytes'] / 1e6:.1f} MB "
                  f"({per / 1024:.0f} KiB per group), files {use['files']}, dirs "
                  f"{use['dirs']}, open fds {open_fds(n.pid or 0)}, threads "
                  f"{proc.num_threads()}, rss {proc.memory_info().rss / 1e6:.0f} MB")
        for count in (int(x) for x in args.active.split(",") if x):
            result = run_writes(cluster, pool, list(range(min(count, args.groups))),
                                args.seconds, args.strace, workdir)
            print(result)
    finally:
        pool.close()
        cluster.stop()


if __name__ == "__main__":
    main()
