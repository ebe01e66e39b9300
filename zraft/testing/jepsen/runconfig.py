"""What a Jepsen-style run is told (``RunConfig``) and what it reports (``RunReport``), and
the fault schedule every workload's run follows: its own module so the register run
(``run``) and the bank run (``bank_run``) share them without importing each other."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from zraft.testing.jepsen.bank import BankConfig
from zraft.testing.jepsen.history import FAIL, OK, UNKNOWN
from zraft.testing.jepsen.nemesis import Nemesis
from zraft.testing.jepsen.workload import WorkloadConfig


@dataclass
class RunConfig:
    kind: str = "mixed"
    seed: int = 0
    seconds: float = 20.0
    nodes: int = 3
    spare: int = 1
    thread_clients: int = 4
    client_processes: int = 1
    clients_per_process: int = 2
    election_timeout: int = 300
    max_log_count: int = 30
    max_segment_size: int = 8192
    snapshot_log_ratio: float | None = None  # None: 0 on even seeds, 1.0 on odd ones
    hold: float = 1.5  # seconds each fault stays
    gap: float = 0.5  # seconds of calm between faults
    sessions: bool = True
    restart_check: bool = True
    network: str = "loopback"  # or "netns": each node in its own namespace and address
    names: bool = False  # netns: nodes have host names and peer ids use them
    tls: bool = False  # mutual TLS on every connection (a throwaway CA, as `cluster up --tls`)
    extra_node_config: dict[str, Any] = field(default_factory=dict)  # netns: more [node] keys
    mutations: str = ""  # test-only node mutations (ZRAFT_TEST_MUTATIONS)
    extra_env: dict[str, str] = field(default_factory=dict)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    workload_name: str = "register"  # or "bank": transfers on a sqlite cluster (jepsen.bank)
    bank: BankConfig = field(default_factory=BankConfig)

    def sub_configs(self) -> dict[str, Any]:
        """The nested configs (``asdict`` turns them into dicts) for ``RunConfig(**...)``."""
        return {"workload": self.workload, "bank": self.bank}


@dataclass
class RunReport:
    kind: str
    seed: int
    directory: str
    seconds: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)
    faults_incomplete: dict[str, int] = field(default_factory=dict)
    fault_notes: dict[str, int] = field(default_factory=dict)
    faults_unsupported: dict[str, int] = field(default_factory=dict)
    snapshot_transfers: dict[str, int] = field(default_factory=dict)  # summed over nodes
    ops: dict[str, int] = field(default_factory=dict)
    keys_checked: int = 0
    timed_out_keys: int = 0
    linearizable: bool = True
    window_file: str | None = None
    violations: list[str] = field(default_factory=list)
    acked_inserts: int = 0
    acked_lost: int = 0
    diverged: list[str] = field(default_factory=list)
    restarted: bool | None = None
    log_entries_compared: int = 0  # on-disk entries checked against another node's
    session_checks: dict[str, int] = field(default_factory=dict)
    session_violations: list[str] = field(default_factory=list)
    bank: dict[str, int] = field(default_factory=dict)  # bank workload figures
    bank_violations: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return (self.linearizable and self.acked_lost == 0 and not self.diverged
                and self.restarted is not False and not self.session_violations
                and not self.bank_violations and not self.error)

    def line(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        ops = self.ops
        return (f"{verdict} {self.kind:<22} seed {self.seed:<10} {self.seconds:5.1f}s "
                f"faults {sum(self.faults.values()):>3} ops ok/fail/unknown "
                f"{ops.get(OK, 0)}/{ops.get(FAIL, 0)}/{ops.get(UNKNOWN, 0)} keys "
                f"{self.keys_checked} (gave up {self.timed_out_keys}) "
                f"{'linearizable' if self.linearizable else 'NOT LINEARIZABLE'} "
                f"acked lost {self.acked_lost}/{self.acked_inserts}"
                + (f" bank {self.bank}" if self.bank else "")
                + (f" window {self.window_file}" if self.window_file else "")
                + (f" error: {self.error}" if self.error else "")
                + (f" UNSUPPORTED here: {sorted(self.faults_unsupported)}"
                   if self.faults_unsupported else ""))


def more_faults(cfg: RunConfig, kinds: tuple[str, ...], turn: int, deadline: float) -> bool:
    """Until ``deadline``; a listed set of kinds also gets one full turn each first (on a
    slow machine ``seconds`` may end before the last kind's turn)."""
    return time.monotonic() < deadline or ("+" in cfg.kind and turn < len(kinds))


def next_fault(cfg: RunConfig, kinds: tuple[str, ...], turn: int, rng: random.Random) -> str:
    """A listed set of kinds runs in order (each kind gets its turn even in a short run);
    ``mixed`` draws at random."""
    return kinds[turn % len(kinds)] if "+" in cfg.kind else rng.choice(kinds)


def transfer_totals(nemesis: Nemesis) -> dict[str, int]:
    """Snapshot transfers counted by every node since its last start (best effort)."""
    totals: Counter[str] = Counter()
    for peer in nemesis.topo.all_peers():
        totals.update(nemesis.snapshot_counters(peer))
    return dict(totals)


def drive_faults(cfg: RunConfig, kinds: tuple[str, ...], nemesis: Nemesis,
                 rng: random.Random, epoch: float, log: Any) -> None:
    """The nemesis's part of a run: faults with calm between them until the run's time is
    up (a listed set: each kind at least once), each line written to ``log``."""
    deadline = time.monotonic() + cfg.seconds
    turn = 0
    while more_faults(cfg, kinds, turn, deadline):
        time.sleep(cfg.gap)  # calm between faults (pacing, not synchronisation)
        kind = next_fault(cfg, kinds, turn, rng)
        turn += 1
        text = nemesis.run_fault(kind)
        log.write(f"{time.monotonic() - epoch:8.2f} {text}\n")
        log.flush()
    time.sleep(cfg.gap)


def record_faults(report: RunReport, nemesis: Nemesis) -> None:
    """What the nemesis did, into the run's report."""
    report.faults = dict(nemesis.injected)
    report.faults_incomplete = dict(nemesis.failed)
    report.fault_notes = dict(nemesis.notes)
    report.faults_unsupported = dict(nemesis.unsupported)
    report.snapshot_transfers = transfer_totals(nemesis)


__all__ = ["RunConfig", "RunReport", "drive_faults", "more_faults", "next_fault",
           "record_faults", "transfer_totals"]
