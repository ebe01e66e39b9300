"""A node's groups share one group commit: node_status shows it (log_sync), and the logs of
every group on the node use it."""

from __future__ import annotations

import pytest

import zraft
from zraft.cluster.local import free_port
from zraft.filemodes import write_private

pytestmark = pytest.mark.timeout(60)


def test_groups_of_a_node_share_its_sync_service(tmp_path) -> None:
    write_private(tmp_path / "cookie", "c\n")
    with zraft.Node(listen=f"127.0.0.1:{free_port()}", data_dir=tmp_path / "data",
                    cookie_file=str(tmp_path / "cookie")) as node:
        pool = zraft.ConnectionPool(b"c")
        try:
            service = node._server.log_sync
            for name in ("a", "b"):  # each group's log writes go through the node's service
                peer = node.peer_id(name)
                zraft.create_peer(peer, "dict", pool=pool)
                zraft.bootstrap(peer, pool=pool)
                before = service.stats()["requests"]
                assert zraft.write(peer, [name, 1], timeout=10, pool=pool)[0] == "ok"
                assert service.stats()["requests"] > before
            stats = service.stats()
            assert stats["batches"] >= 1 and stats["fsyncs"] <= stats["requests"]
            status = zraft.client.api._single(node.peer_id("a"), "node_status",
                                              lambda _n: [], 5.0, pool)
            assert status["log_sync"]["open_segment_files"] >= 2
        finally:
            pool.close()
