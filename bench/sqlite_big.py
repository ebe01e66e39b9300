"""A big database on the sqlite backend: node memory while writing and snapshotting, and
how fast a killed node serves again (issue 14's 1 GB figures).

``python -m bench.sqlite_big [--rows N] [--value-bytes B] [--batch R] [--writers W]``:
a local 3-node cluster of node processes (``LocalCluster``, one temporary directory,
deleted at the end unless ``--keep``) builds table ``big(id INTEGER PRIMARY KEY, v BLOB)``
with ``N`` rows (default 10,000,000 x 96-byte values: about 1.1 GB) in ``execmany`` writes
of ``R`` rows, ``W`` writes outstanding. Meanwhile a sampler reads every node's RSS
(psutil, every 0.2 s) and whether it is taking a snapshot (``stat()["fsm"]``), and keeps
the maximum per node for each phase (writing; writing while a snapshot is taken). Then,
for a follower and then for the leader: SIGKILL (by pid), start the process again and
time, from the new process's start, until it listens, until it answers ``query_local``
with the newest row (its own copy has caught up) and until a linearizable ``query`` sent
to it is answered (with the CPU seconds it used, and when its log says it recovered).
Last, a follower killed before ``--catch-up-rows`` more rows are written restarts and
catches up (by snapshot when the leader compacted past it): its time and bytes. Prints one
JSON document. ``--keep`` keeps the cluster's files (stopped); ``--reuse DIR`` runs the
restarts again on them without building.

``--rows 200000`` takes well under a minute (``make soak`` runs it); the full size takes
minutes (the README gives the figures and the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster.local import LocalCluster
from zraft.errors import ZRaftError

TABLE = "CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB NOT NULL)"
INSERT = "INSERT INTO big(id, v) VALUES (?, ?)"
NEWEST = "SELECT max(id) FROM big"
MB = 1 << 20


class Sampler(threading.Thread):
    """RSS of every node, labelled by whether that node is taking a snapshot."""

    def __init__(self, cluster: LocalCluster, pool: ConnectionPool) -> None:
        super().__init__(daemon=True)
        self.cluster, self.pool = cluster, pool
        self.stop = threading.Event()
        self.max_rss: dict[str, list[int]] = {"writing": [0, 0, 0], "snapshotting": [0, 0, 0]}
        self.snapshots_seen = [0, 0, 0]  # samples taken while the node snapshotted
        self._snapshotting = [False, False, False]

    def run(self) -> None:
        last_stat = 0.0
        while not self.stop.wait(0.2):
            if time.monotonic() - last_stat >= 0.5:
                last_stat = time.monotonic()
                for i, peer in enumerate(self.cluster.peers):
                    try:
                        fsm = api.stat(peer, timeout=2, pool=self.pool)["fsm"]
                        self._snapshotting[i] = bool(fsm.get("snapshot_in_progress"))
                    except (ZRaftError, OSError, KeyError, TypeError):
                        pass
            for i, node in enumerate(self.cluster.nodes):
                rss = node.rss()
                if rss is None:
                    continue
                phase = "snapshotting" if self._snapshotting[i] else "writing"
                self.snapshots_seen[i] += phase == "snapshotting"
                self.max_rss[phase][i] = max(self.max_rss[phase][i], rss)


def _leader(cluster: LocalCluster, pool: ConnectionPool, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for peer in cluster.peers:
            try:
                st = api.stat(peer, timeout=2, pool=pool)
            except (ZRaftError, OSError):
                continue
            if st.get("role") == "leader":
                return peer
        time.sleep(0.1)
    raise TimeoutError("no leader")


def build(cluster: LocalCluster, pool: ConnectionPool, rows: int, value_bytes: int,
          batch: int, writers: int, first: int = 1) -> dict[str, Any]:
    """Insert ids ``first .. first + rows - 1`` in ``execmany`` batches from ``writers``
    threads (each sends its next batch when the last one is answered)."""
    value = bytes(range(256)) * (value_bytes // 256 + 1)
    starts = list(range(first, first + rows, batch))
    lock = threading.Lock()
    leader = [_leader(cluster, pool)]
    errors: list[str] = []

    def work() -> None:
        while True:
            with lock:
                if not starts or errors:
                    return
                start = starts.pop()
            chunk = [[i, value[i % 256:i % 256 + value_bytes]]
                     for i in range(start, min(start + batch, first + rows))]
            for attempt in range(60):
                try:
                    api.write(leader[0], ["execmany", "INSERT OR REPLACE" + INSERT[6:],
                                          chunk], timeout=30, pool=pool)
                    break
                except ZRaftError as exc:  # a leader change: find it, send again
                    if attempt == 59:
                        errors.append(str(exc)[:200])
                        return
                    time.sleep(0.2)
                    with contextlib.suppress(TimeoutError):
                        leader[0] = _leader(cluster, pool, 10)

    t0 = time.monotonic()
    threads = [threading.Thread(target=work, daemon=True) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    if errors:
        raise RuntimeError(f"writes failed: {errors[0]}")
    return {"rows": rows, "seconds": round(took, 1), "rows_per_s": round(rows / took),
            "mb_per_s": round(rows * value_bytes / took / MB, 1)}


def _db_bytes(cluster: LocalCluster, index: int) -> int:
    return sum(p.stat().st_size for p in cluster.nodes[index].directory.rglob("live.db*")
               if p.is_file())


def _cpu(proc: psutil.Process) -> float | None:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return None
    return round(times.user + times.system, 2)


def _log_times(node_dir: Path, since: float) -> dict[str, float]:
    """Seconds after ``since`` (the process start) of the node's own start-up lines: its
    transport up (``open file limit``), its peer recovered (``started: term``), the
    backend's database kept over the snapshot."""
    marks = {"transport_up_s": "open file limit", "peer_recovered_s": "started: term",
             "database_kept_s": "keeping the database"}
    out: dict[str, float] = {}
    log_file = node_dir / "log" / "console.log"
    if not log_file.exists():
        return out
    for line in log_file.read_text(errors="replace").splitlines():
        try:
            stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) \
                - time.timezone + float(line[19:23] or 0)
        except ValueError:
            continue
        for key, text in marks.items():
            if text in line and stamp >= since - 0.01 and key not in out:
                out[key] = round(stamp - since, 2)
    return out


