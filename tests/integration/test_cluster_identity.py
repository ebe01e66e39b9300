"""A node started on another cluster's data (issue 11 section 2).

Cluster Y runs on some addresses, reaches a higher term and is stopped. Cluster X is then
created on the same addresses (so the same peer ids) and acknowledges 300 writes. One of X's
nodes is restarted on Y's data: same peer id, higher term. Every cluster has an identity,
generated at create, stored with every peer and carried in every Raft message, so X's
peers and the impostor refuse each other's messages (and say so): X keeps all 300 writes
and keeps serving."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

import zraft
from tests.integration.conftest import Harness
from zraft.cluster import LocalCluster
from zraft.cluster.local import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

WRITES = 300


def _bump_terms(h: Harness, rounds: int) -> None:
    for _ in range(rounds):
        leader = h.leader_index()
        h.cluster.kill(leader)
        h.cluster.start_node(leader)
        h.write(["y-bump", leader])


def test_a_node_started_on_another_clusters_data_is_refused(make_cluster, tmp_path) -> None:
    y = make_cluster(3)
    y.write(["y-only", 1])
    _bump_terms(y, 3)
    y_term = y.stat(1)["term"]
    ports = [n.port for n in y.cluster.nodes]
    y_data = y.cluster.node(3).directory / "data"
    y.cluster.stop()

    xc = LocalCluster(tmp_path / "x", 3, election_timeout=300)
    for n, port in zip(xc.nodes, ports, strict=True):
        n.port = port  # the same addresses, hence the same peer ids
    x = Harness(xc)
    try:
        xc.start()
        x.create()
        assert x.stat(1)["term"] < y_term - 1
        for i in range(WRITES):
            assert x.write([f"x{i}", i]) == "ok"
        impostor = xc.node(3)
        assert xc.stop_node(impostor) == 0
        # the same node (id, address) started on Y's data: same peer id, higher term
        config = impostor.directory / "impostor.toml"
        config.write_text(impostor.config_path.read_text().replace(
            str(impostor.directory / "data"), str(y_data)))
        proc = psutil.Popen([sys.executable, "-m", "zraft.node", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=impostor.directory, start_new_session=True)
        impostor.proc = proc  # the fixture's stop() reaps it by pid
        wait_until(lambda: _answers(x, 3), 20, "the impostor to answer")
        impostor_stat, x_stat = x.stat(3), x.stat(1)
        # Y's data: a higher term than X has (Y's node 3 may lag Y's last term by one)
        assert impostor_stat["term"] > x_stat["term"], (impostor_stat["term"], x_stat["term"])
        assert impostor_stat["cluster_id"] != x_stat["cluster_id"]
        # X goes on: writes commit, nothing acknowledged is lost, the impostor never leads
        for i in range(20):
            assert x.write([f"after{i}", i]) == "ok"
        leader = x.leader_index()
        assert leader in (1, 2)
        for i in range(WRITES):
            assert x.query(f"x{i}") == i
        assert x.query("y-only") is zraft.NOT_FOUND
        # both sides said what they refused
        wait_until(lambda: x.stat(3).get("safety_alarms", 0) > 0, 10, "the impostor's alarm")
        wait_until(lambda: any(x.stat(i).get("safety_alarms", 0) > 0 for i in (1, 2)), 10,
                   "X's alarm")
        log = (impostor.directory / "log" / "console.log").read_text()
        assert "foreign_cluster" in log
    finally:
        x.close()
        xc.stop()


def _answers(h: Harness, node: int) -> bool:
    try:
        h.stat(node, timeout=1.0)
        return True
    except zraft.ZRaftError:
        return False
