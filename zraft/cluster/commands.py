"""``zraft cluster ...``: run and break a local cluster from the shell.

Every subcommand takes ``--dir DIR`` (or ``$ZRAFT_CLUSTER_DIR``), the directory ``up``
created; later commands find the cluster in ``DIR/cluster.json``. NODE is a 1-based node
index, ``nodeK``, an address, a peer id, or ``leader`` (the current leader).

Rules: exit 0 on success, 1 when the operation failed (one line on stderr saying why), 2 for
bad usage. Fault commands return once the fault is in effect (the process is dead, stopped,
running again and answering, or every running node has its filter set), so a ``status``
right after shows it. Processes are only ever signalled by the pid recorded for them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

from zraft.client.checks import timeout_arg
from zraft.client.connection import ConnectionPool
from zraft.cluster import admin, events, rolling, status
from zraft.cluster.local import CLUSTER_FILE, LocalCluster, NodeProcess, wait_until
from zraft.errors import ZRaftError

DIR_ENV = "ZRAFT_CLUSTER_DIR"


class CommandError(Exception):
    pass


class Context:
    """The loaded cluster and one connection pool, closed after the command."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cluster = LocalCluster.load(args.dir)
        self.pool: ConnectionPool = admin.pool_for(self.cluster)

    def node(self, text: str) -> NodeProcess:
        if text == "leader":
            leader = admin.find_leader(self.pool, self.cluster)
            if leader is None:
                raise CommandError("no leader right now")
            return leader
        try:
            return self.cluster.node(text)
        except KeyError:
            raise CommandError(f"no node {text!r}: nodes are "
                               f"{', '.join(str(n.index) for n in self.cluster.nodes)}") from None

    def close(self) -> None:
        self.pool.close()


def _done(args: argparse.Namespace, text: str, **doc: Any) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"ok": True, **doc}, sort_keys=True, default=str), flush=True)
    else:
        print(text, flush=True)
    return 0


def _wait_answering(ctx: Context, n: NodeProcess, timeout: float = 15.0) -> None:
    wait_until(lambda: admin.stat(ctx.pool, ctx.cluster, n, 0.5), timeout,
               f"node {n.index}'s peer to answer")


# ---------------------------------------------------------------- up / down


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    existing = os.path.exists(os.path.join(args.dir, CLUSTER_FILE))
    made_dir = not os.path.exists(args.dir)
    before = set() if made_dir or existing else set(os.listdir(args.dir))
    if existing:
        cluster = LocalCluster.load(args.dir)
        running = [n.index for n in cluster.nodes if n.alive()]
        if running:
            raise CommandError(f"a cluster already runs in {args.dir} (nodes {running}); "
                               f"`zraft cluster down --dir {args.dir}` first")
    else:
        cluster = LocalCluster(args.dir, args.nodes, election_timeout=args.election_timeout,
                               max_log_count=args.max_log_count, backend=args.backend,
                               base_port=args.base_port, peer_name=args.peer_name,
                               python_path=args.python_path, metrics=args.metrics,
                               tls=args.tls)
    pool = admin.pool_for(cluster)
    try:
        cluster.record_fault("up")
        try:
            cluster.start()
            if existing:  # the peers come back from their data
                leader = admin.wait_leader(pool, cluster, args.timeout)
            else:
                leader = admin.create(pool, cluster, args.backend, args.timeout)
        except BaseException:
            cluster.stop()  # never leave half a cluster behind
            if not existing:  # nor its files: a retry (say, with the backend fixed) is a
                _forget_new(args.dir, made_dir, before)  # new `up`, not a restart
            raise
        cluster.save()
        took = time.monotonic() - started
        lines = [f"cluster {'restarted' if existing else 'up'} in {took:.1f}s: "
                 f"{len(cluster.nodes)} nodes in {cluster.directory}"]
        lines += [f"  node {n.index}: {cluster.peer_id(n)} pid {n.pid}"
                  + ("  (leader)" if n is leader else "")
                  + (f"  metrics http://127.0.0.1:{n.metrics_port}/metrics"
                     if n.metrics_port else "") for n in cluster.nodes]
        lines.append(f"peers: {','.join(cluster.peers)}")
        lines.append(f"cookie file: {cluster.cookie_file}")
        if cluster.tls:
            lines.append(f"TLS (mutual): CA and certificates in {cluster.tls_dir}")
        return _done(args, "\n".join(lines), dir=str(cluster.directory), peers=cluster.peers,
                     leader=cluster.peer_id(leader), seconds=round(took, 2),
                     pids=[n.pid for n in cluster.nodes], cookie_file=str(cluster.cookie_file),
                     metrics=[f"127.0.0.1:{n.metrics_port}" for n in cluster.nodes
                              if n.metrics_port], tls=cluster.tls_files())
    finally:
        pool.close()