def restart_served(cluster: LocalCluster, pool: ConnectionPool, index: int,
                   newest: int) -> dict[str, Any]:
    """SIGKILL node ``index``, start it again; seconds from the new process's start until
    it listens, its own copy has row ``newest``, and a linearizable query sent to it is
    answered; the CPU seconds the process used until each (a measure the machine's load
    inflates less than the wall clock); its start-up lines' times."""
    peer, node = cluster.peers[index], cluster.nodes[index]
    cluster.kill(node)
    cluster.start_node(node, wait=False)
    assert node.proc is not None
    proc = node.proc
    started = proc.create_time()  # the clock the process start is stamped with
    cluster.wait_listening(node, 60)
    listening, cpu_listening = time.time() - started, _cpu(proc)
    local = linear = cpu_local = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (local is None or linear is None):
        try:
            if local is None and api.query_local(peer, ["query", NEWEST], timeout=2,
                                                 pool=pool)["rows"] == [[newest]]:
                local, cpu_local = time.time() - started, _cpu(proc)
            if local is not None and linear is None:
                api.query(peer, ["query", NEWEST], timeout=2, pool=pool)
                linear = time.time() - started
        except (ZRaftError, OSError):
            pass
        if local is None or linear is None:
            time.sleep(0.01)
    return {"listening_s": round(listening, 2),
            "own_copy_current_s": None if local is None else round(local, 2),
            "linearizable_query_s": None if linear is None else round(linear, 2),
            "cpu_s_until_listening": cpu_listening, "cpu_s_until_current": cpu_local,
            **_log_times(node.directory, started),
            "rss_mb": round((node.rss() or 0) / MB, 1)}


