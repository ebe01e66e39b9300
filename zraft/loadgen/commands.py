"""``zraft bench``: drive a workload against a cluster and report throughput and latency.

``zraft bench --dir DIR --clients C --inflight K --duration S --value-size B [--reads R]
[--groups N [--prefix P]] [--json] [--plot out.png] [--fault SECONDS:ACTION ...]``

``--groups N`` spreads the operations over the N groups ``zraft create --groups N`` made
(P00001..), in turn, each with its own leader guess.

Rules: the cluster comes from ``--dir`` (a local cluster's ``cluster.json``) or ``--peers``
with a cookie; C x K requests are kept in flight over one connection pool. Percentiles come
from an HDR histogram. Marks on the plot and in the report come from the cluster's event
timeline (faults injected by ``zraft cluster`` or ``--fault``, leader changes logged by the
nodes) within the run. A progress line goes to stderr while the run lasts when stderr is a
terminal (or with ``--progress``). Exit 0 if any operation completed, 1 otherwise.
Ctrl-C (SIGINT) ends the run early: the report (and ``--plot``) covers the time run, says
``interrupted after S s``, and the exit code is 130 (128 + SIGINT) as for any interrupted
command; a Ctrl-C while reporting only cuts the report short (exit 130, no traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from zraft.client.admin_commands import group_count_arg, group_prefix_arg
from zraft.client.checks import timeout_arg
from zraft.client.cli_support import load_cluster_dir
from zraft.client.connection import ConnectionPool, resolve_cookie, resolve_tls
from zraft.client.create_many import group_names
from zraft.loadgen.faults import Fault, FaultSchedule
from zraft.loadgen.workload import BenchConfig, Workload


def _reads(text: str) -> float:
    value = float(text.rstrip("%"))
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("--reads is a percentage, 0..100")
    return value


def run_bench(pool: ConnectionPool, peers: list[str], config: BenchConfig,
              cluster_dir: str | None = None, faults: list[Fault] | None = None,
              progress: bool = False) -> dict[str, Any]:
    """Run one bench and return its result document (see ``format_result``)."""
    workload = Workload(pool, peers, config)
    schedule = FaultSchedule(cluster_dir, faults or [], lambda text: _note(text, progress)) \
        if cluster_dir else None

    def tick(elapsed: float) -> None:
        if progress:
            rec = workload.recorder
            done = rec.completed()
            rate = done / elapsed if elapsed > 0 else 0.0
            errors = sum(rec.errors.values())
            bar = _bar(elapsed / config.duration)
            print(f"\r[bench] {bar} {elapsed:5.1f}/{config.duration:g}s  {done} ops  "
                  f"{rate:,.0f} ops/s  p99 {rec.latency.percentile(99) / 1000:.1f} ms  "
                  f"errors {errors}   ", end="", file=sys.stderr, flush=True)

    if schedule is not None:
        # the schedule is relative to the workload's start: start both together
        schedule.start(time.monotonic())
    try:
        recorder = workload.run(on_tick=tick)
    finally:
        if schedule is not None:
            schedule.stop()
    if progress:
        print(file=sys.stderr)
    elapsed = max(1e-9, workload.measured if workload.interrupted else config.duration)
    end_wall = workload.start_wall + elapsed
    ops = recorder.completed()
    result: dict[str, Any] = {
        "config": {"clients": config.clients, "inflight": config.inflight,
                   "groups": len(config.groups or []) or 1,
                   "duration": config.duration, "value_size": config.value_size,
                   "read_pct": round(config.read_ratio * 100, 3), "peers": peers},
        "ops": ops, "writes": recorder.by_kind["write"], "reads": recorder.by_kind["read"],
        "errors": dict(recorder.errors), "redirects": workload.redirects,
        "throughput": round(ops / elapsed, 1),
        "latency_ms": recorder.latency.summary_ms(), "histogram": recorder.latency.kind,
        "timeline": recorder.timeline(elapsed),
        "start": round(workload.start_wall, 3), "marks": [],
        "faults_injected": schedule.done if schedule is not None else [],
        "interrupted": workload.interrupted, "measured_s": round(elapsed, 3),
    }
    if cluster_dir:
        result["marks"] = _marks(cluster_dir, workload.start_wall, end_wall)
    return result


def _marks(cluster_dir: str, start: float, end: float) -> list[dict[str, Any]]:
    from zraft.cluster.events import describe, timeline

    index_of: dict[str, int] = {}
    try:
        doc = json.loads((Path(cluster_dir) / "cluster.json").read_text())
        index_of = {n["peer"]: int(n["index"]) for n in doc.get("nodes", [])}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    marks = []
    for event in timeline(cluster_dir, since=start, until=end + 1.0):
        category = event["category"]
        if category == "leader":
            peer = str(event.get("peer", "?"))
            who = f"node {index_of[peer]}" if peer in index_of else peer
            label = f"leader: {who} (term {event.get('term')})"
        elif category == "fault" and event.get("source") == "cluster":
            label = describe(event).replace(" (zraft cluster)", "")
            label = label.split(" (")[0]
        else:
            continue
        marks.append({"at": round(float(event["t"]) - start, 3), "category": category,
                      "label": label, "event": event})
    return marks


def sparkline(values: list[float], width: int = 60) -> str:
    """Values as block characters (averaged down to ``width`` bars)."""
    if len(values) > width:
        step = len(values) / width
        values = [sum(values[int(i * step):int((i + 1) * step)] or [0])
                  / max(1, len(values[int(i * step):int((i + 1) * step)]))
                  for i in range(width)]
    top = max(values) or 1.0
    blocks = " ▁▂▃▄▅▆▇█"
    return "".join(blocks[round(v / top * (len(blocks) - 1))] for v in values)


def _bar(fraction: float, width: int = 20) -> str:
    filled = int(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _note(text: str, progress: bool) -> None:
    print(("\n" if progress else "") + f"[bench] fault {text}", file=sys.stderr, flush=True)


def format_result(result: dict[str, Any]) -> str:
    cfg, lat = result["config"], result["latency_ms"]
    lines = [
        f"zraft bench: {cfg['clients']} clients x {cfg['inflight']} in flight, "
        + (f"spread over {cfg['groups']} groups, " if cfg.get("groups", 1) > 1 else "") +
        f"{cfg['duration']:g} s, {cfg['value_size']}-byte values, {cfg['read_pct']:g}% reads",
        *([f"interrupted after {result['measured_s']:.1f} s: figures cover that time"]
          if result.get("interrupted") else []),
        f"ops: {result['ops']} ({result['writes']} writes, {result['reads']} reads)"
        + (f", errors: {', '.join(f'{k} {v}' for k, v in sorted(result['errors'].items()))}"
           if result["errors"] else ", no errors"),
        f"throughput: {result['throughput']:,.0f} ops/s",
        f"latency ms ({result['histogram']}): p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  "
        f"p99 {lat['p99']:.2f}  p99.9 {lat['p99.9']:.2f}  max {lat['max']:.2f}  "
        f"mean {lat['mean']:.2f}",
    ]
    rates = [row["ops_per_s"] for row in result["timeline"]]
    if rates:
        span = result.get("measured_s", cfg["duration"])
        lines.append(f"ops/s over {span:g} s: |{sparkline(rates)}| "
                     f"(peak {max(rates):,.0f})")
    for mark in result["marks"]:
        lines.append(f"  at {mark['at']:6.2f} s  {mark['category']:<6}  {mark['label']}")
    if result.get("plot"):
        lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    # --peers, else the --dir cluster's, else $ZRAFT_PEERS: an explicit --dir is never
    # overridden by an environment default (which named another cluster in a shell that
    # had one set, and every request answered noproc)
    peers = [p for p in (args.peers or "").split(",") if p]
    cookie_file = args.cookie_file
    tls_found: dict[str, str] = {}
    if args.dir:
        found = load_cluster_dir(args.dir)  # (peers, cookie_file, ...) tuple
        peers = peers or list(found[0])
        cookie_file = cookie_file or found[1]
    if not peers:
        peers = [p for p in os.environ.get("ZRAFT_PEERS", "").split(",") if p]
        tls_found = found.tls or {}  # a TLS cluster's CA and client certificate
    if not peers:
        args.parser.error("no peers: give --dir DIR or --peers")
    if args.fault and not args.dir:
        args.parser.error("--fault needs --dir (a local cluster)")
    try:
        faults = [Fault.parse(f) for f in args.fault or []]
        cookie = resolve_cookie(args.cookie, cookie_file)
        tls = resolve_tls(found=tls_found)
    except (ValueError, OSError) as exc:
        args.parser.error(str(exc))
    config = BenchConfig(clients=args.clients, inflight=args.inflight, duration=args.duration,
                         value_size=args.value_size, read_ratio=args.reads / 100,
                         request_timeout=args.request_timeout,
                         groups=group_names(args.groups, args.prefix) if args.groups else None)
    progress = args.progress or (sys.stderr.isatty() and not args.quiet)
    try:
        pool = ConnectionPool(cookie, tls=tls)
        return _bench_and_report(args, pool, peers, config, faults, progress)
    except KeyboardInterrupt:  # outside the measured run (start-up, drain, report)
        print("\nzraft bench: interrupted", file=sys.stderr)
        return 130


def _bench_and_report(args: argparse.Namespace, pool: ConnectionPool, peers: list[str],
                      config: BenchConfig, faults: list[Fault], progress: bool) -> int:
    try:
        result = run_bench(pool, peers, config, args.dir, faults, progress)
    finally:
        pool.close()
    if args.plot:
        from zraft.loadgen.plot import PlotUnavailable, plot

        try:
            result["plot"] = str(plot(result, args.plot))
        except PlotUnavailable as exc:
            print(f"zraft bench: {exc}", file=sys.stderr)
            return 1
    if args.json:
        doc = {k: v for k, v in result.items() if k != "marks"}
        doc["marks"] = [{k: v for k, v in m.items() if k != "event"} for m in result["marks"]]
        print(json.dumps(doc, sort_keys=True, default=str))
    else:
        print(format_result(result), flush=True)
    if result["interrupted"]:
        return 130
    return 0 if result["ops"] else 1


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("bench", help="drive a workload; throughput, latency, plot",
                              description="Drive a workload; report throughput and latency.")
    p.set_defaults(func=cmd_bench, parser=p)
    p.add_argument("--dir", help="local cluster directory (reads DIR/cluster.json)")
    p.add_argument("--peers", help="peer ids, comma separated (default $ZRAFT_PEERS)")
    p.add_argument("--cookie")
    p.add_argument("--cookie-file")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--inflight", type=int, default=8, help="requests in flight per client")
    p.add_argument("--duration", type=timeout_arg, default=10.0, help="seconds")
    p.add_argument("--value-size", type=int, default=100, help="bytes per written value")
    p.add_argument("--reads", type=_reads, default=0.0, metavar="R%",
                   help="percentage of linearizable reads (default 0)")
    p.add_argument("--request-timeout", type=timeout_arg, default=2.0)
    p.add_argument("--groups", type=group_count_arg, metavar="N",
                   help="spread the operations over N groups, PREFIX00001.. (as `zraft "
                        "create --groups N` names them), each on the nodes of the peers")
    p.add_argument("--prefix", type=group_prefix_arg, default="g", help="name prefix of --groups")
    p.add_argument("--fault", action="append", metavar="SECONDS:ACTION",
                   help="inject a fault during the run: kill-leader, pause-leader, "
                   "isolate-leader, heal, resume, restart (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON document with everything")
    p.add_argument("--plot", metavar="OUT.png", help="draw throughput and latency over time")
    p.add_argument("--progress", action="store_true", help="progress line even without a tty")
    p.add_argument("--quiet", action="store_true", help="no progress line")
