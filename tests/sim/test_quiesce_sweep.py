"""The seed sweep with quiescence in every seed (half the seeds of test_sweep have it too):
idle periods, failure signals delayed and lost, crashes during quiescence, and the liveness
check of zraft.testing.sim.quiet."""

from __future__ import annotations

from zraft.testing.sim.sweep import sweep


def test_quiesce_sweep_finds_no_violation():
    report = sweep(12, 2000, jobs=2, quiesce=True)
    details = "\n".join(f"seed {f.seed} [{f.kind}]: {f.violation[:2000]}"
                        for f in report.failures[:3])
    assert not report.failures, details


def test_followers_deaf_to_failure_signals_fail_the_liveness_check():
    report = sweep(6, 600, jobs=1, quiesce=True, stop_on_first=True,
                   mutations=frozenset({"quiesce_ignore_failure"}))
    assert report.failures and report.failures[0].kind == "liveness"
    assert "after the quiesced leader" in report.failures[0].violation