def catch_up(cluster: LocalCluster, pool: ConnectionPool, args: argparse.Namespace,
             first: int) -> dict[str, Any]:
    """A follower stopped while ``--catch-up-rows`` rows are written; its time to catch up."""
    leader = _leader(cluster, pool)
    index = next(i for i, p in enumerate(cluster.peers) if p != leader)
    installed = api.stat(cluster.peers[index], timeout=5, pool=pool)["fsm"].get(
        "snapshots_installed", 0)
    cluster.kill(cluster.nodes[index])
    wrote = build(cluster, pool, args.catch_up_rows, args.value_bytes, args.batch,
                  args.writers, first)
    newest = first + args.catch_up_rows - 1
    t0 = time.monotonic()
    cluster.start_node(cluster.nodes[index])
    peer = cluster.peers[index]
    done = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if api.query_local(peer, ["query", NEWEST], timeout=5,
                               pool=pool)["rows"] == [[newest]]:
                done = time.monotonic() - t0
                break
        except (ZRaftError, OSError):
            pass
        time.sleep(0.05)
    fsm = api.stat(peer, timeout=5, pool=pool)["fsm"]
    return {"rows_written_while_down": wrote["rows"], "seconds": None if done is None
            else round(done, 1), "by_snapshot": fsm.get("snapshots_installed", 0) > installed,
            "db_mb": round(_db_bytes(cluster, index) / MB, 1),
            "mb_per_s": None if not done else round(_db_bytes(cluster, index) / MB / done, 1)}


def _wait_rows(cluster: LocalCluster, pool: ConnectionPool) -> int:
    """The newest row of a reused cluster, once it answers."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return int(api.query(cluster.peers[0], ["query", NEWEST], timeout=5,
                                 pool=pool)[0]["rows"][0][0])
        except (ZRaftError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sqlite_big", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--value-bytes", type=int, default=96)
    parser.add_argument("--batch", type=int, default=2_000, help="rows per execmany")
    parser.add_argument("--writers", type=int, default=4, help="writes outstanding")
    parser.add_argument("--max-log-count", type=int, default=1_000)
    parser.add_argument("--snapshot-log-ratio", type=float, default=0.5)
    parser.add_argument("--catch-up-rows", type=int, default=0,
                        help="rows written while a follower is down (0: skip)")
    parser.add_argument("--dir", help="parent of the run's temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's files")
    parser.add_argument("--reuse", metavar="DIR",
                        help="skip the build: the cluster a --keep run left in DIR")
    args = parser.parse_args(argv)
    base = Path(args.reuse) if args.reuse else Path(
        tempfile.mkdtemp(prefix="zraft-sqlite-big-", dir=args.dir))
    out: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
                   f"{psutil.virtual_memory().total // MB} MB RAM",
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "args": vars(args), "directory": str(base)}
    if args.reuse:
        cluster = LocalCluster.load(base / "cluster")
    else:
        cluster = LocalCluster(base / "cluster", 3, backend="sqlite",
                               max_log_count=args.max_log_count,
                               extra_raft={"snapshot_log_ratio": args.snapshot_log_ratio})
    pool = ConnectionPool(cookie=cluster.cookie.encode())
    sampler = Sampler(cluster, pool)
    try:
        cluster.start()
        if args.reuse:
            args.rows = _wait_rows(cluster, pool)
        else:
            api.create(cluster.peers, "sqlite", timeout=30, pool=pool)
            api.write(_leader(cluster, pool), ["exec", TABLE], timeout=30, pool=pool)
            sampler.start()
            out["build"] = build(cluster, pool, args.rows, args.value_bytes, args.batch,
                                 args.writers)
            sampler.stop.set()
            sampler.join()
            out["max_rss_mb"] = {phase: [round(r / MB, 1) for r in values]
                                 for phase, values in sampler.max_rss.items()}
            out["snapshot_samples"] = sampler.snapshots_seen
        out["db_mb"] = [round(_db_bytes(cluster, i) / MB, 1) for i in range(3)]
        leader = _leader(cluster, pool)
        out["snapshots"] = [api.stat(p, timeout=5, pool=pool)["fsm"].get("snapshot_index")
                            for p in cluster.peers]
        follower = next(i for i, p in enumerate(cluster.peers) if p != leader)
        out["restart_follower"] = restart_served(cluster, pool, follower, args.rows)
        out["restart_leader"] = restart_served(cluster, pool, cluster.peers.index(leader),
                                               args.rows)
        if args.catch_up_rows:
            out["catch_up"] = catch_up(cluster, pool, args, args.rows + 1)
    finally:
        sampler.stop.set()
        cluster.stop()
        pool.close()
        if not args.keep and not args.reuse:
            shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
