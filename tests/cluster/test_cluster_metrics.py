"""`zraft cluster up --metrics`: every local node serves /metrics, across down and up."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.conftest import Cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def roles(addr: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {s.labels["role"]: s.value for fam in text_string_to_metric_families(text)
            for s in fam.samples if s.name == "zraft_peer_role"}


def test_up_with_metrics_serves_them_and_keeps_them_after_down_up(cli: Cli, up) -> None:
    doc = up("--nodes", "1", "--metrics")
    assert len(doc["metrics"]) == 1
    addr = doc["metrics"][0]
    assert roles(addr)["leader"] == 1.0
    assert cli.json("down")["stopped"]
    again = cli.json("up")  # from cluster.json: the same endpoint again
    cli.pids.update(again["pids"])
    assert again["metrics"] == [addr]
    assert roles(addr)["leader"] == 1.0
