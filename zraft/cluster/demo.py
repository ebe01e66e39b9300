"""The ``make run`` demo: a 3-node cluster on the dict backend, shown working, left running.

``python -m zraft.cluster.demo [--dir DIR]`` (also ``zraft cluster demo``).

Steps, each checked: bring the cluster up (a previous demo cluster in DIR is stopped and
purged first), show its status, then about ten seconds of activity: writes and reads, a
session watch that fires on a write, a short pipelined bench, a SIGKILL of the leader with the
time to the next leader, writes through the new leader, the killed node restarted and caught
up. Then the final status, the event timeline, and the exact commands to talk to the cluster
and to stop it. Exit 0 when every check passed; on a failure the cluster is left running for
inspection and the exit code is 1.
"""

from __future__ import annotations

import argparse
import os
import queue
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from zraft.client import api
from zraft.cluster import admin, events, status
from zraft.cluster.local import CLUSTER_FILE, LocalCluster, wait_until

DEFAULT_DIR = ".zraft-demo"


class DemoFailed(Exception):
    pass


def _say(text: str = "") -> None:
    print(text, flush=True)


def _step(title: str) -> None:
    _say(f"\n== {title}")


def zraft_command() -> str:
    """How to call the `zraft` command from the current directory."""
    exe = Path(sys.executable).parent / "zraft"
    if exe.exists():
        rel = os.path.relpath(exe)
        return rel if not rel.startswith("..") else str(exe)
    return f"{shlex.quote(sys.executable)} -m zraft.cli"


def _check(ok: Any, what: str) -> None:
    if not ok:
        raise DemoFailed(what)
    _say(f"   ok: {what}")


def run(directory: str = DEFAULT_DIR, nodes: int = 3, seconds: float = 10.0,
        election_timeout: int = 300) -> int:
    started = time.monotonic()
    if (Path(directory) / CLUSTER_FILE).exists():
        old = LocalCluster.load(directory)
        _say(f"stopping the previous demo cluster in {directory}")
        old.stop()
        old.purge()
    cluster = LocalCluster(directory, nodes, election_timeout=election_timeout, backend="dict")
    pool = admin.pool_for(cluster)
    try:
        _step(f"bringing up {nodes} nodes (dict backend) in {directory}")
        cluster.record_fault("up")
        cluster.start()
        leader = admin.create(pool, cluster, "dict", timeout=20.0)
        _check(True, f"cluster up in {time.monotonic() - started:.1f}s, leader is node "
               f"{leader.index} ({cluster.peer_id(leader)})")
        _say(status.render(status.collect(cluster, pool)))
        _activity(cluster, pool, seconds)
        _step("final status")
        _say(status.render(status.collect(cluster, pool)))
        _step("faults, leader and config changes (zraft cluster events)")
        shown = [e for e in events.timeline(cluster.directory)
                 if e["category"] in ("fault", "leader", "config")]
        _say(events.render(shown[-12:]))
        _closing(cluster)
        return 0
    except (DemoFailed, TimeoutError, Exception) as exc:
        _say(f"\nDEMO FAILED: {type(exc).__name__}: {exc}")
        _say(f"the cluster is left running for inspection: {zraft_command()} cluster status "
             f"--dir {directory}; stop it with {zraft_command()} cluster down --dir {directory}")
        return 1
    finally:
        pool.close()


