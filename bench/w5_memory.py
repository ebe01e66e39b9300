"""Where a node's memory goes in W5 (a measuring tool, not a benchmark figure).

``python -m bench.w5_memory [--trace] [--trim] [--catch-up]``: a 3-node zraft cluster like
``ZraftSide`` whose nodes load ``bench/memprobe`` (SIGUSR2 -> JSON readings); readings are
taken idle (after create), after the W5 writes, and (``--catch-up``) after the W5 catch-up.
``--trace`` runs the nodes under tracemalloc (slower, inflates RSS: use for the sites
only); ``--trim`` adds a reading after ``malloc_trim(0)``; ``--env K=V`` sets node
environment (e.g. MALLOC_ARENA_MAX=1). Prints one line per node and reading, and the top
allocation sites with ``--trace``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.engine import Ops
from bench.sides import ZraftSide
from bench.workloads import Sizes, _run, catch_up

PROBE_DIR = Path(__file__).resolve().parent / "memprobe"


def readings(side: ZraftSide, out: Path, label: str) -> list[dict[str, Any]]:
    pids = [side.pid(i) for i in range(3)]
    for pid in pids:
        if pid:
            os.kill(pid, signal.SIGUSR2)
    docs: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    for pid in pids:
        while pid and time.monotonic() < deadline:
            files = sorted(out.glob(f"{pid}-*.json"), key=lambda p: p.stat().st_mtime)
            if files:
                doc = json.loads(files[-1].read_text())
                for f in files:
                    f.unlink()
                doc["label"] = label
                docs.append(doc)
                break
            time.sleep(0.1)
    return docs


def show(doc: dict[str, Any]) -> None:
    for key in ("before_trim", "after_trim"):
        r = doc.get(key)
        if r:
            print(f"{doc['label']:>9} pid {doc['pid']} {key:11} rss {r['rss_mb']:6.1f} "
                  f"uss {r['uss_mb']:6.1f} | heap arena {r['heap_arena_mb']:6.1f} in use "
                  f"{r['heap_in_use_mb']:6.1f} free {r['heap_free_mb']:6.1f} | mmapped "
                  f"{r['mmapped_mb']:5.1f} ({r['mmapped_blocks']}) | threads {r['threads']} "
                  f"modules {r.get('modules')} trim {doc.get('trim_ms', 0):.1f} ms")
    if "traced_mb" in doc:
        print(f"   traced {doc['traced_mb']:.1f} MB (peak {doc['traced_peak_mb']:.1f})")
        for site, mb, count in doc["top_lines"][:12]:
            print(f"   {mb:7.2f} MB {count:7d}  {site}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--trim", action="store_true")
    ap.add_argument("--catch-up", action="store_true")
    ap.add_argument("--ops", type=int, default=Sizes().w5_ops)
    ap.add_argument("--env", action="append", default=[], help="K=V for the nodes, e.g. "
                    "MALLOC_ARENA_MAX=2 (glibc tunables)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="zraft-w5mem-"))
    out = base / "probe"
    out.mkdir()
    env = {"ZRAFT_MEMPROBE_OUT": str(out),
           "PYTHONPATH": os.pathsep.join(p for p in (str(PROBE_DIR),
                                                     os.environ.get("PYTHONPATH")) if p)}
    env.update(item.split("=", 1) for item in args.env)
    if args.trace:
        env["PYTHONTRACEMALLOC"] = "25"
    if args.trim:
        env["ZRAFT_MEMPROBE_TRIM"] = "1"
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # LocalCluster passes os.environ on to the nodes
    side = ZraftSide(base / "zraft")
    try:
        side.start()
        for doc in readings(side, out, "idle"):
            show(doc)
        ops = Ops(side.peer_name, 4096, 256)
        t0 = time.monotonic()
        res = _run(side, ops.put, args.ops, 1_000, 1, 60.0, ops.put(0))
        print(f"W5 writes: {res.ok} ok in {time.monotonic() - t0:.1f} s")
        time.sleep(1.0)  # let the followers apply and the last snapshot finish
        for doc in readings(side, out, "after W5"):
            show(doc)
        if args.catch_up:
            print(json.dumps(catch_up(side, Sizes(), ops), default=str))
            time.sleep(1.0)
            for doc in readings(side, out, "catch-up"):
                show(doc)
    finally:
        side.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        print("data in", base)


if __name__ == "__main__":
    main()
