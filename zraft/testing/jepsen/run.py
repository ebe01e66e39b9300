"""Jepsen-style runs against real node processes, and soaks of many runs.

    python -m zraft.testing.jepsen.run --minutes 30            # soak: fresh seeds, every kind
    python -m zraft.testing.jepsen.run --kind pause --seconds 20 --seed 7   # one run
    python -m zraft.testing.jepsen.run --workload bank --minutes 10   # bank on sqlite

Rules:
- One run = one fresh LocalCluster (``nodes`` members plus one blank spare for membership
  changes), thread clients AND client processes on shared keys, a session probe, and a
  nemesis cycling one fault kind (``mixed``: all kinds) for ``seconds``. Then: heal, stop
  clients, crash-safety checks (which append every member's final values as reads),
  linearizability per key, and a restart of every node from its own data.
- Tiny ``max_log_count`` and ``max_segment_size`` make snapshots, installs and segment rolls
  happen all the time, in every run. Even seeds snapshot on the count alone
  (``snapshot_log_ratio`` 0, zraft_lib's rule: the most snapshots), odd seeds with the
  default ratio 1.0 (the rule nodes run with), unless ``snapshot_log_ratio`` is given.
- The verdict of a run is ``ok`` only if the history is linearizable, no acknowledged write
  is lost, the replicas agree, the restart works and the session checks pass. A key whose
  search gives up is counted (``timed_out_keys``), never called linearizable or not.
- Every run leaves its directory (``--workdir``/run-<n>-<kind>-<seed>): node logs, the
  history (history.jsonl), the nemesis log and, on a violation, the offending window.
  Passing runs' node directories are deleted unless ``--keep``.
- ``--workload bank``: the same faults and crash-safety checks on a ``sqlite`` cluster
  whose clients transfer money between accounts (``bank``, ``bank_check``, ``bank_run``).
- Exit code 0 when every run passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster.local import LocalCluster
from zraft.testing.jepsen.bank import BankConfig
from zraft.testing.jepsen.history import (
    FAIL,
    OK,
    UNKNOWN,
    History,
    check_linearizable,
    save_ops,
)
from zraft.testing.jepsen.nemesis import FAULT_KINDS, Nemesis, Topology
from zraft.testing.jepsen.runconfig import RunConfig, RunReport, drive_faults, record_faults
from zraft.testing.jepsen.safety import SafetyReport, check_after_run, compare_logs
from zraft.testing.jepsen.sessions import SessionProbe
from zraft.testing.jepsen.workload import KeySpace, ProcessClients, ThreadClients

MUTATIONS_ENV = "ZRAFT_TEST_MUTATIONS"
NETNS_KINDS = ("link_down_leader", "link_down_node", "link_down_minority", "slow_link",
               "netem_delay", "netem_loss")  # jepsen.netns.NETNS_FAULT_KINDS (lazy import)


def node_env(cfg: RunConfig) -> dict[str, str]:
    """Extra environment of every node process: the test-only switches of this run."""
    env = dict(cfg.extra_env)
    if cfg.mutations:
        env[MUTATIONS_ENV] = cfg.mutations
    return env


def make_cluster(cfg: RunConfig, directory: Path) -> LocalCluster:
    kw: dict[str, Any] = {
        "election_timeout": cfg.election_timeout, "max_log_count": cfg.max_log_count,
        "extra_raft": {"max_segment_size": cfg.max_segment_size,
                       "snapshot_log_ratio": snapshot_log_ratio(cfg)},
        "env": node_env(cfg), "backend": "sqlite" if cfg.workload_name == "bank" else "dict"}
    if cfg.network == "netns":
        from zraft.testing.jepsen.netns import NetnsCluster
        return NetnsCluster(directory, cfg.nodes + cfg.spare, names=cfg.names,
                            extra_node_config=cfg.extra_node_config, tls=cfg.tls, **kw)
    return LocalCluster(directory, cfg.nodes + cfg.spare, tls=cfg.tls, **kw)


def snapshot_log_ratio(cfg: RunConfig) -> float:
    if cfg.snapshot_log_ratio is not None:
        return cfg.snapshot_log_ratio
    return 0.0 if cfg.seed % 2 == 0 else 1.0


def fault_kinds(cfg: RunConfig) -> tuple[str, ...]:
    """The kinds a run draws from: one kind, ``mixed`` (all), or ``a+b+c`` (those, in turn:
    see ``next_fault``)."""
    if cfg.kind != "mixed":
        return tuple(cfg.kind.split("+"))
    if cfg.network == "netns":
        from zraft.testing.jepsen.netns import NETNS_FAULT_KINDS
        return NETNS_FAULT_KINDS
    return FAULT_KINDS


def make_nemesis(cfg: RunConfig, topo: Topology, pool: ConnectionPool,
                 rng: random.Random) -> Nemesis:
    if cfg.network == "netns":
        from zraft.testing.jepsen.netns import NetnsNemesis
        return NetnsNemesis(topo, pool, rng, hold=cfg.hold)
    return Nemesis(topo, pool, rng, hold=cfg.hold)


def run_once(cfg: RunConfig, workdir: Path, keep: bool = False) -> RunReport:
    network = "netns-names" if cfg.network == "netns" and cfg.names else cfg.network
    label = cfg.kind if network == "loopback" else f"{network}-{cfg.kind}"
    if cfg.workload_name == "bank":
        label = f"bank-{label}"
    directory = workdir / f"run-{label}-{cfg.seed}"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    report = RunReport(label, cfg.seed, str(directory))
    started = time.monotonic()
    safety_box: list[SafetyReport] = []
    cluster = make_cluster(cfg, directory / "cluster")
    pool = ConnectionPool(cluster.cookie.encode(), client_id=f"jepsen-admin-{cfg.seed}",
                          tls=cluster.client_tls())
    try:
        cluster.start()
        members = cluster.peers[: cfg.nodes]
        api.create(members, cluster.backend, timeout=20.0, pool=pool)
        topo = Topology(cluster, sorted(members))
        safety_box.append(execute(cfg, topo, pool, directory, report))
    except Exception as exc:  # a run that breaks is a failed run, reported, not hidden
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        pool.close()
        cluster.stop()
    if safety_box:
        safety = safety_box[0]
        problems, report.log_entries_compared = compare_logs(cluster, safety.members,
                                                             safety.final_applied)
        report.diverged.extend(problems)
    report.seconds = time.monotonic() - started
    (directory / "report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    if report.ok and not keep:
        shutil.rmtree(directory / "cluster", ignore_errors=True)
    return report


def execute(cfg: RunConfig, topo: Topology, pool: ConnectionPool, directory: Path,
            report: RunReport) -> SafetyReport:
    rng = random.Random(cfg.seed)
    if cfg.workload_name == "bank":
        from zraft.testing.jepsen.bank_run import execute_bank
        return execute_bank(cfg, topo, pool, directory, report,
                            make_nemesis(cfg, topo, pool, rng), fault_kinds(cfg), rng)
    history = History()
    cookie = topo.cluster.cookie.encode()
    epoch = time.monotonic()
    tls = topo.cluster.tls_files()
    threads = ThreadClients(cfg.thread_clients, cookie, topo.all_peers, history, cfg.workload,
                            cfg.seed, keys=KeySpace(cfg.workload, epoch), tls=tls)
    procs = ProcessClients(cfg.client_processes, cfg.clients_per_process, cookie,
                           topo.all_peers(), cfg.workload, cfg.seed, directory, epoch,
                           max_seconds=cfg.seconds + 120,
                           hosts=getattr(topo.cluster, "host_names", None), tls=tls)
    probe = (SessionProbe(topo, cookie, history, rng.randrange(2**32), tls=tls)
             if cfg.sessions else None)
    nemesis = make_nemesis(cfg, topo, pool, rng)
    kinds = fault_kinds(cfg)
    nemesis_log = open(directory / "nemesis.log", "w")  # noqa: SIM115 (closed below)
    threads.start()
    procs.start()
    if probe is not None:
        probe.start()
    try:
        drive_faults(cfg, kinds, nemesis, rng, epoch, nemesis_log)
    finally:
        threads.stop()
        history.extend(procs.stop())
        if probe is not None:
            probe.stop()
        nemesis.heal_all()
        nemesis_log.close()
    record_faults(report, nemesis)
    ops = history.snapshot()
    safety, finals = check_after_run(nemesis, pool, ops, restart=cfg.restart_check)
    report.acked_inserts = safety.acked_inserts
    report.acked_lost = safety.lost_count
    report.diverged = safety.diverged + safety.restart_problems
    report.restarted = safety.restarted
    if safety.lost:
        report.violations.append(f"acknowledged writes lost: {safety.lost}")
    if probe is not None:
        report.session_checks = dict(probe.checks)
        report.session_violations = probe.violations(ops)
    counts = Counter(op.outcome for op in ops)
    report.ops = {OK: counts[OK], FAIL: counts[FAIL], UNKNOWN: counts[UNKNOWN]}
    save_ops(ops + finals, directory / "history.jsonl")
    lin = check_linearizable(ops + finals, directory)
    report.keys_checked = lin.keys
    report.timed_out_keys = lin.timed_out_keys
    report.linearizable = lin.ok
    report.window_file = lin.window_file
    report.violations.extend(lin.failures[:5])
    return safety


# -- soak --------------------------------------------------------------------------------


@dataclass
class KindTotals:
    runs: int = 0
    failed_runs: int = 0
    faults: int = 0
    ok: int = 0
    fail: int = 0
    unknown: int = 0
    histories: int = 0
    keys: int = 0
    gave_up: int = 0
    nonlinearizable: int = 0
    acked_lost: int = 0
    snapshots_sent: int = 0
    unsupported: int = 0
    notes: Counter[str] = field(default_factory=Counter)
    bank: Counter[str] = field(default_factory=Counter)  # bank workload figures, summed
    windows: list[str] = field(default_factory=list)

    def add(self, r: RunReport) -> None:
        self.runs += 1
        self.failed_runs += 0 if r.ok else 1
        self.faults += sum(r.faults.values())
        self.ok += r.ops.get(OK, 0)
        self.fail += r.ops.get(FAIL, 0)
        self.unknown += r.ops.get(UNKNOWN, 0)
        self.histories += 1 if r.ops else 0
        self.keys += r.keys_checked
        self.gave_up += r.timed_out_keys
        self.nonlinearizable += 0 if r.linearizable else 1
        self.acked_lost += r.acked_lost
        self.snapshots_sent += r.snapshot_transfers.get("sent", 0)
        self.unsupported += sum(r.faults_unsupported.values())
        self.notes.update(r.fault_notes)
        self.bank.update(r.bank)
        if r.window_file:
            self.windows.append(r.window_file)


def summary(totals: dict[str, KindTotals]) -> str:
    head = (f"{'fault kind':<22} {'runs':>4} {'faults':>6} {'ok':>7} {'fail':>6} "
            f"{'unknown':>7} {'histories':>9} {'keys':>6} {'gave up':>7} {'non-lin':>7} "
            f"{'acked lost':>10} {'snap sent':>9} {'failed':>6}")
    lines = [head, "-" * len(head)]
    for kind in sorted(totals):
        t = totals[kind]
        lines.append(f"{kind:<22} {t.runs:>4} {t.faults:>6} {t.ok:>7} {t.fail:>6} "
                     f"{t.unknown:>7} {t.histories:>9} {t.keys:>6} {t.gave_up:>7} "
                     f"{t.nonlinearizable:>7} {t.acked_lost:>10} {t.snapshots_sent:>9} "
                     f"{t.failed_runs:>6}")
        for note, count in sorted(t.notes.items()):
            lines.append(f"    {note}: {count}")
        if t.bank:
            lines.append("    bank: " + ", ".join(f"{k} {v}" for k, v in sorted(t.bank.items())))
        if t.unsupported:
            lines.append(f"    not injectable on this machine: {t.unsupported}")
        for w in t.windows:
            lines.append(f"    offending window: {w}")
    return "\n".join(lines)


def soak(minutes: float, workdir: Path, base: RunConfig, kinds: list[str],
         keep: bool = False, out: Any = sys.stdout) -> dict[str, KindTotals]:
    """Runs in turn over ``kinds`` with fresh random seeds until ``minutes`` pass."""
    totals: dict[str, KindTotals] = {k: KindTotals() for k in kinds}
    deadline = time.monotonic() + minutes * 60
    turn = 0
    rotation = list(kinds)
    while time.monotonic() < deadline and rotation:
        kind = rotation[turn % len(rotation)]
        turn += 1
        left = deadline - time.monotonic()
        seconds = max(5.0, min(base.seconds, left - 15))
        cfg = RunConfig(**{**asdict(base), "kind": kind, "seed": random.SystemRandom().randrange(
            2**31), "seconds": seconds, **base.sub_configs()})
        report = run_once(cfg, workdir, keep)
        totals[kind].add(report)
        print(report.line(), file=out, flush=True)
        if report.faults_unsupported.get(kind) and not report.faults.get(kind):
            rotation.remove(kind)  # this machine cannot inject it: do not spend time on it
            print(f"    {kind}: not injectable here, dropped from the rotation", file=out)
    print(summary(totals), file=out, flush=True)
    return totals


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zraft.testing.jepsen.run",
                                description="Jepsen-style runs against real zraft nodes.")
    p.add_argument("--minutes", type=float, help="soak: run until this many minutes pass")
    p.add_argument("--kind", action="append",
                   choices=(*FAULT_KINDS, *NETNS_KINDS, "mixed", "none"),
                   help="fault kind(s); default every kind in turn")
    p.add_argument("--netns", action="store_true",
                   help="each node in its own network namespace (root; iproute2)")
    p.add_argument("--names", action="store_true",
                   help="--netns: nodes have host names (per-namespace hosts files) and peer "
                        "ids use them")
    p.add_argument("--tls", action="store_true",
                   help="mutual TLS on every connection (a throwaway CA, as `cluster up --tls`)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of one run")
    p.add_argument("--seed", type=int, help="seed of a single run (default random)")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--clients", type=int, default=4, help="thread clients")
    p.add_argument("--client-processes", type=int, default=1,
                   help="client processes (register workload; bank clients are threads)")
    p.add_argument("--election-timeout", type=int, default=300)
    p.add_argument("--max-log-count", type=int, default=30)
    p.add_argument("--workload", choices=("register", "bank"), default="register",
                   help="register keys on the dict backend, or bank transfers on sqlite")
    p.add_argument("--accounts", type=int, default=5, help="accounts per bank (bank)")
    p.add_argument("--mutations", default="", help="test-only node mutations (never in use)")
    p.add_argument("--workdir", help="where runs keep their files (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep node directories of passing runs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="zraft-jepsen-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    base = RunConfig(seconds=args.seconds, nodes=args.nodes, thread_clients=args.clients,
                     client_processes=args.client_processes,
                     election_timeout=args.election_timeout, max_log_count=args.max_log_count,
                     mutations=args.mutations, network="netns" if args.netns else "loopback",
                     names=args.names, tls=args.tls, workload_name=args.workload,
                     bank=BankConfig(accounts=args.accounts),
                     sessions=True)
    if args.netns:
        from zraft.testing.jepsen.netns import netns_unavailable
        reason = netns_unavailable()
        if reason:
            print(f"zraft jepsen: netns run skipped: {reason}", flush=True)
            return 0
    kinds = args.kind or [*(NETNS_KINDS if args.netns else FAULT_KINDS), "mixed"]
    print(f"zraft jepsen: workdir {workdir}", flush=True)
    if args.minutes is not None:
        totals = soak(args.minutes, workdir, base, kinds, args.keep)
        return 0 if all(t.failed_runs == 0 for t in totals.values()) else 1
    totals = {k: KindTotals() for k in kinds}
    for kind in kinds:
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
        cfg = RunConfig(**{**asdict(base), "kind": kind, "seed": seed,
                           **base.sub_configs()})
        report = run_once(cfg, workdir, args.keep)
        totals[kind].add(report)
        print(report.line(), flush=True)
        for v in report.violations + report.diverged + report.session_violations:
            print(f"    {v}", flush=True)
    print(summary(totals), flush=True)
    return 0 if all(t.failed_runs == 0 for t in totals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
