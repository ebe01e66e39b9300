"""Seed sweep: many random simulator runs, each checked for safety and linearizability.

    python -m zraft.testing.sim.sweep --seeds N --steps M [--start S] [--mutation NAME]
                                  [--jobs J] [--verbose] [--stop-on-first]
                                  [--transfers on|off] [--quiesce on|off]

Rules:
- Seed ``s`` always replays the same run (see ``zraft.testing.sim.cluster``); a failure prints
  the one command that replays exactly that seed.
- A run fails on: a broken invariant (checked after every step), an error raised by a core, a
  cluster that does not converge once the network is healed (liveness), an acknowledged
  write missing on a live member, or a non-linearizable client history; with quiescence
  (half the seeds, or ``--quiesce``) also on an idle group that does not go quiet, or one
  that has no leader within a bound after its quiesced leader crashed
  (``zraft.testing.sim.quiet``).
- ``--jobs`` spreads seeds over processes; results are reported in seed order.
- Exit status 0 when no seed failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from zraft.core.errors import CoreError
from zraft.testing.linearizability import check_history
from zraft.testing.sim.invariants import InvariantViolation
from zraft.testing.sim.quiet import quiet_failover
from zraft.testing.sim.workload import Scenario

STABILIZE_STEPS = 30_000


@dataclass
class SeedResult:
    seed: int
    steps: int
    operations: int
    violation: str | None
    kind: str | None  # invariant | core | liveness | quiescence | linearizability | error
    digest: str
    transcript: list[str] | None = None
    profile: str = ""


def run_seed(seed: int, steps: int, mutations: frozenset[str] = frozenset(),
             verbose: bool = False, transfers: bool | None = None,
             quiesce: bool | None = None) -> SeedResult:
    """``transfers``, ``quiesce``: force leadership transfers or quiescence on or off
    (None: half the seeds each)."""
    scenario = Scenario(seed, mutations, transcript=verbose, transfers=transfers,
                        quiesce=quiesce)
    cluster = scenario.cluster
    violation = kind = None
    try:
        scenario.run(steps)
        found = quiet_failover(cluster) if scenario.quiesce else None
        if found is not None:
            kind, violation = found
        elif not cluster.stabilize(STABILIZE_STEPS):
            kind = "liveness"
            violation = (f"no convergence within {STABILIZE_STEPS} steps after healing: "
                         f"{cluster.describe()}")
        else:
            cluster.check_final()
            cluster.resolve_unknown()
            result = check_history(cluster.history)
            if not result.ok:
                kind = "linearizability"
                violation = result.explain()
    except InvariantViolation as exc:
        kind, violation = "invariant", str(exc)
    except CoreError as exc:
        kind, violation = "core", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a crash in the core or the simulator is a finding too
        kind = "error"
        violation = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    digest = hashlib.sha256(
        repr([(o.kind, o.key, o.value, o.invoke_time, o.complete_time, o.outcome, o.result)
              for o in cluster.history]).encode()
    ).hexdigest()[:16]
    return SeedResult(seed, scenario.steps, len(cluster.history), violation, kind, digest,
                      cluster.transcript, repr(scenario.profile))


def _run_packed(args: tuple[int, int, frozenset[str], bool, bool | None, bool | None]
                ) -> SeedResult:
    return run_seed(*args)


@dataclass
class SweepReport:
    seeds: int
    steps: int
    seconds: float
    failures: list[SeedResult]


def sweep(seeds: int, steps: int, start: int = 0, mutations: frozenset[str] = frozenset(),
          jobs: int = 1, stop_on_first: bool = False, verbose: bool = False,
          safety_only: bool = False, transfers: bool | None = None,
          quiesce: bool | None = None) -> SweepReport:
    """Run seeds ``start .. start+seeds-1``. ``safety_only`` ignores liveness failures (a
    mutation hunt wants a broken safety property, not a stalled cluster)."""
    started = time.perf_counter()
    work = [(s, steps, mutations, verbose, transfers, quiesce)
            for s in range(start, start + seeds)]
    failures: list[SeedResult] = []
    ran = total_steps = 0
    if jobs <= 1:
        results = map(_run_packed, work)
        pool = None
    else:
        # spawn, not fork: a sweep may run inside a process full of threads (pytest, a node
        # test), and a forked child can inherit a lock held by one of them and hang
        pool = multiprocessing.get_context("spawn").Pool(jobs)
        results = pool.imap(_run_packed, work, chunksize=max(1, min(8, seeds // (jobs * 8))))
    try:
        for result in results:
            ran += 1
            total_steps += result.steps
            if result.violation is not None and not (
                safety_only and result.kind in ("liveness", "quiescence")
            ):
                failures.append(result)
                if stop_on_first:
                    break
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return SweepReport(ran, total_steps, time.perf_counter() - started, failures)


def replay_command(seed: int, steps: int, mutations: frozenset[str],
                   transfers: bool | None = None, quiesce: bool | None = None) -> str:
    cmd = f"python -m zraft.testing.sim.sweep --seeds 1 --start {seed} --steps {steps}"
    for m in sorted(mutations):
        cmd += f" --mutation {m}"
    if transfers is not None:
        cmd += f" --transfers {'on' if transfers else 'off'}"
    if quiesce is not None:
        cmd += f" --quiesce {'on' if quiesce else 'off'}"
    return cmd + " --verbose"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zraft.testing.sim.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--mutation", action="append", default=[],
                        help="enable a deliberately broken core rule (repeatable)")
    parser.add_argument("--jobs", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--stop-on-first", action="store_true")
    parser.add_argument("--safety-only", action="store_true",
                        help="do not count runs that merely fail to converge")
    parser.add_argument("--transfers", choices=("on", "off"),
                        help="leadership transfers in every seed / in none (default: half)")
    parser.add_argument("--quiesce", choices=("on", "off"),
                        help="quiescence in every seed / in none (default: half)")
    parser.add_argument("--verbose", action="store_true",
                        help="record and print the transcript of failing seeds")
    args = parser.parse_args(argv)
    mutations = frozenset(args.mutation)
    transfers = None if args.transfers is None else args.transfers == "on"
    quiesce = None if args.quiesce is None else args.quiesce == "on"
    report = sweep(args.seeds, args.steps, args.start, mutations, args.jobs,
                   args.stop_on_first, args.verbose, args.safety_only, transfers, quiesce)
    print(f"seeds {report.seeds}  steps {report.steps}  seconds {report.seconds:.1f}  "
          f"violations {len(report.failures)}")
    for failure in report.failures:
        print(f"\nseed {failure.seed} [{failure.kind}]: {failure.violation}")
        print(f"  {failure.profile}")
        if failure.transcript is not None:
            path = Path(tempfile.gettempdir()) / f"zraft-sweep-seed-{failure.seed}.log"
            path.write_text("\n".join(failure.transcript) + "\n")
            print(f"  transcript ({len(failure.transcript)} steps): {path}; the last 40:")
            for line in failure.transcript[-40:]:
                print("   ", line)
        replay = replay_command(failure.seed, args.steps, mutations, transfers, quiesce)
        print(f"  replay: {replay}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
