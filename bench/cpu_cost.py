"""CPU microseconds per operation, per process (leader, followers, client), on a fresh
3-node zraft cluster: the figure the hot-path work of issue 7 was steered by.

Throughput on 2 shared cores is noisy; CPU per operation is much less so, and shows which
process pays. ``python -m bench.cpu_cost [w1 w2 w3 w6] [--repeats N]``.

Rules: the same client engine as ``bench.compare``; CPU is the nanosecond CPU clock of each
node process and of this process (psutil's tick-based times as a fallback: at 10 ms a tick
they read 0 for short runs), over the operations that completed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.engine import Ops, open_pools, pipelined
from bench.sides import ZraftSide

# name: (operations, outstanding per connection, connections, reads?)
WORKLOADS = {
    "w1": (2_000, 1, 1, False),
    "w2": (50_000, 1_000, 1, False),
    "w3": (20_000, 1, 64, False),
    "w6": (50_000, 1_000, 1, True),
}


def _process_cpu_clock(pid: int) -> int:
    """Linux's process-wide CPU clock id for another process (CPUCLOCK_SCHED, as
    clock_getcpuclockid(3) builds it): nanosecond resolution, threads that exit included."""
    return ((~pid) << 3) | 2


def _cpu(proc: psutil.Process) -> float:
    try:
        return time.clock_gettime(_process_cpu_clock(proc.pid))
    except (OSError, OverflowError):
        t = proc.cpu_times()
        return t.user + t.system


def measure(side: ZraftSide, ops: Ops, name: str, scale: float = 1.0) -> dict[str, Any]:
    n, outstanding, conns, reads = WORKLOADS[name]
    n = max(100, int(n * scale))
    leader = side.leader()
    target = side.peers[leader]
    pools = open_pools(side.cookie, target, ("stat", [side.peer_name]), conns,
                       tls=side.tls_context)
    procs = {i: psutil.Process(side.pid(i)) for i in range(3)}
    me = psutil.Process()
    before = {i: _cpu(p) for i, p in procs.items()}
    before_me = _cpu(me)
    try:
        result = pipelined(pools, target, ops.get if reads else ops.put, n, outstanding, 60)
    finally:
        for pool in pools:
            pool.close()
    done = max(1, result.ok)
    out: dict[str, Any] = {"workload": name, "ops": result.ok,
                           "ops_per_s": round(result.ops_per_s),
                           "p50_ms": round(result.latency_ms()["p50"], 2)}
    for i, proc in procs.items():
        role = "leader" if i == leader else f"follower{i}"
        out[f"{role}_us"] = round((_cpu(proc) - before[i]) / done * 1e6, 1)
    out["client_us"] = round((_cpu(me) - before_me) / done * 1e6, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_cost", description=__doc__)
    parser.add_argument("workloads", nargs="*", default=["w1", "w3"], choices=sorted(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0, help="operations x this")
    args = parser.parse_args(argv)
    side = ZraftSide(Path(tempfile.mkdtemp(prefix="zraft-cpu-cost-")))
    side.start()
    try:
        ops = Ops(side.peer_name)
        for _ in range(args.repeats):
            for name in args.workloads:
                row = measure(side, ops, name, args.scale)
                cpu = " ".join(f"{k[:-3]}={v}" for k, v in row.items() if k.endswith("_us"))
                print(f"{name}: {row['ops_per_s']:,}/s p50 {row['p50_ms']} ms; "
                      f"CPU us per op: {cpu}", flush=True)
    finally:
        side.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
