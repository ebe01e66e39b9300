"""The asyncio client against the blocking one, side by side on one fresh 3-node cluster.

``python -m bench.aio_compare [--ops N] [--window W ...] [--repeats R]``

Each round runs, alternating, the same closed loop of plain writes (``["put", k, v]``,
100-byte values) through the public APIs: the blocking ``zraft.Client`` actor (pykka
futures) and ``zraft.aio.Client`` (``asyncio.gather``), each over its one connection to
the leader, in batches of ``window`` calls in flight (window 1 = one call at a time: the
blocking module function ``zraft.write`` against ``await zraft.aio.write``). Printed per
round: ops/s, median latency of a batch per op, and the client process's CPU per op
(``time.process_time``: every thread of this process). The machine is shared: compare
sides within a round, and the medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pykka

import zraft
import zraft.aio as za
from bench.sides import ZraftSide


def _values(n: int) -> list[bytes]:
    return [os.urandom(100) for _ in range(min(n, 1024))]


def blocking_side(side: ZraftSide, n: int, window: int) -> dict[str, Any]:
    values = _values(n)
    pool = zraft.ConnectionPool(side.cookie)
    leader = side.peers[side.leader()]
    try:
        if window == 1:
            zraft.write(leader, ["warm", 1], pool=pool)
            return _timed(n, lambda: [zraft.write(leader, ["put", f"k{i}", values[i % 1024]],
                                                  pool=pool) for i in range(n)])
        with zraft.connect([leader], pool=pool) as client:
            client.write_sync(["warm", 1])

            def go() -> None:
                for start in range(0, n, window):
                    futures = [client.write(["put", f"k{i}", values[i % 1024]])
                               for i in range(start, min(n, start + window))]
                    assert pykka.get_all(futures, timeout=60) == ["ok"] * len(futures)

            return _timed(n, go)
    finally:
        pool.close()


def aio_side(side: ZraftSide, n: int, window: int) -> dict[str, Any]:
    values = _values(n)
    leader = side.peers[side.leader()]

    async def main() -> dict[str, Any]:
        pool = za.ConnectionPool(side.cookie)
        threads = threading.active_count()
        async with za.connect([leader], pool=pool) as client:
            await client.write(["warm", 1])
            t0, c0 = time.perf_counter(), time.process_time()
            if window == 1:
                for i in range(n):
                    await za.write(leader, ["put", f"k{i}", values[i % 1024]], pool=pool)
            else:
                for start in range(0, n, window):
                    results = await asyncio.gather(*(
                        client.write(["put", f"k{i}", values[i % 1024]])
                        for i in range(start, min(n, start + window))))
                    assert results == ["ok"] * len(results)
            row = _row(n, time.perf_counter() - t0, time.process_time() - c0)
            assert threading.active_count() == threads  # no thread was started
        pool.close()
        await pool.wait_closed()
        return row

    return asyncio.run(main())


def _timed(n: int, fn: Callable[[], Any]) -> dict[str, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return _row(n, time.perf_counter() - t0, time.process_time() - c0)


def _row(n: int, wall: float, cpu: float) -> dict[str, Any]:
    return {"ops_per_s": n / wall, "client_cpu_us": cpu / n * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.aio_compare", description=__doc__)
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--window", type=int, nargs="*", default=[1, 100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    side = ZraftSide(Path(tempfile.mkdtemp(prefix="zraft-aio-compare-")))
    side.start()
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    try:
        for r in range(args.repeats):
            for window in args.window:
                n = args.ops if window > 1 else max(100, args.ops // 20)
                order = [("blocking", blocking_side), ("aio", aio_side)]
                if r % 2:
                    order.reverse()  # alternate who goes first
                for name, run in order:
                    row = run(side, n, window)
                    rows.setdefault((name, window), []).append(row)
                    print(f"round {r + 1} window {window:>4} {name:>8}: "
                          f"{row['ops_per_s']:>8,.0f} ops/s, client CPU "
                          f"{row['client_cpu_us']:.1f} us/op", flush=True)
        print("\nmedians:")
        for window in args.window:
            cells = []
            for name in ("blocking", "aio"):
                got = rows[(name, window)]
                ops = statistics.median(x["ops_per_s"] for x in got)
                cpu = statistics.median(x["client_cpu_us"] for x in got)
                cells.append(f"{name} {ops:,.0f} ops/s ({cpu:.1f} us CPU/op)")
            print(f"window {window:>4}: " + " | ".join(cells))
    finally:
        side.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
