"""``python -m bench.many_groups`` end to end with 2 groups: every phase runs and the table
has its figures (the bench other work is measured by must itself work)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import many_groups

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


def test_every_phase_with_two_groups(tmp_path: Path, capsys) -> None:
    out = tmp_path / "groups.json"
    code = many_groups.main(["--groups", "2", "--settle", "0", "--window", "0.5",
                             "--active", "2", "--writes", "300", "--kill",
                             "--kill-warmup", "0.5", "--restart", "--dir",
                             str(tmp_path / "data"), "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["create"]["created"] == 2 and row["create"]["complete"]
    assert len(row["nodes"]) == 3 and all(n["threads"] > 0 for n in row["nodes"])
    assert row["active"]["spread"]["ok"] == 300 and row["active"]["w2_single"]["ok"] == 300
    kill = row["kill"]
    assert kill["recovery_s"] is not None and kill["lost"] == 0 and kill["unread"] == 0
    assert kill["acked"] > 0
    assert row["restart"]["not_serving"] == 0
    assert printed.splitlines()[-1].startswith("| 2 | ")
