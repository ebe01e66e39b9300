"""Smoke test of ``python -m bench.compare --quick``: every workload, tiny, against a real
3-node zraft cluster (and PySyncObj's front end when pysyncobj is installed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import compare
from bench.engine import Ops
from bench.pysyncobj_side import PySyncObjSide, available
from bench.workloads import Sizes, w1_sequential, w6_reads

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_quick_compare_runs_every_workload_on_zraft(tmp_path: Path, capsys) -> None:
    out = tmp_path / "result.json"
    code = compare.main(["--quick", "--sides", "zraft", "--no-profile", "--json", str(out),
                         "--base-dir", str(tmp_path / "data")])
    printed = capsys.readouterr().out
    assert code == 0, printed
    doc = json.loads(out.read_text())
    (run,) = doc["runs"]
    assert "error" not in run
    assert run["W1"]["ok"] == Sizes.quick().w1_ops
    assert run["W2"]["1000"]["ok"] == Sizes.quick().w2_ops
    assert run["W3"]["ok"] == Sizes.quick().w3_ops
    assert run["W6"]["ok"] == Sizes.quick().w6_ops and not run["W6"]["errors"]
    w4 = run["W4"]
    assert w4["acked"] > 0 and w4["acked_lost"] == 0 and w4["unverified"] == 0
    assert w4["no_commit_runs"] == 0 and w4["first_commit_s"] < 10
    w5 = run["W5"]
    assert w5["ok"] == Sizes.quick().w5_ops and w5["mb_per_s"] > 0
    assert w5["catch_up_s"] is not None and len(w5["rss_mb"]) == 3
    assert run["leader"]["entries_per_fsync"] >= 1
    assert "| W1 seq write p50 | ms |" in printed and "Durability:" in printed


def test_pysyncobj_front_end_speaks_the_zraft_protocol(tmp_path: Path) -> None:
    ok, why = available()
    if not ok:
        pytest.skip(why)
    side = PySyncObjSide(tmp_path / "pso", mode="msync", batch=0)
    try:
        side.start()
        sizes = Sizes(w1_ops=30, w6_ops=200, time_limit=20.0)
        ops = Ops(side.peer_name, 100)
        w1 = w1_sequential(side, sizes, ops)
        reads = w6_reads(side, sizes, ops)
        stat = side.stat(side.leader())
    finally:
        side.stop()
    assert w1["ok"] == 30 and not w1["errors"]
    assert reads["ok"] == 200
    assert stat is not None and stat["role"] == "leader" and stat["term"] >= 1
    assert not any(side.alive(i) for i in range(3))


def test_cpu_cost_reports_cpu_per_operation_for_every_process(tmp_path: Path) -> None:
    from bench.cpu_cost import measure
    from bench.engine import Ops
    from bench.sides import ZraftSide

    side = ZraftSide(tmp_path / "cpu")
    side.start()
    try:
        row = measure(side, Ops(side.peer_name), "w3", scale=0.02)
    finally:
        side.stop()
    assert row["ops"] >= 100 and row["ops_per_s"] > 0
    per_process = [k for k in row if k.endswith("_us")]
    assert len(per_process) == 4 and "leader_us" in per_process
    assert all(row[k] > 0 for k in per_process)
