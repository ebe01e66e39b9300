"""Each deliberately broken core rule must be caught by a bounded sweep: proof that the
simulator's checks can fail."""

from __future__ import annotations

import pytest

from zraft.testing.sim.sweep import run_seed, sweep

MUTATION_SEEDS = 1000
STEPS = 2000


@pytest.mark.parametrize(
    "mutation",
    [
        "commit_before_durable",
        "vote_stale_log",
        "read_without_quorum",
        "truncate_matching",
        "forget_vote",
        "vote_while_recovering",
        "heal_early",
    ],
)
def test_sweep_catches_mutation(mutation):
    report = sweep(MUTATION_SEEDS, STEPS, start=0, mutations=frozenset({mutation}), jobs=2,
                   stop_on_first=True, safety_only=True)
    assert report.failures, f"{mutation}: no violation in {report.seeds} seeds"
    found = report.failures[0]
    print(f"\n{mutation}: caught at seed {found.seed} after {report.seeds} seeds "
          f"({report.seconds:.1f}s) [{found.kind}] {found.violation[:200]}")
    # The failure replays: the same seed fails the same way.
    again = run_seed(found.seed, STEPS, frozenset({mutation}))
    assert again.violation == found.violation
