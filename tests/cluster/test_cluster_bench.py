"""`zraft bench` against a real cluster: a short run with a leader kill writes a PNG and
reports percentiles, the fault and the leader change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cluster.conftest import Cli

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