def _forget_new(directory: str, made_dir: bool, before: set[str]) -> None:
    """Delete what a failed first ``up`` created in ``directory`` (all of it if ``up``
    created the directory), so the next ``up`` starts afresh instead of waiting for the
    leader of a group that was never created."""
    if made_dir:
        shutil.rmtree(directory, ignore_errors=True)
        return
    for name in set(os.listdir(directory)) - before:
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def cmd_down(args: argparse.Namespace) -> int:
    cluster = LocalCluster.load(args.dir)
    pids = [n.pid for n in cluster.nodes if n.alive()]
    cluster.stop(timeout=args.timeout)
    left = [n.index for n in cluster.nodes if n.alive()]
    if left:
        raise CommandError(f"nodes {left} are still running")
    if args.purge:
        cluster.purge()
    what = "stopped and purged" if args.purge else "stopped (data kept; `up` restarts it)"
    return _done(args, f"{len(pids)} node processes {what}: pids {pids}", stopped=pids,
                 purged=args.purge)


# ---------------------------------------------------------------- status / events


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    while True:
        doc = status.collect(ctx.cluster, ctx.pool, args.probe_timeout, args.groups_timeout)
        if args.json:
            print(status.to_json(doc), flush=True)
        else:
            if args.watch and sys.stdout.isatty():
                print("\x1b[H\x1b[2J", end="")
            stamp = time.strftime("%H:%M:%S", time.localtime(doc["time"]))
            print(f"{ctx.cluster.directory}  {stamp}\n{status.render(doc)}", flush=True)
        if not args.watch:
            return 0
        time.sleep(args.interval)
        ctx.cluster = LocalCluster.load(args.dir)  # pick up kills, restarts, added nodes


def cmd_events(args: argparse.Namespace) -> int:
    since = time.time() - args.since if args.since else None
    timeline = _events(args, since)
    if args.last:
        timeline = timeline[-args.last:]
    if args.json and not args.follow:
        print(json.dumps(timeline, sort_keys=True, default=str))
        return 0
    _print_events(args, timeline)
    if not timeline and not args.follow:
        print("no events yet", flush=True)
    seen = {_event_key(e) for e in timeline}
    while args.follow:  # new events as they are logged, until Ctrl-C
        time.sleep(0.5)
        start = max((float(e["t"]) for e in timeline), default=since or 0.0) - 2.0
        timeline = _events(args, start)
        fresh = [e for e in timeline if _event_key(e) not in seen]
        seen.update(_event_key(e) for e in fresh)
        _print_events(args, fresh)
    return 0


def _events(args: argparse.Namespace, since: float | None) -> list[dict[str, Any]]:
    timeline = events.timeline(args.dir, since=since)
    if args.kind:
        timeline = [e for e in timeline if e["category"] in args.kind]
    return timeline


def _event_key(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, default=str)


def _print_events(args: argparse.Namespace, timeline: list[dict[str, Any]]) -> None:
    for event in timeline:
        if args.json:  # --follow --json: one JSON document per line
            print(json.dumps(event, sort_keys=True, default=str), flush=True)
        else:
            print(events.render([event]), flush=True)


# ---------------------------------------------------------------- faults


def cmd_kill(args: argparse.Namespace, ctx: Context) -> int:
    n = ctx.node(args.node)
    pid = n.pid
    ctx.cluster.kill(n)
    return _done(args, f"node {n.index} killed (SIGKILL, pid {pid})", node=n.index, pid=pid)


def cmd_stop(args: argparse.Namespace, ctx: Context) -> int:
    n = ctx.node(args.node)
    pid = n.pid
    code = ctx.cluster.stop_node(n)
    return _done(args, f"node {n.index} stopped (SIGTERM, pid {pid})", node=n.index, pid=pid,
                 exit_code=code)


def cmd_pause(args: argparse.Namespace, ctx: Context) -> int:
    n = ctx.node(args.node)
    if not n.alive():
        raise CommandError(f"node {n.index} is not running")
    ctx.cluster.pause(n)
    return _done(args, f"node {n.index} paused (SIGSTOP, pid {n.pid})", node=n.index, pid=n.pid)


