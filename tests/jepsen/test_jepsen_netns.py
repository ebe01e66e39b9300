"""The network-namespace run: each node its own namespace and IP address, partitions by
taking links down, slow links by tc. Skips (with the reason) where namespaces cannot be
made; netem delay/loss are reported unsupported on kernels without the netem qdisc."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from zraft.testing.jepsen.netns import NetnsCluster, netns_unavailable
from zraft.testing.jepsen.run import RunConfig, run_once

pytestmark = pytest.mark.integration

REASON = netns_unavailable()
needs_netns = pytest.mark.skipif(REASON is not None, reason=f"netns run skipped: {REASON}")


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


@needs_netns
def test_nodes_on_their_own_addresses_survive_link_faults(tmp_path: Path) -> None:
    cfg = RunConfig(kind="mixed", network="netns", seed=21, seconds=5.0, hold=1.2,
                    client_processes=1)
    report = run_once(cfg, tmp_path)
    detail = f"{report.line()} {report.violations} {report.diverged} {report.session_violations}"
    assert report.ok, detail
    assert sum(report.faults.values()) + sum(report.faults_unsupported.values()) >= 2
    assert report.ops["ok"] > 50
    assert report.acked_lost == 0 and report.restarted is True


@needs_netns
def test_cluster_uses_distinct_addresses_and_tears_the_network_down(tmp_path: Path) -> None:
    cluster = NetnsCluster(tmp_path / "c", 3, election_timeout=300)
    hosts = {n.address.rpartition(":")[0] for n in cluster.nodes}
    assert len(hosts) == 3 and not any(h.startswith("127.") for h in hosts)
    try:
        cluster.start()
        listed = namespaces()
        assert all(n.namespace in listed for n in cluster.netns_nodes)
        cluster.link(1, up=False)
        cluster.link(1, up=True)
    finally:
        cluster.stop()
    listed = namespaces()
    assert not any(n.namespace in listed for n in cluster.netns_nodes)
    links = subprocess.run(["ip", "link", "show"], capture_output=True, text=True).stdout
    assert cluster.bridge not in links
