"""Throughput of LogWriter group commits on this machine (not a test; run by hand).

    .venv/bin/python tests/storage/bench_log_writer.py [seconds-per-size] [dir]

For batches of 1, 10, 100 and 1000 entries of 100 bytes, prints entries/s and
flushes (log fdatasyncs) per second.
"""

from __future__ import annotations

import sys
import tempfile
import time

from zraft.core.entries import DATA, Entry
from zraft.storage import DiskLogStorage, LogWriter


def run(root: str, batch: int, seconds: float) -> tuple[float, float, float]:
    store = DiskLogStorage.open(root, f"bench{batch}@127.0.0.1:1")
    writer = LogWriter(store)
    payload = b"p" * 100
    index = 1
    flushes = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        writer.write_batch(entries=[Entry(i, 1, DATA, payload, 0)
                                    for i in range(index, index + batch)])
        index += batch
        flushes += 1
    elapsed = time.perf_counter() - started
    store.close()
    syncs = store.log_syncs
    return (index - 1) / elapsed, flushes / elapsed, syncs / elapsed


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    with tempfile.TemporaryDirectory(dir=sys.argv[2] if len(sys.argv) > 2 else None) as root:
        print(f"{'batch':>6} {'entries/s':>12} {'flushes/s':>10} {'fdatasync/s':>12}")
        for batch in (1, 10, 100, 1000):
            eps, fps, sps = run(root, batch, seconds)
            print(f"{batch:>6} {eps:>12,.0f} {fps:>10,.0f} {sps:>12,.0f}")


if __name__ == "__main__":
    main()
