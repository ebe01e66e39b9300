"""Short Jepsen runs for ``make test``: real node processes, thread and process clients, a
session probe, one fault kind per run, then every check (about 15 s each).

The full soak is ``python -m zraft.testing.jepsen.run --minutes N`` (make soak)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zraft.testing.jepsen.run import RunConfig, main, run_once

pytestmark = pytest.mark.integration

SHORT_KINDS = ["kill_leader", "partition_bridge", "pause", "membership",
               "snapshot_install_kill", "disk_damage"]


@pytest.mark.parametrize("kind", SHORT_KINDS)
def test_short_run_passes_every_check(kind: str, tmp_path: Path) -> None:
    report = run_once(RunConfig(kind=kind, seed=101, seconds=4.0, hold=1.2), tmp_path)
    detail = f"{report.line()} {report.violations} {report.diverged} {report.session_violations}"
    assert report.ok, detail
    assert sum(report.faults.values()) >= 1
    assert report.ops["ok"] > 100
    assert report.keys_checked > 0
    assert report.acked_inserts > 0 and report.acked_lost == 0
    assert report.restarted is True
    assert report.session_checks.get("sessions", 0) >= 1
    assert report.session_checks.get("session_writes", 0) >= 1


def test_cli_single_run_prints_the_summary(tmp_path: Path, capsys) -> None:
    code = main(["--kind", "kill", "--seconds", "3", "--seed", "5", "--client-processes", "0",
                 "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS kill" in out
    assert "fault kind" in out and "acked lost" in out
    assert (tmp_path / "run-kill-5" / "report.json").exists()
    assert (tmp_path / "run-kill-5" / "history.jsonl").exists()
