"""A node's threads do not grow with its groups: every group's actors run on the node's
two actor pools (issue 15). An embedded node, 40 groups of one peer each."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import zraft
from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster.admin import ask
from zraft.cluster.local import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
GROUPS = 20


def test_threads_stay_flat_as_groups_are_added(tmp_path: Path) -> None:
    port = free_port()
    with zraft.Node(listen=f"127.0.0.1:{port}", data_dir=tmp_path, cookie="c",
                    raft={"election_timeout": 200}, raft_threads=2, io_threads=3) as node:
        pool = ConnectionPool(b"c", connect_timeout=5.0)
        try:
            before = threading.active_count()
            for i in range(GROUPS):
                api.create_peer(node.peer_id(f"g{i}"), "dict", pool=pool)
            for i in range(0, GROUPS, 4):  # some lead (their peers wake on the timer)
                api.bootstrap(node.peer_id(f"g{i}"), pool=pool)
            leaders = api.stat(node.peer_id("g0"), timeout=10, pool=pool)
            assert leaders["peer"] == node.peer_id("g0")
            grown = threading.active_count() - before
            # 3 actors per group were 60 threads; a few transient ones (an admin op's
            # thread, a spare pool worker during a stop) may be alive at the count
            assert grown <= 10, grown
            status, payload = ask(pool, node.peer_id("g0"), "node_status", [], 10.0)
            assert status == "ok"
            threads = payload["threads"]
            assert {n: p["size"] for n, p in threads["pools"].items()} == {"raft": 2, "io": 3}
            assert threads["timer_deadlines"] >= GROUPS // 4  # the leaders' next heartbeats
        finally:
            pool.close()
