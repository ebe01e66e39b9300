"""zraft against PySyncObj 0.3.17: every workload of issue 7 on both, in one run.

``python -m bench.compare [--quick] [--repeats 3] [--sides zraft,pysyncobj] [--json OUT]``

Rules:
- Configurations run alternately (zraft, PySyncObj msync batch=1, PySyncObj msync batch=0,
  PySyncObj mem, then zraft again ...), each on a fresh 3-node cluster, ``--repeats`` times;
  the table gives the median and range over repeats and zraft's ratio to each peer.
- PySyncObj is optional: without it (``pip install pysyncobj==0.3.17``) the table has the
  zraft column only and says why.
- ``--profile`` (default in full runs) samples the zraft leader with py-spy during an extra
  W2 run (not one of the measured ones) and writes ``bench/profiles/``.
- Every process started is stopped by pid, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import report
from bench.engine import Ops, open_pools, pipelined
from bench.pysyncobj_side import PySyncObjSide, available
from bench.sides import Side, ZraftSide
from bench.workloads import Sizes, run_all

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
ZRAFT, PSO_DURABLE, PSO_DEFAULT = "zraft", "PySyncObj msync", "PySyncObj mem (default)"


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} CPUs ({model}), {mem:.0f} GiB RAM, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def configurations(args: argparse.Namespace, base: Path) -> list[tuple[str, Any]]:
    quick_raft = {"max_segment_size": 262144} if args.quick else {}
    log_count = 200 if args.quick else 1000
    out: list[tuple[str, Any]] = []
    if "zraft" in args.sides:
        out.append((ZRAFT, lambda rep: ZraftSide(base / f"zraft-{rep}", max_log_count=log_count,
                                                 extra_raft=quick_raft)))
    if "pysyncobj" in args.sides:
        for spec in args.pso_modes.split(","):
            mode, _, batch = spec.partition(":")
            group = PSO_DEFAULT if mode == "mem" else f"PySyncObj {mode}"
            out.append((group, lambda rep, m=mode, b=int(batch or 1):
                        PySyncObjSide(base / f"pso-{m}-b{b}-{rep}", m, b)))
    return out


def one_run(side: Side, sizes: Sizes, only: set[str]) -> dict[str, Any]:
    load = os.getloadavg()[0]
    started = time.monotonic()
    try:
        side.start()
        run = run_all(side, sizes, only)
    except Exception as exc:
        traceback.print_exc()
        run = {"label": side.label, "system": side.system, "durability": side.durability,
               "error": f"{type(exc).__name__}: {exc}"}
    finally:
        side.stop()
    run["seconds"] = round(time.monotonic() - started, 1)
    run["loadavg_before"] = round(load, 2)
    run["loadavg_after"] = round(os.getloadavg()[0], 2)
    return run


def brief(run: dict[str, Any]) -> str:
    if "error" in run:
        return f"ERROR {run['error']}"
    parts = []

    def add(fn: Any) -> None:
        with contextlib.suppress(KeyError, TypeError, AttributeError, ValueError):
            parts.append(fn())

    add(lambda: f"W1 p50 {run['W1']['p50_ms']:.2f} ms p99 {run['W1']['p99_ms']:.2f}")
    for w in ("1000", "10000"):
        add(lambda w=w: f"W2x{w} {run['W2'][w]['ops_per_s']:,.0f}/s")
    add(lambda: f"W3 {run['W3']['ops_per_s']:,.0f}/s")
    add(lambda: f"W6 {run['W6']['ops_per_s']:,.0f}/s")
    add(lambda: f"W4 {run['W4']['first_commit_s']:.2f} s lost {run['W4']['acked_lost']}")
    add(lambda: f"W5 {run['W5']['mb_per_s']:.1f} MB/s")
    add(lambda: f"catch-up {run['W5']['catch_up_s']:.2f} s (by {run['W5']['catch_up_path']}, "
        f"{run['W5']['catch_up_snapshot_bytes'] or 0} B)")
    parts.append(f"elections {run.get('unplanned_elections')}")
    if run.get("workload_errors"):
        parts.append(f"errors {run['workload_errors']}")
    parts.append(f"load {run['loadavg_before']}->{run['loadavg_after']}")
    return ", ".join(parts)


def profile_leader(base: Path, seconds: float) -> list[Path]:
    """py-spy on the zraft leader during W2 (1 connection x 1,000 outstanding) and during
    W3 (64 connections x 1), one file each, on a fresh cluster not used for the table."""
    from bench import profile

    if profile.pyspy_path() is None:
        print("profile: py-spy is not installed (pip install py-spy); skipped")
        return []
    side = ZraftSide(base / "zraft-profile")
    written = []
    try:
        side.start()
        leader = side.leader()
        pid = side.pid(leader)
        assert pid is not None
        PROFILE_DIR.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        ops = Ops(side.peer_name, 100)
        target = side.peers[leader]
        for tag, conns, outstanding in (("W2", 1, 1_000), ("W3", 64, 1)):
            raw = PROFILE_DIR / f"zraft-leader-{tag}-{stamp}.raw.txt"
            pools = open_pools(side.cookie, target, ops.put(0), conns)
            spy = profile.record(pid, seconds, raw)
            res = pipelined(pools, target, ops.put, 10**7, outstanding, seconds)
            for pool in pools:
                pool.close()
            spy.wait(60)
            text = raw.read_text() if raw.exists() else ""
            out = PROFILE_DIR / f"zraft-leader-{tag}-{stamp}.txt"
            head = (f"py-spy of the zraft leader (pid {pid}) during {tag}: {conns} connection(s) "
                    f"x {outstanding:,} outstanding, 100-byte values: {res.ops_per_s:,.0f} "
                    f"writes/s while sampled ({seconds:g} s at 200 Hz, load average "
                    f"{os.getloadavg()[0]:.1f}). {machine()}\n\n")
            out.write_text(head + profile.summarise(text, seconds=seconds))
            written.append(out)
        return written
    finally:
        side.stop()


def _terminate(*_: Any) -> None:
    raise KeyboardInterrupt("SIGTERM")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat (smoke test)")
    p.add_argument("--repeats", type=int, default=None, help="default 3 (1 with --quick)")
    p.add_argument("--sides", default="zraft,pysyncobj")
    p.add_argument("--pso-modes", default="msync:1,msync:0,mem:1",
                   help="PySyncObj mode:appendEntriesUseBatch list")
    p.add_argument("--workloads", default="W1,W2,W3,W4,W5,W6")
    p.add_argument("--time-limit", type=float, default=None, help="seconds per phase")
    p.add_argument("--json", help="write every run and the table here")
    p.add_argument("--table", help="write the markdown table here")
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                   help="py-spy the zraft leader during an extra W2 (default: on unless --quick)")
    p.add_argument("--profile-seconds", type=float, default=10.0)
    p.add_argument("--base-dir", help="data directory (default: a temporary one, removed)")
    p.add_argument("--from-json", metavar="FILE",
                   help="print the table of an earlier (possibly interrupted) --json run")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # unwind: every side stops its processes
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.time_limit:
        sizes.time_limit = args.time_limit
    repeats = args.repeats or (1 if args.quick else 3)
    only = {w.strip().upper() for w in args.workloads.split(",") if w.strip()}
    args.sides = {s.strip() for s in args.sides.split(",") if s.strip()}
    notes = []
    if "pysyncobj" in args.sides:
        ok, why = available()
        notes.append(why)
        if not ok:
            print(f"PySyncObj side skipped: {why}")
            args.sides.discard("pysyncobj")
    base = Path(args.base_dir or tempfile.mkdtemp(prefix="zraft-compare-"))
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    doc: dict[str, Any] = {
        "date": date, "machine": machine(), "notes": notes, "repeats": repeats,
        "sizes": vars(sizes), "runs": [], "profiles": [], "partial": True,
        "command": " ".join(["python -m bench.compare", *(argv or sys.argv[1:])])}
    if args.from_json:
        doc = json.loads(Path(args.from_json).read_text())
        print_results(doc)
        return 0
    print(f"bench.compare {date}; {machine()}; {'; '.join(notes)}; data in {base}", flush=True)
    configs = configurations(args, base)
    runs: list[dict[str, Any]] = doc["runs"]
    try:
        for rep in range(repeats):
            for group, factory in configs:
                side = factory(rep)
                print(f"== repeat {rep + 1}/{repeats}: {side.label}", flush=True)
                run = one_run(side, sizes, only)
                run.update(rep=rep, group=group)
                runs.append(run)
                print(f"   {brief(run)} [{run['seconds']} s]", flush=True)
                if args.json:  # after every run: an interrupted bench keeps what it measured
                    Path(args.json).write_text(json.dumps(doc, indent=1, default=str))
        want_profile = args.profile if args.profile is not None else not args.quick
        if want_profile and "zraft" in args.sides:
            doc["profiles"] = [str(x) for x in profile_leader(base, args.profile_seconds)]
    finally:
        if not args.base_dir:
            shutil.rmtree(base, ignore_errors=True)
    doc["partial"] = False
    doc["table"] = print_results(doc)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1, default=str))
    if args.table:
        Path(args.table).write_text(f"{date}; {machine()}\n\n{doc['table']}\n")
    return 0 if runs and not any("error" in r for r in runs) else 1


def print_results(doc: dict[str, Any]) -> str:
    """Print the table (and durability, profiles) of a result document; returns the table."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in doc["runs"]:
        groups.setdefault(run["group"], []).append(run)
    text = report.table(groups)
    reps = len({r["rep"] for r in doc["runs"]})
    print()
    print(f"Results ({doc['date']}; {doc['machine']}): medians (range) over {reps} repeat(s); "
          f"PySyncObj msync = better of appendEntriesUseBatch on/off per repeat; "
          f"'zraft x' > 1 means zraft is better.")
    print(text)
    print("Durability:")
    print("\n".join(report.durability_lines(groups)))
    for path in doc.get("profiles") or []:
        print(f"profile: {path}")
    return text


if __name__ == "__main__":
    sys.exit(main())