def cmd_resume(args: argparse.Namespace, ctx: Context) -> int:
    n = ctx.node(args.node)
    if not n.alive():
        raise CommandError(f"node {n.index} is not running")
    ctx.cluster.resume(n)
    return _done(args, f"node {n.index} resumed (SIGCONT, pid {n.pid})", node=n.index, pid=n.pid)


def cmd_restart(args: argparse.Namespace, ctx: Context) -> int:
    n = ctx.node(args.node)
    old = n.pid
    ctx.cluster.restart(n)
    _wait_answering(ctx, n)
    admin.reapply_partition(ctx.pool, ctx.cluster, n)
    return _done(args, f"node {n.index} restarted on its data (pid {old} -> {n.pid})",
                 node=n.index, pid=n.pid, old_pid=old)


def cmd_start(args: argparse.Namespace, ctx: Context) -> int:
    n = ctx.node(args.node)
    ctx.cluster.record_fault("restart", n)
    ctx.cluster.start_node(n)
    _wait_answering(ctx, n)
    admin.reapply_partition(ctx.pool, ctx.cluster, n)
    return _done(args, f"node {n.index} started (pid {n.pid})", node=n.index, pid=n.pid)


def cmd_rolling_restart(args: argparse.Namespace, ctx: Context) -> int:
    def show(step: dict[str, Any]) -> None:
        if not args.json:
            handed = f", leadership handed to {step['handed_to']}" if step["handed_to"] else ""
            print(f"node {step['node']} restarted (pid {step['pid']}) in "
                  f"{step['seconds']:.1f}s{handed}", flush=True)

    steps = rolling.rolling_restart(ctx.pool, ctx.cluster, transfer=not args.no_transfer,
                                    timeout=args.timeout, report=show)
    return _done(args, f"{len(steps)} nodes restarted", steps=steps)


def cmd_partition(args: argparse.Namespace, ctx: Context) -> int:
    groups = [[ctx.node(part) for part in group.split(",") if part] for group in args.groups]
    blocked = admin.partition(ctx.pool, ctx.cluster, groups)
    lines = [f"node {ctx.cluster.node(addr).index} ({addr}) drops "
             f"{','.join(str(ctx.cluster.node(b).index) for b in blocks) or 'nothing'}"
             for addr, blocks in sorted(blocked.items(),
                                        key=lambda kv: ctx.cluster.node(kv[0]).index)]
    return _done(args, "partitioned:\n  " + "\n  ".join(lines), blocked=blocked)


def cmd_heal(args: argparse.Namespace, ctx: Context) -> int:
    admin.heal(ctx.pool, ctx.cluster)
    return _done(args, "healed: every node accepts every peer again")


def cmd_add_node(args: argparse.Namespace, ctx: Context) -> int:
    n = admin.add_node(ctx.pool, ctx.cluster, args.timeout)
    peer = ctx.cluster.peer_id(n)
    return _done(args, f"node {n.index} added: {peer} pid {n.pid} (a learner until it "
                 "caught up, then a voter)", node=n.index, peer=peer, pid=n.pid,
                 peers=ctx.cluster.peers)


def cmd_remove_node(args: argparse.Namespace, ctx: Context) -> int:
    n = ctx.node(args.node)
    peers = admin.remove_node(ctx.pool, ctx.cluster, n, args.timeout)
    return _done(args, f"node {n.index} removed and stopped; peers: {','.join(peers)}",
                 node=n.index, peers=peers)


def cmd_demo(args: argparse.Namespace) -> int:
    from zraft.cluster import demo

    return demo.run(args.dir, nodes=args.nodes, seconds=args.seconds)


# ---------------------------------------------------------------- registration


