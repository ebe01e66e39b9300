"""``check()``: run a backend through many seeded scenarios on three replicas.

Per seed: the generator's operations become a scenario (``scenario.build``); replica n1
runs it, then n2 and n3 run it (installing n1's snapshots on the way); the traces are
compared (``compare.first_problem``). The first seed with a problem raises ``CheckFailed``
(an AssertionError) whose message is the whole report: the first diverging command, each
replica's view, the likely causes and the line that replays the seed.

Replicas run in worker processes (``worker``) with PYTHONHASHSEED 101, 202 and 303 by
default, so set order differs between them and a failure replays exactly. That needs the
backend class (and ``state_of``) importable by name from a fresh interpreter (a module-level
class of an importable module); otherwise, or with ``processes=False``, the replicas run
in this process (fake clocks and random still differ; set order does not) and the summary
says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from zraft.fsm.codec import packb
from zraft.fsm.registry import canonical_name
from zraft.testing.check_backend import env
from zraft.testing.check_backend.compare import STATES_DIFFER, first_problem
from zraft.testing.check_backend.generators import backend_factory, load, resolve
from zraft.testing.check_backend.replica import ReplicaRun, Schedule, Trace
from zraft.testing.check_backend.scenario import Scenario, build, check_op, generate
from zraft.testing.check_backend.worker import Worker, WorkerDied

REPLICAS = 3
DEFAULT_HASH_SEEDS = (101, 202, 303)
PEERS = tuple(f"n{i}@127.0.0.1:{9000 + i}" for i in range(1, REPLICAS + 1))


class CheckFailed(AssertionError):
    """The backend broke a rule; ``str(exc)`` is the report. ``seed`` replays it, ``kind``
    names the rule (e.g. ``answers_differ``, ``snapshot_roundtrip``) and ``index`` is the
    log entry where it first showed (0 when not tied to one)."""

    def __init__(self, report: str, seed: int, kind: str, index: int = 0) -> None:
        super().__init__(report)
        self.report = report
        self.seed = seed
        self.kind = kind
        self.index = index


class Summary(NamedTuple):
    backend: str
    seeds: int
    steps: int
    seconds: float
    mode: str  # "processes" or "inline"
    totals: dict[str, int]
    notes: list[str]

    def __str__(self) -> str:
        t = self.totals
        return (f"{self.backend}: {self.seeds} seeds x {self.steps} steps passed in "
                f"{self.seconds:.1f} s ({self.mode}): {t.get('entries', 0):,} log entries, "
                f"applied {t.get('applied', 0):,} times by {REPLICAS} replicas, "
                f"{t.get('queries', 0):,} queries, {t.get('snapshots', 0):,} snapshots, "
                f"{t.get('restores', 0):,} restores compared, {t.get('crashes', 0):,} "
                f"crashes, {t.get('installs', 0):,} installs"
                + "".join(f"\n  note: {n}" for n in self.notes))


def _spec_of(obj: Any) -> str | None:
    """``module:qualname`` if a fresh interpreter can import exactly ``obj``, else None."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    spec = f"{module}:{qualname}"
    try:
        return spec if load(spec) is obj else None
    except Exception:
        return None


def _backend(backend: Any) -> tuple[str, type]:
    if isinstance(backend, str):
        name = canonical_name(backend)
        cls = load(name)
        if not isinstance(cls, type):
            raise TypeError(f"{backend} is not a class")
        return name, cls
    if not isinstance(backend, type):
        raise TypeError("backend must be a class or 'module:Class'")
    return _spec_of(backend) or f"{backend.__module__}:{backend.__qualname__}", backend


def _workdir(base: str | os.PathLike[str] | None) -> Path:
    if base is None and os.access("/dev/shm", os.W_OK):
        base = "/dev/shm"  # snapshots are written with fsync: a RAM disk keeps runs short
    return Path(tempfile.mkdtemp(prefix="zraft-check-", dir=base))


class _Inline:
    mode = "inline"

    def __init__(self, cls: type, state_of: Callable[[Any], Any] | None) -> None:
        self.cls, self.state_of = backend_factory(_spec_of(cls), cls), state_of
        env.install()

    def run(self, jobs: list[tuple[int, Scenario, int, Path, Any, Schedule]]) -> list[Trace]:
        return [ReplicaRun(scenario, number, PEERS[number], seed, self.cls,
                           env.for_replica(number, seed), self.state_of, workdir, foreign,
                           schedule).run()
                for number, scenario, seed, workdir, foreign, schedule in jobs]

    def close(self) -> None:
        env.uninstall()


