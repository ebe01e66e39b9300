"""The network-namespace run: each node its own namespace and IP address, partitions by
taking links down, slow links by tc. Skips (with the reason) where namespaces cannot be
made; netem delay/loss are reported unsupported on kernels without the netem qdisc."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from zraft.client import api
from zraft.client.calls import PeerCall
from zraft.client.connection import ConnectionPool
from zraft.cluster.local import wait_until
from zraft.testing.jepsen.names import _system_getaddrinfo as NAMES_SYSTEM_GETADDRINFO
from zraft.testing.jepsen.netns import NETNS_ETC, NetnsCluster, ip, netns_unavailable
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


# -- host names: peer ids name@nodeK.zr<tag>.test:port, resolved per namespace -------------


def node_status(pool: ConnectionPool, peer: str) -> dict[str, Any]:
    result = PeerCall(pool, peer, "node_status", lambda _name: [], 3.0).run()
    assert isinstance(result, dict)
    return result


@needs_netns
def test_named_nodes_replicate_and_install_snapshots_by_name(tmp_path: Path) -> None:
    """Node links, clients and the snapshot stream all dial host names. Each follower in
    turn is stopped while the log moves past a snapshot, so the leader must send it one:
    node 1 binds its snapshot listener to 0.0.0.0 (it must advertise its name, not a guess
    from the machine's host name), the others use the default (the listen host)."""
    cluster = NetnsCluster(tmp_path / "c", 3, names=True, election_timeout=300,
                           max_log_count=10, extra_raft={"snapshot_log_ratio": 0.0})
    assert all(n.address.startswith(f"node{n.index}.zr{cluster.tag}.test:")
               for n in cluster.netns_nodes)
    pool = ConnectionPool(cluster.cookie.encode(), client_id="named")
    try:
        cluster.start()
        for n in cluster.netns_nodes:
            hosts = (NETNS_ETC / n.namespace / "hosts").read_text()
            assert all(f"{m.host} {m.name}" in hosts for m in cluster.netns_nodes)
        api.create(cluster.peers, cluster.backend, timeout=20.0, pool=pool)
        leader = wait_until(lambda: next((p for p in cluster.peers if api.stat(
            p, 2.0, pool=pool).get("role") == "leader"), None), 20.0, "a leader")
        for follower in [p for p in cluster.peers if p != leader]:
            cluster.stop_node(cluster.node(follower))
            for i in range(40):
                assert api.write(leader, [f"{follower}-{i}", i], timeout=10.0,
                                 pool=pool)[0] == "ok"
            cluster.start_node(cluster.node(follower))
            target = api.stat(leader, 5.0, pool=pool)["commit"]
            wait_until(lambda f=follower, t=target: api.stat(
                f, 2.0, pool=pool)["applied"] >= t, 30.0, f"{follower} to catch up")
            assert node_status(pool, follower)["snapshots"]["received"] >= 1
            assert api.query_local(follower, f"{follower}-39", timeout=5.0, pool=pool) == 39
    finally:
        pool.close()
        cluster.stop()
    assert not any((NETNS_ETC / n.namespace).exists() for n in cluster.netns_nodes)
    assert socket.getaddrinfo is NAMES_SYSTEM_GETADDRINFO  # the controller's mapping is gone


@needs_netns
def test_named_nodes_survive_leader_kill_and_link_down(tmp_path: Path) -> None:
    """The fault runs' checks (linearizability per key, no acked write lost, replicas
    agree, restart from disk) with peer ids on host names and mutual TLS on every
    connection (node links, clients, snapshot streams; certificates naming the hosts),
    through a leader kill and a partition (the leader's link down), each at least once."""
    cfg = RunConfig(kind="kill_leader+link_down_leader", network="netns", names=True,
                    tls=True, seed=23, seconds=5.0, hold=1.2, client_processes=1)
    report = run_once(cfg, tmp_path, keep=True)
    detail = f"{report.line()} {report.violations} {report.diverged} {report.session_violations}"
    assert report.ok, detail
    assert report.faults.get("kill_leader", 0) >= 1, detail
    assert report.faults.get("link_down_leader", 0) >= 1, detail
    assert report.ops["ok"] > 50, detail
    assert report.acked_lost == 0 and report.restarted is True, detail
    history = (Path(report.directory) / "history.jsonl").read_text()
    assert ".test:" in history  # the clients talked to the nodes by name
    nodes = sorted((Path(report.directory) / "cluster").glob("node*/"))
    assert len(nodes) == 4, nodes
    for node in nodes:  # every node served TLS only, with client certificates required
        assert "tls_verify_client = true" in (node / "node.toml").read_text()
        assert "ready" in (node / "stdout.log").read_text(), node
        logs = [f.read_text(errors="replace") for f in node.rglob("*.log")]
        assert any("ready" in text for text in logs)
        assert not any("PLAINTEXT" in text for text in logs), node  # the plaintext warning


SIMULATED_DOCKER_HOST = """
import sys
from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.testing.jepsen.netns import NetnsCluster, bridge_traffic_filtered
assert bridge_traffic_filtered()
cluster = NetnsCluster(sys.argv[1], 3, names=True, election_timeout=300)
pool = ConnectionPool(cluster.cookie.encode())
try:
    cluster.start()
    api.create(cluster.peers, "dict", timeout=20.0, pool=pool)
    light = api.light_session(cluster.peers, fail_timeout=1.0, election_timeout=0.3)
    print(api.write(light, ["k", 1], timeout=20.0, pool=pool)[0])
finally:
    pool.close()
    cluster.stop()
"""


@needs_netns
@pytest.mark.timeout(120)
def test_a_host_that_filters_bridged_traffic_like_docker_does(tmp_path: Path) -> None:
    """A running Docker daemon loads br_netfilter and sets the FORWARD policy to DROP:
    every packet between the nodes' namespaces was dropped and the runs timed out. The
    host is simulated by a namespace of its own (its own iptables and bridge sysctls),
    where the whole cluster and its controller run."""
    host = f"zrhost{secrets.token_hex(2)}"
    ip("netns", "add", host)
    try:
        setup = ("ip link set lo up && sysctl -q -w net.bridge.bridge-nf-call-iptables=1"
                 " && iptables -P FORWARD DROP")
        prepared = subprocess.run(["ip", "netns", "exec", host, "sh", "-c", setup],
                                  capture_output=True, text=True, timeout=30)
        if prepared.returncode != 0:
            pytest.skip(f"cannot simulate a filtering host here: {prepared.stderr.strip()}")
        done = subprocess.run(["ip", "netns", "exec", host, sys.executable, "-c",
                               SIMULATED_DOCKER_HOST, str(tmp_path / "c")],
                              capture_output=True, text=True, timeout=100)
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
        rules = subprocess.run(["ip", "netns", "exec", host, "iptables", "-S", "FORWARD"],
                               capture_output=True, text=True, timeout=30).stdout
        assert rules.splitlines() == ["-P FORWARD DROP"]  # our rule went with the cluster
    finally:
        ip("netns", "del", host, check=False)
