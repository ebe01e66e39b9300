"""Short bank runs for ``make test``: transfers in ``tx`` on a sqlite cluster of real node
processes while the nemesis kills the leader, pauses a node, partitions the cluster and
changes the membership, then every check; and the same run with followers that answer
reads from their own state (a test-only mutation) must be caught as not linearizable.

The long runs are ``python -m zraft.testing.jepsen.run --workload bank --minutes N``
(``make soak``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zraft.testing.jepsen.bank import BankConfig
from zraft.testing.jepsen.netns import netns_unavailable
from zraft.testing.jepsen.run import RunConfig, run_once

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

KINDS = ("kill_leader", "pause", "partition_halves", "membership")


def test_bank_under_kills_pauses_partitions_and_membership_changes(tmp_path: Path) -> None:
    cfg = RunConfig(kind="+".join(KINDS), seed=23, seconds=4.0, hold=1.0, gap=0.3,
                    workload_name="bank")
    report = run_once(cfg, tmp_path)
    detail = f"{report.line()} {report.violations} {report.diverged} " \
             f"{report.session_violations}"
    assert report.ok, detail
    # the session probe ran on the sqlite backend too: a temporary row per session, read
    # back while the session lived, gone after it (bank_sessions)
    checks = report.session_checks
    assert checks["sessions"] >= 1 and checks["session_writes"] >= 1, checks
    assert checks["ephemeral_reads"] >= 1 and checks["probe_keys_checked"] >= 1, checks
    assert all(report.faults.get(k, 0) >= 1 for k in KINDS), report.faults
    assert report.bank["transfers_acked"] > 50, detail
    assert report.bank["reads"] > 20, detail
    assert report.keys_checked >= 2 and report.timed_out_keys == 0, detail
    assert report.restarted is True


@pytest.mark.slow  # make soak (a minute): the register's netns test runs in make test
@pytest.mark.skipif(netns_unavailable() is not None, reason="needs network namespaces")
def test_bank_in_network_namespaces_with_names_and_tls(tmp_path: Path) -> None:
    """The bank on nodes in their own namespaces, peer ids on host names, mutual TLS;
    link faults and a leader kill; the session probe on the sqlite backend."""
    cfg = RunConfig(kind="kill_leader+link_down_leader", network="netns", names=True,
                    tls=True, seed=29, seconds=5.0, hold=1.2, workload_name="bank")
    report = run_once(cfg, tmp_path)
    detail = f"{report.line()} {report.violations} {report.diverged} " \
             f"{report.session_violations}"
    assert report.ok, detail
    assert report.faults.get("kill_leader", 0) >= 1, detail
    assert report.faults.get("link_down_leader", 0) >= 1, detail
    assert report.bank["transfers_acked"] > 20 and report.restarted is True, detail
    assert report.session_checks["sessions"] >= 1, report.session_checks


@pytest.mark.slow  # make soak: the checker's planted defects are unit-tested (bank_checks)
def test_bank_run_catches_followers_answering_reads_locally(tmp_path: Path) -> None:
    cfg = RunConfig(kind="partition_halves", seed=11, seconds=5.0, hold=2.0,
                    workload_name="bank", sessions=False, restart_check=False,
                    mutations="follower_local_reads", bank=BankConfig(any_node_reads=0.5))
    report = run_once(cfg, tmp_path)
    assert not report.error, report.error
    assert not report.linearizable, report.line()
    assert report.window_file is not None and Path(report.window_file).exists()