def _activity(cluster: LocalCluster, pool: Any, seconds: float) -> None:
    begin = time.monotonic()
    session = api.light_session(cluster.peers, fail_timeout=0.5, election_timeout=0.3)

    _step("writes and reads")
    t0 = time.monotonic()
    count = 200
    for i in range(count):
        _, session = api.write(session, ["put", f"demo/{i}", i * i], timeout=10, pool=pool)
    took = time.monotonic() - t0
    _check(True, f"{count} writes, one at a time, in {took:.2f}s ({count / took:.0f}/s; "
           "each waits for a quorum fsync)")
    value, session = api.query(session, ["get", "demo/12"], timeout=10, pool=pool)
    _check(value == 144, f"read demo/12 -> {value!r} (linearizable read)")
    listing, session = api.query(session, ["list", "demo/"], timeout=10, pool=pool)
    _check(len(listing) == count, f"list demo/ -> {len(listing)} keys")

    _step("a watch that fires")
    from zraft.client.session import Session

    fired: queue.Queue[Any] = queue.Queue()
    watcher = Session.start(cluster.peers, 10.0, pool=pool)
    try:
        before = watcher.query_sync(["get", "greeting"], watch=fired, timeout=10)
        _say(f"   a session watches 'greeting' (now {before!r})")
        _, session = api.write(session, ["put", "greeting", "hello from zraft"], timeout=10,
                               pool=pool)
        event = fired.get(timeout=10)
        after = watcher.query_sync(["get", "greeting"], timeout=10)
        _check(event.reason == "data_changed" and after == "hello from zraft",
               f"watch fired ({event.reason}); 'greeting' is now {after!r}")
    finally:
        watcher.stop()

    _step("a short pipelined bench (4 clients x 8 in flight)")
    from zraft.loadgen.commands import run_bench
    from zraft.loadgen.workload import BenchConfig

    bench_seconds = max(1.0, min(3.0, seconds - (time.monotonic() - begin) - 4.0))
    result = run_bench(pool, cluster.peers, BenchConfig(clients=4, inflight=8,
                       duration=bench_seconds, value_size=100, read_ratio=0.1))
    lat = result["latency_ms"]
    _check(result["ops"] > 0, f"{result['ops']} ops in {bench_seconds:.1f}s: "
           f"{result['throughput']:,.0f} ops/s, p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms")

    _step("killing the leader (SIGKILL)")
    old = admin.wait_leader(pool, cluster, 10.0)
    cluster.kill(old)
    t0 = time.monotonic()
    new = admin.wait_leader(pool, cluster, 15.0, exclude=[cluster.peer_id(old)])
    _check(new is not old, f"node {old.index} killed; node {new.index} became leader in "
           f"{(time.monotonic() - t0) * 1000:.0f} ms")
    _, session = api.write(session, ["put", "after-failover", "still here"], timeout=10,
                           pool=pool)
    value, session = api.query(session, ["get", "greeting"], timeout=10, pool=pool)
    _check(value == "hello from zraft", f"writes go on; nothing lost ('greeting' = {value!r})")

    _step(f"restarting node {old.index} on its data")
    cluster.record_fault("restart", old)
    cluster.start_node(old)
    leader_stat = admin.stat(pool, cluster, new, 2.0) or {}
    target = int(leader_stat.get("commit", 0))

    def caught_up() -> bool:
        info = admin.stat(pool, cluster, old, 1.0)
        return bool(info) and int(info.get("applied", 0)) >= target

    wait_until(caught_up, 20.0, f"node {old.index} to catch up")
    _check(True, f"node {old.index} is back and caught up to index {target}")


def _closing(cluster: LocalCluster) -> None:
    z = zraft_command()
    d = shlex.quote(os.path.relpath(cluster.directory))
    pids = ", ".join(str(n.pid) for n in cluster.nodes)
    _say(f"""
The cluster is running ({len(cluster.nodes)} nodes, pids {pids}).
Talk to it:
  {z} cluster status --dir {d}            # add --watch to follow it live, --json for scripts
  {z} write --dir {d} greeting hi
  {z} read --dir {d} greeting
  {z} watch --dir {d} greeting            # then write from another shell
  {z} bench --dir {d} --duration 10 --plot bench.png
Break it:
  {z} cluster kill leader --dir {d}       # also stop|pause|resume|restart NODE
  {z} cluster partition --dir {d} 1 2,3 ; {z} cluster heal --dir {d}
  {z} cluster events --dir {d}            # elections, leader changes, faults
Stop it:
  {z} cluster down --dir {d}              # add --purge to delete its data""")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zraft.cluster.demo", description=__doc__)
    parser.add_argument("--dir", default=DEFAULT_DIR)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    return run(args.dir, args.nodes, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
