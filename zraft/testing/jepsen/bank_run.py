"""One bank run's body (``run.py --workload bank``): clients, the nemesis, then every check.

Rules:
- Same shape as the register run: thread clients while the nemesis cycles its faults for
  ``seconds``, heal, stop the clients, converge every member (a barrier row, then each
  member's whole database read from its own replica: equal on all of them), the bank
  checks of ``bank_check``, and a kill -9 + restart of every node that must come back with
  the same database.
- The session probe runs as in the register run (``cfg.sessions``), on rows of a key-value
  table (``bank_sessions``): a session's temporary row lives exactly as long as the
  session, its session writes apply exactly once (their own history, checked for
  linearizability per key).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

from zraft.client.connection import ConnectionPool
from zraft.testing.jepsen.bank import (
    BankClients,
    BankConfig,
    barrier_command,
    read_bank_state,
    setup,
)
from zraft.testing.jepsen.bank_check import check_bank
from zraft.testing.jepsen.bank_sessions import SqlDialect, setup_probe
from zraft.testing.jepsen.history import (
    FAIL,
    OK,
    UNKNOWN,
    History,
    check_linearizable,
    save_ops,
)
from zraft.testing.jepsen.nemesis import Nemesis, Topology
from zraft.testing.jepsen.runconfig import RunConfig, RunReport, drive_faults, record_faults
from zraft.testing.jepsen.safety import SafetyReport, StateView, converge, restart_all
from zraft.testing.jepsen.sessions import SessionProbe

SQLITE_VIEW = StateView(barrier_command, read_bank_state,
                        lambda state, name: name in state["barriers"],
                        lambda state: {k: v for k, v in state.items() if k != "barriers"})


def execute_bank(cfg: RunConfig, topo: Topology, pool: ConnectionPool, directory: Path,
                 report: RunReport, nemesis: Nemesis, kinds: tuple[str, ...],
                 rng: random.Random) -> SafetyReport:
    bank: BankConfig = cfg.bank
    banks = bank.bank_count(cfg.seconds)
    setup(topo.member_peers(), bank, banks, pool)
    history = History()
    epoch = time.monotonic()
    clients = BankClients(cfg.thread_clients, topo.cluster.cookie.encode(), topo.all_peers,
                          history, bank, banks, epoch, cfg.seed,
                          tls=topo.cluster.tls_files())
    probe_history = History()
    probe = None
    if cfg.sessions:
        setup_probe(topo.member_peers(), pool)
        probe = SessionProbe(topo, topo.cluster.cookie.encode(), probe_history,
                             rng.randrange(2**32), tls=topo.cluster.tls_files(),
                             dialect=SqlDialect())
    with open(directory / "nemesis.log", "w") as nemesis_log:
        clients.start()
        if probe is not None:
            probe.start()
        try:
            drive_faults(cfg, kinds, nemesis, rng, epoch, nemesis_log)
        finally:
            clients.stop()
            if probe is not None:
                probe.stop()
            nemesis.heal_all()
    record_faults(report, nemesis)
    if probe is not None:
        probe_ops = probe_history.snapshot()
        report.session_checks = dict(probe.checks)
        report.session_violations = probe.violations(probe_ops)
        save_ops(probe_ops, directory / "probe-history.jsonl")
        lin = check_linearizable(probe_ops, directory)
        report.session_checks["probe_keys_checked"] = lin.keys
        report.session_violations.extend(
            f"session probe: not linearizable: {f}" for f in lin.failures)
    ops = history.snapshot()
    counts = Counter(op.outcome for op in ops)
    report.ops = {OK: counts[OK], FAIL: counts[FAIL], UNKNOWN: counts[UNKNOWN]}
    safety = SafetyReport(members=topo.member_peers())
    states, safety.applied, safety.diverged = converge(nemesis, pool, view=SQLITE_VIEW)
    safety.final_applied = min(safety.applied.values())
    verdict, checked = check_bank(ops, states, bank, directory)
    save_ops(checked, directory / "history.jsonl")
    if cfg.restart_check:
        restart_all(nemesis, pool, states, safety, view=SQLITE_VIEW)
    report.bank = verdict.figures()
    report.bank_violations = verdict.violations
    report.acked_inserts = verdict.transfers_acked
    report.acked_lost = len(verdict.lost)
    report.keys_checked = verdict.banks_checked
    report.timed_out_keys = verdict.gave_up
    report.linearizable = not verdict.nonlinearizable
    report.window_file = verdict.window_file
    report.violations.extend(verdict.violations)
    report.diverged = safety.diverged + safety.restart_problems
    report.restarted = safety.restarted
    return safety


__all__ = ["SQLITE_VIEW", "execute_bank"]
