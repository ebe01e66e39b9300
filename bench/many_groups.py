"""What N Raft groups cost on a 3-node local cluster (issue 15), in one table.

``python -m bench.many_groups --groups 0 50 100 [options]``: for each N, a fresh
``LocalCluster`` of 3 node processes; N groups of 3 peers (``g00001`` .. on every node) are
created, then, after ``--settle`` seconds of rest, each node is measured over ``--window``
seconds: threads, idle CPU (psutil cpu_times delta), RSS, disk (allocated bytes of its
directory). Optional phases, each on the same cluster, in this order:

- ``--active K``: the single-group W2 figure (one group, 1 connection, ``--outstanding``
  writes in flight) and then ``--writes`` durable writes spread over K groups with the same
  number in flight in total: aggregate writes/s of both, and fsyncs/s per node (from each
  node's ``/metrics``: ``zraft_fsync_seconds`` counts) during each.
- ``--kill``: writes to every group (``--kill-outstanding`` in flight, acknowledged ones
  recorded), SIGKILL of the node leading the most groups, time until every group has a
  leader on the other nodes, then every acknowledged write is read back: lost per group.
- ``--restart``: a node (the killed one, else node 3) is started again (stopped first if it
  runs) and timed until every one of its N peers answers and knows its leader.

Creation prints its progress and stops at ``--create-deadline`` (the row then says how many
groups exist); ``--create single`` is one ``api.create`` per group, as a user did before
batched creation; ``batch`` uses ``api.create_many`` (``--batch`` groups per call).
``--json OUT`` writes every figure. Per-node figures are shown as ``min-max`` over the nodes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench.group_load import SpreadWriter, verify
from bench.group_ops import fsync_count, group_leaders, measure_nodes
from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.client.create_many import group_names, groups_on
from zraft.cluster import admin
from zraft.cluster.fanout import fan_out
from zraft.cluster.local import LocalCluster
from zraft.errors import ZRaftError


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- creation


def create_groups(cluster: LocalCluster, pool: ConnectionPool, names: list[str], mode: str,
                  deadline_s: float, batch: int, timeout: float = 60.0) -> dict[str, Any]:
    """Create the groups (in order) until done or the deadline: ``{"created", "seconds",
    "complete"}``."""
    addrs = [n.address for n in cluster.nodes]

    def addrs_from(k: int) -> list[str]:  # the node list rotated as group k's index
        return [f"x@{a}" for a in addrs[k % len(addrs):] + addrs[:k % len(addrs)]]

    start = time.monotonic()
    deadline = start + deadline_s
    created = 0
    error = None
    last_say = start
    step = 1 if mode == "single" else max(1, batch)
    while created < len(names) and time.monotonic() < deadline:
        chunk = names[created:created + step]
        # group i is bootstrapped on node i % 3: leaders start spread over the nodes
        groups = groups_on(addrs_from(created), chunk)
        try:
            if mode == "single":
                api.create(groups[0], cluster.backend, timeout=timeout, pool=pool)
            else:
                create_many = getattr(api, "create_many", None)
                if create_many is None:
                    raise SystemExit("--create batch: this build has no api.create_many")
                create_many(groups, cluster.backend, timeout=timeout, pool=pool)
        except ZRaftError as exc:  # measure what exists rather than lose the row
            say(f"creation stopped after {created} groups: {type(exc).__name__}: {exc}")
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
            break
        created += len(chunk)
        now = time.monotonic()
        if now - last_say >= 5.0 or created == len(names):
            rate = (now - start) / created
            say(f"created {created}/{len(names)} groups in {now - start:.1f}s "
                f"({rate:.3f}s per group)")
            last_say = now
    return {"created": created, "seconds": round(time.monotonic() - start, 2),
            "complete": created == len(names), "error": error}


def wait_all_led(pool: ConnectionPool, names: list[str], nodes: list[str],
                 timeout: float) -> tuple[float, dict[str, str | None]]:
    """Poll until every group has a leader among ``nodes``: (seconds, leaders); raises
    TimeoutError naming how many are still leaderless."""
    start = time.monotonic()
    leaders: dict[str, str | None] = {}
    missing = list(names)
    while True:
        found = group_leaders(pool, missing, nodes, timeout=5.0)
        leaders.update({g: p for g, p in found.items() if p})
        missing = [g for g in missing if not leaders.get(g)]
        if not missing:
            return time.monotonic() - start, leaders
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{len(missing)} of {len(names)} groups have no leader after "
                               f"{timeout:.0f}s (e.g. {missing[0]})")
        time.sleep(0.05)  # next polling round


# ---------------------------------------------------------------- phases


def _fsyncs(cluster: LocalCluster) -> list[float | None]:
    return [fsync_count(n.metrics_port) for n in cluster.nodes]


def _fsync_rates(before: list[float | None], after: list[float | None],
                 seconds: float) -> list[float] | None:
    if any(b is None for b in before) or any(a is None for a in after):
        return None
    return [round(((a or 0) - (b or 0)) / seconds, 1) for a, b in zip(after, before,
                                                                     strict=True)]


def active_phase(cluster: LocalCluster, pool: ConnectionPool, names: list[str],
                 args: argparse.Namespace) -> dict[str, Any]:
    addrs = [n.address for n in cluster.nodes]
    out: dict[str, Any] = {}
    # W2 of one group, in this run: a group of its own, created now
    api.create([f"w2solo@{a}" for a in addrs], cluster.backend, timeout=60.0, pool=pool)
    _, solo_leader = wait_all_led(pool, ["w2solo"], addrs, 30.0)
    for label, groups, leaders in (
            ("w2_single", ["w2solo"], solo_leader),
            ("spread", names[:args.active], group_leaders(pool, names[:args.active], addrs))):
        writer = SpreadWriter(pool, groups, leaders, addrs, prefix=f"{label}-")
        before = _fsyncs(cluster)
        elapsed = writer.run(args.outstanding, n_ops=args.writes, duration=args.time_limit)
        rates = _fsync_rates(before, _fsyncs(cluster), elapsed)
        out[label] = {"groups": len(groups), "ops_per_s": round(writer.ok / elapsed, 1),
                      "ok": writer.ok, "errors": dict(writer.errors),
                      "p50_ms": round(writer.p50_ms(), 2), "fsyncs_per_s": rates}
        say(f"{label}: {len(groups)} groups, {writer.ok / elapsed:.0f} writes/s "
            f"(errors {dict(writer.errors)}), fsyncs/s per node {rates}")
    return out


def kill_phase(cluster: LocalCluster, pool: ConnectionPool, names: list[str],
               args: argparse.Namespace) -> dict[str, Any]:
    addrs = [n.address for n in cluster.nodes]
    _, leaders = wait_all_led(pool, names, addrs, 60.0)
    per_node = {a: sum(1 for p in leaders.values() if p and p.endswith("@" + a))
                for a in addrs}
    victim_addr = max(per_node, key=lambda a: per_node[a])
    victim = cluster.node(victim_addr)
    survivors = [a for a in addrs if a != victim_addr]
    writer = SpreadWriter(pool, names, leaders, addrs, record=True, prefix="kill-",
                          request_timeout=3.0)
    thread = threading.Thread(target=writer.run, args=(args.kill_outstanding,),
                              kwargs={"duration": 3600.0}, daemon=True)
    thread.start()
    time.sleep(args.kill_warmup)  # writes flow before the kill (a load phase, not a sync)
    acked_before = writer.ok
    writer.set_nodes(survivors)
    cluster.kill(victim)
    say(f"killed node {victim.index} ({per_node[victim_addr]} of {len(names)} leaders)")
    try:
        recovered, new_leaders = wait_all_led(pool, names, survivors, args.recovery_timeout)
        recovery: float | None = round(recovered, 2)
    except TimeoutError as exc:
        say(str(exc))
        recovery, new_leaders = None, group_leaders(pool, names, survivors)
    time.sleep(1.0)  # writes after the recovery too
    writer.stop()
    thread.join(30.0)
    led = (f"every group led again {recovery}s after the kill" if recovery is not None
           else "NOT every group led again")
    say(f"{led}; verifying {len(writer.acked)} acknowledged writes")
    checked = verify(pool, writer.acked, new_leaders, survivors)
    return {"victim": victim.index, "leaders_on_victim": per_node[victim_addr],
            "recovery_s": recovery, "acked_before_kill": acked_before,
            "errors": dict(writer.errors), **checked, "killed": victim.index}


def restart_phase(cluster: LocalCluster, pool: ConnectionPool, names: list[str],
                  args: argparse.Namespace, node_index: int | None) -> dict[str, Any]:
    n = cluster.node(node_index or cluster.nodes[-1].index)
    if n.alive():
        cluster.stop_node(n)
    t0 = time.monotonic()
    cluster.start_node(n, wait=False)
    cluster.wait_listening(n, timeout=args.restart_timeout)
    listening = time.monotonic() - t0
    pending = list(names)
    while pending:
        reqs = [(f"{g}@{n.address}", "stat", [g]) for g in pending]
        answers = fan_out(pool, reqs, 10.0)
        pending = [g for g, (s, p) in zip(pending, answers, strict=True)
                   if not (s == "ok" and isinstance(p, dict) and p.get("leader"))]
        if pending and time.monotonic() - t0 > args.restart_timeout:
            break
        if pending:
            time.sleep(0.1)  # next polling round
    took = time.monotonic() - t0
    say(f"node {n.index} restarted: listening after {listening:.1f}s, all {len(names)} "
        f"groups served after {took:.1f}s" + (f" ({len(pending)} not)" if pending else ""))
    return {"node": n.index, "listening_s": round(listening, 2),
            "serving_s": round(took, 2) if not pending else None, "not_serving": len(pending)}


# ---------------------------------------------------------------- one N


def _guarded(name: str, phase: Any, *args: Any) -> dict[str, Any]:
    """A phase that fails (a group never led, a timeout) gives its error, not the run's
    end: the row keeps what was measured."""
    try:
        result: dict[str, Any] = phase(*args)
        return result
    except Exception as exc:
        say(f"{name} phase failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def run_one(n_groups: int, args: argparse.Namespace, base: Path) -> dict[str, Any]:
    cluster = LocalCluster(base / f"groups-{n_groups}", 3,
                           election_timeout=args.election_timeout, metrics=args.active > 0)
    row: dict[str, Any] = {"groups": n_groups}
    say(f"N={n_groups}: starting 3 nodes in {cluster.directory}")
    cluster.start()
    pool = admin.pool_for(cluster)
    try:
        names = group_names(n_groups)
        if names:
            made = create_groups(cluster, pool, names, args.create, args.create_deadline,
                                 args.batch)
            row["create"] = made
            names = names[:made["created"]]
            led, _ = wait_all_led(pool, names, [n.address for n in cluster.nodes], 120.0)
            row["create"]["led_after_s"] = round(led, 2)
        time.sleep(args.settle)  # let creation's work finish before measuring idle
        procs = [psutil.Process(n.pid) for n in cluster.nodes]
        costs = measure_nodes(procs, [n.directory / "data" for n in cluster.nodes],
                              args.window)
        row["nodes"] = [vars(c) for c in costs]
        say(f"N={n_groups} idle: " + "; ".join(
            f"node{i + 1} {c.threads} threads {c.cpu_pct:.1f}% cpu {c.rss_mb:.0f} MB rss "
            f"{c.disk_mb:.0f} MB disk" for i, c in enumerate(costs)))
        if args.active and names:
            row["active"] = _guarded("active", active_phase, cluster, pool, names, args)
        killed = None
        if args.kill and names:
            row["kill"] = _guarded("kill", kill_phase, cluster, pool, names, args)
            killed = row["kill"].get("killed")
        if args.restart and names:
            row["restart"] = _guarded("restart", restart_phase, cluster, pool, names, args,
                                      killed)
    finally:
        pool.close()
        cluster.stop()
        if not args.keep:
            shutil.rmtree(cluster.directory, ignore_errors=True)
    return row


# ---------------------------------------------------------------- table


def _span(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    a, b = format(lo, fmt), format(hi, fmt)
    return a if a == b else f"{a}-{b}"


def table(rows: list[dict[str, Any]]) -> str:
    head = ["groups", "create time", "threads per node", "idle CPU per node",
            "RSS per node", "disk per node"]
    extra = any("active" in r for r in rows), any("kill" in r for r in rows), \
        any("restart" in r for r in rows)
    if extra[0]:
        head += ["writes/s: K groups vs 1 group (W2)", "fsyncs/s per node (K groups)"]
    if extra[1]:
        head += ["all led again after kill", "acked writes lost"]
    if extra[2]:
        head += ["restart until all served"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        nodes = r["nodes"]
        create = ""
        if "create" in r:
            c = r["create"]
            per = c["seconds"] / c["created"] if c["created"] else 0
            create = f"{c['seconds']:.0f} s ({per:.2f} s per group)"
            if not c["complete"]:
                why = "error" if c.get("error") else "deadline"
                create += f", {why}: {c['created']} created"
        cells = [str(r["groups"]), create,
                 _span([n["threads"] for n in nodes], ".0f"),
                 _span([n["cpu_pct"] for n in nodes], ".1f") + "%",
                 _span([n["rss_mb"] for n in nodes], ".0f") + " MB",
                 _span([n["disk_mb"] for n in nodes], ".1f") + " MB"]
        if extra[0]:
            a = r.get("active")
            if a and "error" in a:
                cells += [f"failed: {a['error'][:80]}", ""]
            elif a:
                f = a["spread"]["fsyncs_per_s"]
                cells += [f"{a['spread']['ops_per_s']:.0f} ({a['spread']['groups']}) vs "
                          f"{a['w2_single']['ops_per_s']:.0f}",
                          _span(f, ".0f") if f else "n/a"]
            else:
                cells += ["", ""]
        if extra[1]:
            k = r.get("kill")
            if k and "error" in k:
                cells += [f"failed: {k['error'][:80]}", ""]
            else:
                cells += ([f"{k['recovery_s']} s" if k["recovery_s"] is not None
                           else "NOT ALL", f"{k['lost']} of {k['acked']} ({k['unread']} unread)"]
                          if k else ["", ""])
        if extra[2]:
            s = r.get("restart")
            if s and "error" in s:
                cells += [f"failed: {s['error'][:80]}"]
            else:
                cells += [(f"{s['serving_s']} s" if s["serving_s"] is not None
                           else f"{s['not_serving']} not served") if s else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.many_groups", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--groups", type=int, nargs="+", default=[0, 50, 100],
                   help="numbers of groups, each measured on a fresh cluster")
    p.add_argument("--create", choices=("single", "batch"), default=None,
                   help="single: one api.create per group; batch: api.create_many "
                        "(default: batch when this build has it)")
    p.add_argument("--batch", type=int, default=500, help="groups per create_many call")
    p.add_argument("--create-deadline", type=float, default=600.0,
                   help="stop creating after this many seconds")
    p.add_argument("--settle", type=float, default=5.0, help="rest before the idle window")
    p.add_argument("--window", type=float, default=10.0, help="idle CPU window, seconds")
    p.add_argument("--election-timeout", type=int, default=500)
    p.add_argument("--active", type=int, default=0, metavar="K",
                   help="writes spread over K groups vs one group's W2")
    p.add_argument("--writes", type=int, default=20_000, help="writes per active run")
    p.add_argument("--outstanding", type=int, default=1_000,
                   help="writes in flight in total (active phase)")
    p.add_argument("--time-limit", type=float, default=60.0, help="bound of an active run")
    p.add_argument("--kill", action="store_true", help="SIGKILL the node leading most groups")
    p.add_argument("--kill-outstanding", type=int, default=200)
    p.add_argument("--kill-warmup", type=float, default=2.0)
    p.add_argument("--recovery-timeout", type=float, default=120.0)
    p.add_argument("--restart", action="store_true",
                   help="restart a node and time it until it serves every group")
    p.add_argument("--restart-timeout", type=float, default=300.0)
    p.add_argument("--dir", type=Path, default=None, help="base directory (default: a temp)")
    p.add_argument("--keep", action="store_true", help="keep the clusters' directories")
    p.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = p.parse_args(argv)
    if args.create is None:
        args.create = "batch" if hasattr(api, "create_many") else "single"
    if any(n < 0 for n in args.groups) or args.batch < 1 or args.outstanding < 1:
        p.error("--groups, --batch and --outstanding must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = args.dir or Path(tempfile.mkdtemp(prefix="zraft-many-groups-"))
    base.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in args.groups:
            rows.append(run_one(n, args, base))
            if args.json:
                args.json.write_text(json.dumps({"args": {k: str(v) for k, v in
                                                          vars(args).items()},
                                                 "rows": rows}, indent=2) + "\n")
    finally:
        if args.dir is None and not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"create: {args.create}; election_timeout {args.election_timeout} ms; idle window "
          f"{args.window:.0f}s after {args.settle:.0f}s")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
