"""What groups cost a node in storage: disk, files, descriptors, and fsyncs under writes.

    .venv/bin/python -m bench.group_storage --groups 100 --active 1,10,100
    .venv/bin/python -m bench.group_storage --groups 10000 --logs-only

Starts a 3-node local cluster (``zraft cluster``'s LocalCluster, in a temporary directory
unless ``--dir``), creates ``--groups`` groups of 3 peers (one per node), then prints per
node: disk used (allocated blocks of every file and directory under its data directory),
files, directories, open descriptors. Then, for each count in ``--active``, writes to that
many groups at once (one writer thread per group, each with one write outstanding) for
``--seconds`` and prints durable writes/s and, per node, the fsync calls per second its
logs made (``node_status`` ``log_sync``; None on a build without it) next to the log
batches per second its groups made durable (the log writers' ``fsync_batches``: one
fdatasync each when every group synced its own files, as before the shared sync).
(strace -f on a node with hundreds of threads stalls it: not used.) Runs the nodes of
whatever ``zraft`` this interpreter imports.
"""

from __future__ import annotations

import argparse
import os
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


def sync_counters(status: Any) -> tuple[int, int]:
    """(fsync calls the node made for its logs, log batches its groups asked to make
    durable: what one fdatasync per group and batch, as before the shared sync, costs)."""
    requested = 0
    for peer in (status.get("peers") or {}).values():
        requested += ((peer or {}).get("log_writer") or {}).get("fsync_batches", 0)
    log_sync = status.get("log_sync")
    return (log_sync["fsyncs"] if log_sync else -1), requested


def run_writes(cluster: LocalCluster, pool: Any, groups: list[int],
               seconds: float) -> dict[str, Any]:
    done = [0] * len(groups)
    errors = [0]
    stop = [0.0]

    def writer(k: int, g: int) -> None:
        target: Any = f"g{g}@{cluster.nodes[0].address}"
        while time.monotonic() < stop[0]:
            try:
                _result, target = zraft.write(target, ["k", done[k]], timeout=10, pool=pool)
                done[k] += 1
            except zraft.ZRaftError:
                errors[0] += 1

    before = {n.index: sync_counters(node_status(pool, cluster, n)) for n in cluster.nodes}
    started = time.perf_counter()
    stop[0] = time.monotonic() + seconds
    threads = [threading.Thread(target=writer, args=(k, g)) for k, g in enumerate(groups)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    after = {n.index: sync_counters(node_status(pool, cluster, n)) for n in cluster.nodes}
    per_node = {}
    for n in cluster.nodes:
        (f0, r0), (f1, r1) = before[n.index], after[n.index]
        per_node[n.index] = {"fsyncs_per_s": round((f1 - f0) / took) if f0 >= 0 else None,
                             "group_batches_per_s": round((r1 - r0) / took)}
    return {"active": len(groups), "writes_per_s": round(sum(done) / took),
            "errors": errors[0], "nodes": per_node}


def logs_only(count: int, workdir: Path) -> None:
    """N group logs in one process, as a node lays them out (no node, no network): disk
    per group, descriptors held, and the time to reopen (recover) all of them."""
    from zraft.core.entries import CONFIG, NOOP, ClusterConfig, Entry, HardState
    from zraft.storage import DiskLogStorage
    from zraft.storage.fd_cache import SEGMENT_FILES

    root = workdir / "logs"
    root.mkdir(parents=True, exist_ok=True)
    base = disk_usage(root)["bytes"]
    fds0 = open_fds(os.getpid())
    started = time.perf_counter()
    for i in range(count):
        peers = [f"g{i}@127.0.0.1:{7000 + k}" for k in range(3)]
        store = DiskLogStorage.open(root, peers[0], backend="dict")
        store.stage_hard_state(HardState(2, peers[0]))
        store.stage_append([Entry(1, 1, CONFIG, ClusterConfig((), tuple(peers)), 0),
                            Entry(2, 2, NOOP, None, 0)])
        store.sync()
        (store.peer_path / "snapshots").mkdir(exist_ok=True)  # what the snapshot store makes
        store.close()
    made = time.perf_counter() - started
    use = disk_usage(root)
    print(f"{count} group logs written in {made:.1f} s: disk {(use['bytes'] - base) / 1e6:.1f} MB"
          f" ({(use['bytes'] - base) / count / 1024:.0f} KiB per group), files {use['files']},"
          f" dirs {use['dirs']}")
    started = time.perf_counter()
    stores = [DiskLogStorage.open(root, f"g{i}@127.0.0.1:7000") for i in range(count)]
    took = time.perf_counter() - started
    print(f"reopened (recovered) all {count} in {took:.1f} s; descriptors held: "
          f"{open_fds(os.getpid()) - fds0} (open segment files {SEGMENT_FILES.open_files}, "
          f"cap {SEGMENT_FILES.limit})")
    for store in stores:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--active", default="1,10,100")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=8, help="groups created at once")
    ap.add_argument("--dir")
    ap.add_argument("--logs-only", action="store_true",
                    help="only the group logs, in this process (no cluster)")
    args = ap.parse_args()
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="group-storage-"))
    if args.logs_only:
        logs_only(args.groups, workdir)
        return
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
                                args.seconds)
            print(result)
    finally:
        pool.close()
        cluster.stop()


if __name__ == "__main__":
    main()