class _Processes:
    mode = "processes"

    def __init__(self, spec: str, state_of_spec: str | None, hash_seeds: tuple[int, ...],
                 timeout: float) -> None:
        self.workers: list[Worker] = []
        try:
            for number in range(REPLICAS):
                self.workers.append(Worker(number, hash_seeds[number], spec, state_of_spec,
                                           PEERS[number], timeout))
            for worker in self.workers:
                worker.ready()
        except BaseException:
            self.close()
            raise

    def run(self, jobs: list[tuple[int, Scenario, int, Path, Any, Schedule]]) -> list[Trace]:
        for number, scenario, seed, workdir, foreign, schedule in jobs:
            self.workers[number].start_run(scenario.to_wire(), seed, str(workdir),
                                           [list(f) for f in foreign], list(schedule))
        return [Trace.from_wire(self.workers[number].finish_run()) for number, *_ in jobs]

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


class _Checker:
    def __init__(self, name: str, executor: Any, schedule: Schedule, workdir: Path,
                 describe: list[str], replay: Callable[[int], str]) -> None:
        self.name = name
        self.executor = executor
        self.schedule = schedule
        self.workdir = workdir
        self.describe = describe
        self.replay = replay
        self.totals: Counter[str] = Counter()
        self.runs = 0

    def run_seed(self, ops: list[Any], seed: int) -> None:
        """One scenario on three replicas; raises CheckFailed on the first problem."""
        scenario = build(ops, seed)
        self.runs += 1
        traces = self._traces(scenario, seed, self.schedule)
        self.totals["entries"] += len(scenario.entries)
        for trace in traces:
            self.totals.update(trace.stats)
        every = self.schedule.checkpoint_every
        problem, count = first_problem(scenario, traces, ["n1", "n2", "n3"], every)
        if problem is not None and problem.kind == STATES_DIFFER and every > 1:
            # the states are compared every few entries: run the seed again comparing them
            # after every entry, to name the entry that made them differ
            narrow = self.schedule._replace(checkpoint_every=1)
            again, _ = first_problem(scenario, self._traces(scenario, seed, narrow),
                                     ["n1", "n2", "n3"], 1)
            if again is not None and again.key <= problem.key:
                problem = again._replace(text=again.text + "\n(found by a second run of "
                                         "this seed comparing the states after every entry)")
        if problem is not None:
            more = f"\n({count} problems in this seed; the first in log order is shown)"
            raise CheckFailed(self._report(seed, problem.text + more), seed, problem.kind,
                              problem.key[0])

    def _traces(self, scenario: Scenario, seed: int, schedule: Schedule) -> list[Trace]:
        base = self.workdir / f"seed-{seed}-{self.runs}-{schedule.checkpoint_every}"
        try:
            first = self.executor.run([(0, scenario, seed, base / "n1", [], schedule)])
            foreign = first[0].snapshots
            return first + self.executor.run(
                [(n, scenario, seed, base / f"n{n + 1}", foreign, schedule)
                 for n in range(1, REPLICAS)])
        except WorkerDied as exc:
            raise CheckFailed(self._report(seed, f"a replica process failed: {exc}"), seed,
                              "replica_died") from None
        finally:
            shutil.rmtree(base, ignore_errors=True)

    def _report(self, seed: int, body: str) -> str:
        replicas = "\n".join(f"  {line}" for line in self.describe)
        return (f"zraft.testing.check_backend: {self.name} failed at scenario seed {seed}\n"
                f"{body}\n"
                f"The replicas:\n{replicas}\nReplay: {self.replay(seed)}")


@contextlib.contextmanager
def _executor(name: str, cls: type, state_of: Any, processes: bool | None,
              hash_seeds: tuple[int, ...], timeout: float, notes: list[str]) -> Iterator[Any]:
    spec = _spec_of(cls)
    state_spec = _spec_of(state_of) if state_of is not None else None
    importable = spec is not None and (state_of is None or state_spec is not None)
    if processes and not importable:
        raise ValueError(f"{name} (and state_of) must be importable by name from a fresh "
                         "interpreter to run replicas in processes")
    if processes is False or not importable:
        if processes is None:
            notes.append("replicas ran in this process (the class or state_of is not "
                          "importable by name): set and str-hash order was not varied, and "
                          "a clock imported before the check (from time import time) was "
                          "the real one")
        executor: Any = _Inline(cls, state_of)
    else:
        assert spec is not None
        executor = _Processes(spec, state_spec, hash_seeds, timeout)
    try:
        yield executor
    finally:
        executor.close()


