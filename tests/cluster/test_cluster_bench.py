"""`zraft bench` against a real cluster: a short run with a leader kill writes a PNG and
reports percentiles, the fault and the leader change; Ctrl-C ends a run early with the report
of what was measured (and the plot), exit 130, no traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.cluster.conftest import Cli
from zraft.cluster.local import wait_until

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_bench_with_a_leader_kill_writes_a_png(cli: Cli, up, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    up()
    png = tmp_path / "bench.png"
    code, out = cli("bench", "--dir", str(cli.dir), "--clients", "2", "--inflight", "8",
                    "--duration", "3", "--value-size", "64", "--reads", "20%",
                    "--fault", "1:kill-leader", "--json", "--plot", str(png), "--quiet")
    cli.remember_pids()
    assert code == 0, out
    result = json.loads(out)
    assert result["ops"] > 100 and result["writes"] > 0 and result["reads"] > 0
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    assert result["throughput"] == pytest.approx(result["ops"] / 3, rel=0.01)
    assert sum(row["ops_per_s"] for row in result["timeline"]) > 0
    categories = [m["category"] for m in result["marks"]]
    assert "fault" in categories and "leader" in categories
    fault_at = next(m["at"] for m in result["marks"] if m["category"] == "fault")
    assert 0.9 <= fault_at <= 2.0
    assert any(m["at"] > fault_at for m in result["marks"] if m["category"] == "leader")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_bench_text_report(cli: Cli, up) -> None:
    up()
    code, out = cli("bench", "--dir", str(cli.dir), "--clients", "1", "--inflight", "4",
                    "--duration", "1", "--quiet")
    assert code == 0
    assert "throughput:" in out and "p99" in out and "no errors" in out
    assert "ops/s over 1 s: |" in out


def _interrupted_bench(cli: Cli, tmp_path: Path, *extra: str) -> tuple[int, str, str]:
    """Start `zraft bench` as a process, SIGINT it once it has run a while, and return
    (exit code, stdout, stderr)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    proc = psutil.Popen(
        [sys.executable, "-m", "zraft.cli", "bench", "--dir", str(cli.dir), "--clients", "2",
         "--inflight", "4", "--duration", "60", "--progress", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stderr is not None
        os.set_blocking(proc.stderr.fileno(), False)
        seen = bytearray()

        def progressed() -> bool:  # the progress line says ops are completing
            seen.extend(proc.stderr.read() or b"")
            return re.search(rb"\b[1-9]\d* ops ", bytes(seen)) is not None

        wait_until(progressed, 30, "the bench to complete operations", interval=0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        return proc.returncode, out.decode(), (bytes(seen) + err).decode()
    finally:
        if proc.is_running():
            proc.kill()
            proc.wait(5)


def test_ctrl_c_stops_the_bench_and_reports_what_it_measured(cli: Cli, up,
                                                              tmp_path: Path) -> None:
    """Ctrl-C used to end in a KeyboardInterrupt traceback and no report."""
    pytest.importorskip("matplotlib")
    up()
    png = tmp_path / "interrupted.png"
    code, out, err = _interrupted_bench(cli, tmp_path, "--plot", str(png))
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
    assert code == 130, (out, err[-2000:])
    assert "interrupted after" in out and "throughput:" in out and "p99" in out
    measured = float(re.search(r"interrupted after ([\d.]+) s", out).group(1))
    assert 0 < measured < 60
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, out, err = _interrupted_bench(cli, tmp_path, "--json")
    assert code == 130 and "Traceback" not in err, err[-2000:]
    doc = json.loads(out)
    assert doc["interrupted"] is True and doc["ops"] > 0
    assert doc["throughput"] == pytest.approx(doc["ops"] / doc["measured_s"], rel=0.01)
    assert len(doc["timeline"]) <= doc["measured_s"] / 1.0 + 2  # no empty tail to 60 s