def _runner(body: Callable[..., int], needs_context: bool) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if not args.dir:
            args.parser.error(f"give --dir DIR (or set ${DIR_ENV})")
        ctx: Context | None = None
        try:
            if needs_context:
                ctx = Context(args)
                return body(args, ctx)
            return body(args)
        except BrokenPipeError:  # `... | head`: the reader left, nothing to report
            return 0
        except (CommandError, ZRaftError, TimeoutError, OSError) as exc:
            name = type(exc).__name__
            if getattr(args, "json", False):
                print(json.dumps({"ok": False, "error": name, "message": str(exc)}))
            else:
                print(f"zraft cluster {args.cluster_command}: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        finally:
            if ctx is not None:
                ctx.close()
    return run


def register(subparsers: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=os.environ.get(DIR_ENV),
                        help=f"the cluster directory (default ${DIR_ENV})")
    common.add_argument("--json", action="store_true", help="JSON output for scripts")

    top = subparsers.add_parser("cluster", help="run, inspect and break a local cluster",
                                description="Run, inspect and break a local cluster.")
    sub = top.add_subparsers(dest="cluster_command", metavar="COMMAND", required=True)

    def add(name: str, body: Callable[..., int], help_text: str, context: bool = True) -> Any:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=_runner(body, context), parser=p)
        return p

    p = add("up", cmd_up, "start N node processes and create the cluster", context=False)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--base-port", type=int, help="ports P, P+1, ... (default: free ports)")
    p.add_argument("--election-timeout", type=int, default=500, metavar="MS")
    p.add_argument("--max-log-count", type=int, default=1000, metavar="N",
                   help="entries between snapshots")
    p.add_argument("--backend", default="dict", metavar="SPEC",
                   help="the group's backend: dict, or package.module:Class (the nodes "
                        "allow it; docs/backends.md)")
    p.add_argument("--python-path", action="append", default=[], metavar="DIR",
                   help="a directory the nodes import the backend's module from "
                        "(repeatable; relative to the current directory)")
    p.add_argument("--peer-name", default="zraft")
    p.add_argument("--timeout", type=timeout_arg, default=30.0, help="seconds to get a leader")
    p.add_argument("--metrics", action="store_true",
                   help="each node serves Prometheus /metrics on a free 127.0.0.1 port")
    p.add_argument("--tls", action="store_true",
                   help="mutual TLS everywhere: a throwaway CA, node and client certificates "
                        "in DIR/tls (keys 0600); `zraft --dir DIR ...` uses them")

    p = add("down", cmd_down, "stop every node process (by pid); --purge deletes the data",
            context=False)
    p.add_argument("--purge", action="store_true")
    p.add_argument("--timeout", type=timeout_arg, default=20.0,
                   help="seconds to wait for a clean stop before SIGKILL (default 20)")

    p = add("status", cmd_status, "one row per node: state, term, indexes, lag, RSS; then "
            "the nodes' other groups (one line each when few, counts by state when many)")
    p.add_argument("--watch", action="store_true", help="redraw until Ctrl-C")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--probe-timeout", type=timeout_arg, default=1.0)
    p.add_argument("--groups-timeout", type=timeout_arg, default=10.0,
                   help="bound of asking every group's peers (many groups)")

    p = add("events", cmd_events, "timeline of elections, leaders, configs, snapshots, faults",
            context=False)
    p.add_argument("--kind", action="append",
                   choices=["fault", "leader", "election", "role", "config", "snapshot", "node"])
    p.add_argument("--last", type=int, help="only the last N events")
    p.add_argument("--since", type=float, metavar="SECONDS", help="only the last SECONDS")
    p.add_argument("--follow", action="store_true", help="keep printing new events (Ctrl-C)")

    for name, body, text in (
        ("kill", cmd_kill, "SIGKILL a node"),
        ("stop", cmd_stop, "SIGTERM a node (clean stop)"),
        ("pause", cmd_pause, "SIGSTOP a node (a hung process)"),
        ("resume", cmd_resume, "SIGCONT a paused node"),
        ("restart", cmd_restart, "stop a node and start it again on the same data"),
        ("start", cmd_start, "start a stopped or killed node again"),
        ("remove-node", cmd_remove_node, "take a node out of the configuration, stop it"),
    ):
        p = add(name, body, text)
        p.add_argument("node", metavar="NODE", help="1..N, nodeK, address, peer id or 'leader'")
        if name == "remove-node":
            p.add_argument("--timeout", type=timeout_arg, default=30.0)

    p = add("rolling-restart", cmd_rolling_restart, "restart every node in turn on its data, "
            "handing leadership over before the leader's node goes down")
    p.add_argument("--no-transfer", action="store_true",
                   help="restart the leader without handing over (for comparison)")
    p.add_argument("--timeout", type=timeout_arg, default=30.0,
                   help="seconds per node to come back and catch up")

    p = add("partition", cmd_partition,
            "split the network: `partition 1,2 3` (unlisted nodes form one more group)")
    p.add_argument("groups", nargs="+", metavar="GROUP", help="comma-separated NODEs")
    add("heal", cmd_heal, "remove every partition")

    p = add("add-node", cmd_add_node, "start a node and add it (learner first, then voter)")
    p.add_argument("--timeout", type=timeout_arg, default=30.0)

    p = add("demo", cmd_demo, "bring a cluster up and show it working (make run)",
            context=False)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
