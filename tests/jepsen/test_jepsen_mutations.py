"""The checkers must catch a node that is deliberately broken (test-only mutations switched on
through ZRAFT_TEST_MUTATIONS in the node process's environment)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster.local import LocalCluster, wait_until
from zraft.errors import ZRaftError
from zraft.testing.jepsen.history import OK, History
from zraft.testing.jepsen.nemesis import Nemesis, Topology
from zraft.testing.jepsen.run import RunConfig, node_env, run_once
from zraft.testing.jepsen.safety import check_after_run
from zraft.testing.jepsen.workload import ThreadClients, WorkloadConfig

pytestmark = pytest.mark.integration

DISK_DELAY_ENV = "ZRAFT_TEST_DISK_DELAY_MS"


def test_follower_answering_reads_locally_is_not_linearizable(tmp_path: Path) -> None:
    cfg = RunConfig(kind="partition_halves", seed=11, seconds=5.0, hold=2.0, sessions=False,
                    restart_check=False, mutations="follower_local_reads",
                    workload=WorkloadConfig(any_node_reads=0.5))
    report = run_once(cfg, tmp_path)
    assert not report.error, report.error
    assert not report.linearizable, report.line()
    assert report.window_file is not None and Path(report.window_file).exists()


def test_the_same_run_without_the_mutation_passes(tmp_path: Path) -> None:
    cfg = RunConfig(kind="partition_halves", seed=11, seconds=5.0, hold=2.0, sessions=False,
                    restart_check=False, workload=WorkloadConfig(any_node_reads=0.5))
    report = run_once(cfg, tmp_path)
    assert report.ok, report.line() + f" {report.violations} {report.diverged}"


def acked_then_kill(tmp_path: Path, mutations: str) -> tuple[int, int]:
    """One node, inserts only, a slow disk; kill -9 right after acknowledgements arrive,
    restart, and count acknowledged inserts the node no longer has."""
    cfg = RunConfig(nodes=1, spare=0, mutations=mutations, extra_env={DISK_DELAY_ENV: "300"})
    cluster = LocalCluster(tmp_path / "c", 1, election_timeout=300, env=node_env(cfg))
    pool = ConnectionPool(cluster.cookie.encode())
    try:
        start_or_skip(cluster, mutations)
        api.create(cluster.peers, "dict", timeout=20.0, pool=pool)
        topo = Topology(cluster, cluster.peers)
        history = History()
        inserts = WorkloadConfig(read_ratio=0, write_ratio=0, cas_ratio=0, op_timeout=3.0)
        clients = ThreadClients(4, cluster.cookie.encode(), topo.all_peers, history, inserts,
                                seed=5).start()
        try:
            wait_until(lambda: sum(op.outcome == OK for op in history.snapshot()) >= 12,
                       30.0, "a dozen acknowledged inserts")
            cluster.kill(1)
        finally:
            clients.stop()
        cluster.start_node(1)
        nemesis = Nemesis(topo, pool, random.Random(1))
        safety, _finals = check_after_run(nemesis, pool, history.snapshot(), restart=False)
        return safety.lost_count, safety.acked_inserts
    finally:
        pool.close()
        cluster.stop()


def start_or_skip(cluster: LocalCluster, mutations: str) -> None:
    try:
        cluster.start()
    except ZRaftError:
        out = (cluster.nodes[0].directory / "stdout.log").read_text()
        if "unknown mutations" in out:
            pytest.skip(f"node does not know the mutations {mutations!r} yet: the lead wires "
                        "apply_before_durable (see the jepsen report)")
        raise


def test_leader_acknowledging_before_fsync_loses_acknowledged_writes(tmp_path: Path) -> None:
    lost, acked = acked_then_kill(tmp_path, "commit_before_durable,apply_before_durable")
    assert acked >= 12
    assert lost > 0, f"no acknowledged write lost out of {acked}: the crash check missed it"


def test_a_correct_node_on_a_slow_disk_loses_nothing(tmp_path: Path) -> None:
    started = time.monotonic()
    lost, acked = acked_then_kill(tmp_path, "")
    assert acked >= 12
    assert lost == 0
    assert time.monotonic() - started < 120
