"""Leadership transfer in the simulator: random transfers keep every invariant (election
safety, log matching, leader completeness, acknowledged writes, linearizability), and the
sweep catches a transfer that hands over to a lagging target whose voters skip the log
check, while the log check alone keeps even an un-caught-up transfer safe."""

from __future__ import annotations

from zraft.testing.sim.cluster import SimCluster
from zraft.testing.sim.sweep import run_seed, sweep
from zraft.testing.sim.workload import Scenario

SEEDS, STEPS = 1500, 400


def test_in_a_calm_cluster_transfers_hand_over():
    outcomes: dict[str | None, int] = {}
    for seed in range(20):
        cluster = SimCluster(seed, nodes=3 + 2 * (seed % 2))
        for k in range(5):
            leader = cluster.elect()
            to = None if k == 4 else sorted(p for p in cluster.nodes if p != leader)[k % 2]
            ctx = cluster.transfer_leader(to)
            results = cluster.transfer_results
            cluster.run(3000, lambda ctx=ctx, results=results: any(r.ctx == ctx
                                                                   for _, r in results))
            (error,) = [r.error for _, r in results if r.ctx == ctx]
            outcomes[error] = outcomes.get(error, 0) + 1
            if error is None and to is not None:
                assert cluster.nodes[to].role == "leader"
    assert outcomes.get(None, 0) >= 95, outcomes  # of 100; the rest lose to timing


def test_random_transfers_under_faults_happen():
    outcomes: dict[str | None, int] = {}
    for seed in range(20):
        scenario = Scenario(seed, transfers=True)
        scenario.run(2000)
        for _, result in scenario.cluster.transfer_results:
            outcomes[result.error] = outcomes.get(result.error, 0) + 1
    assert outcomes.get(None, 0) >= 3 and outcomes.get("timeout", 0) >= 3, outcomes


def test_sweep_with_transfers_in_every_seed_finds_no_violation():
    report = sweep(SEEDS, STEPS, jobs=2, transfers=True)
    print(f"\ntransfer sweep: seeds {report.seeds} steps {report.steps} "
          f"seconds {report.seconds:.1f} violations {len(report.failures)}")
    details = "\n".join(f"seed {f.seed} [{f.kind}]: {f.violation}" for f in report.failures[:5])
    assert not report.failures, details


def test_without_catchup_the_vote_rule_alone_keeps_transfers_safe():
    report = sweep(200, 2000, jobs=2, mutations=frozenset({"transfer_without_catchup"}),
                   safety_only=True, transfers=True)
    assert not report.failures, report.failures[0].violation


def test_sweep_catches_a_lagging_target_elected_by_voters_that_skip_the_log_check():
    mutations = frozenset({"transfer_without_catchup", "transfer_force_vote"})
    report = sweep(1000, 2000, jobs=2, mutations=mutations, stop_on_first=True,
                   safety_only=True, transfers=True)
    assert report.failures, f"no violation in {report.seeds} seeds"
    found = report.failures[0]
    print(f"\ncaught at seed {found.seed} after {report.seeds} seeds [{found.kind}] "
          f"{found.violation[:200]}")
    again = run_seed(found.seed, 2000, mutations, transfers=True)
    assert again.violation == found.violation