def check(backend: Any, commands: Any = None, *, seeds: int = 10, steps: int = 200,
          seed: int = 0, state_of: Callable[[Any], Any] | None = None,
          processes: bool | None = None, hash_seeds: tuple[int, ...] = DEFAULT_HASH_SEEDS,
          timeout: float = 120.0, schedule: Schedule | None = None,
          workdir: str | os.PathLike[str] | None = None,
          progress: Callable[[str], None] | None = None,
          shrink_seconds: float = 30.0) -> Summary:
    """Check ``backend`` (a class, ``"module:Class"`` or ``"dict"``) on ``seeds`` seeded
    scenarios of ``steps`` operations from ``commands`` (see ``generators``); raises
    ``CheckFailed`` (an AssertionError) with the report on the first problem.
    ``state_of(backend)`` (optional) returns a msgpack value describing the state, compared
    besides the snapshot bytes (and then replaces the backend's own snapshot files in the
    comparisons). With a hypothesis strategy, a failure is shrunk for ``shrink_seconds``."""
    started = time.monotonic()
    name, cls = _backend(backend)
    backend_factory(_spec_of(cls), cls)()  # a backend that cannot load fails here, once
    kind, generator = resolve(name, cls, commands)
    if len(set(hash_seeds)) != REPLICAS or not all(0 < h < 2**32 for h in hash_seeds):
        raise ValueError(f"hash_seeds: {REPLICAS} different ints in 1..2**32-1")
    notes: list[str] = []
    schedule = schedule or Schedule()
    root = _workdir(workdir)
    # the command line that replays a failure: every argument that shaped the run
    args = ""
    commands_spec = commands if isinstance(commands, str) else (
        _spec_of(commands) if commands is not None else None)
    if commands_spec:
        args += f" --commands {commands_spec}"
    if state_of is not None and _spec_of(state_of):
        args += f" --state-of {_spec_of(state_of)}"
    if tuple(hash_seeds) != DEFAULT_HASH_SEEDS:
        args += " --hash-seeds " + ",".join(map(str, hash_seeds))
    if processes is False:
        args += " --inline"

    def replay(s: int) -> str:
        what = "seed" if kind == "function" else "hypothesis seed"
        shown = backend if isinstance(backend, str) else name
        return (f"python -m zraft.testing.check_backend {shown}{args} "
                f"--seed {s} --seeds 1 --steps {steps}  (or check(..., seed={s}, seeds=1, "
                f"steps={steps}); the {what} replays the run exactly)")

    try:
        with _executor(name, cls, state_of, processes, tuple(hash_seeds), timeout,
                       notes) as executor:
            describe = [f"n{n + 1} ({PEERS[n]}): {env.describe(n)}" + (
                f", PYTHONHASHSEED={hash_seeds[n]}" if executor.mode == "processes" else
                ", this process's hash seed") for n in range(REPLICAS)]
            checker = _Checker(name, executor, schedule, root, describe, replay)
            if kind == "function":
                for s in range(seed, seed + seeds):
                    checker.run_seed(generate(generator, steps, s), s)
                    if progress is not None:
                        progress(f"seed {s}: ok")
            else:
                _hypothesis_run(checker, generator, seeds, steps, seed, replay,
                                shrink_seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return Summary(name, seeds, steps, time.monotonic() - started, executor.mode,
                   dict(checker.totals), notes)


def _hypothesis_run(checker: _Checker, strategy: Any, seeds: int, steps: int, seed: int,
                    replay: Callable[[int], str], shrink_seconds: float) -> None:
    """Hypothesis draws the operations (and the scenario seed) and shrinks a failure, for
    ``shrink_seconds`` at most: each try runs three replicas, and hypothesis would otherwise
    go on for minutes. Past the budget only examples that already failed run again (so the
    smallest failure so far is the one reported); any other counts as passing."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    failed: set[bytes] = set()
    first_failure: list[float] = []

    @hypothesis_seed(seed)
    @settings(max_examples=seeds, database=None, deadline=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    # at least half the steps: hypothesis favours short lists, which would test little;
    # a failure still shrinks to half the steps of the simplest operations
    @given(ops=st.lists(strategy, min_size=max(1, steps // 2), max_size=steps),
           scenario_seed=st.integers(0, 2**31 - 1))
    def run(ops: list[Any], scenario_seed: int) -> None:
        key = packb([[check_op(op) for op in ops], scenario_seed])
        if (first_failure and time.monotonic() - first_failure[0] > shrink_seconds
                and key not in failed):
            return
        try:
            checker.run_seed(ops, scenario_seed)
        except CheckFailed:
            failed.add(key)
            if not first_failure:
                first_failure.append(time.monotonic())
            raise

    checker.replay = lambda _s: replay(seed)
    run()


__all__ = ["DEFAULT_HASH_SEEDS", "CheckFailed", "Summary", "check"]
