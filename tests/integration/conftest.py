"""Real node processes on 127.0.0.1: a LocalCluster per test, torn down by pid."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster import LocalCluster
from zraft.cluster.local import wait_until

pytestmark = pytest.mark.integration


class Harness:
    """A started LocalCluster, a client pool with its cookie, and small helpers."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.pool = ConnectionPool(cluster.cookie.encode())
        self.session = api.light_session(cluster.peers, fail_timeout=0.5, election_timeout=0.3)

    @property
    def peers(self) -> list[str]:
        return self.cluster.peers

    def create(self, timeout: float = 20.0) -> list[str]:
        return api.create(self.peers, "dict", timeout=timeout, pool=self.pool)

    def write(self, data: Any, timeout: float = 10.0) -> Any:
        """Write through a light session over every peer (follows the leader)."""
        result, self.session = api.write(self.session, data, timeout=timeout, pool=self.pool)
        return result

    def query(self, q: Any, timeout: float = 10.0) -> Any:
        result, self.session = api.query(self.session, q, timeout=timeout, pool=self.pool)
        return result

    def stat(self, node: int, timeout: float = 5.0) -> dict[str, Any]:
        return api.stat(self.cluster.peer_id(node), timeout=timeout, pool=self.pool)

    def leader_index(self, timeout: float = 15.0) -> int:
        """1-based index of the node whose peer is leader (polls with a deadline)."""
        def find() -> int | None:
            for n in self.cluster.nodes:
                if not n.alive():
                    continue
                try:
                    if self.stat(n.index, timeout=1.0).get("role") == "leader":
                        return n.index
                except Exception:
                    continue
            return None
        return wait_until(find, timeout, "a leader")

    def node_call(self, node: int, op: str, args: list[Any] | None = None,
                  timeout: float = 5.0) -> Any:
        """A node operation (node_status, list_peers, partition, heal...) via its peer."""
        from zraft.client.calls import PeerCall

        peer = self.cluster.peer_id(node)
        return PeerCall(self.pool, peer, op, lambda _name: args or [], timeout).run()

    def node_status(self, node: int, timeout: float = 5.0) -> dict[str, Any]:
        return self.node_call(node, "node_status", timeout=timeout)

    def close(self) -> None:
        self.pool.close()


@pytest.fixture
def make_cluster(tmp_path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(nodes: int = 3, *, create: bool = True, **kwargs: Any) -> Harness:
        kwargs.setdefault("election_timeout", 300)
        cluster = LocalCluster(tmp_path / f"cluster{len(made)}", nodes, **kwargs)
        harness = Harness(cluster)
        made.append(harness)
        cluster.start()
        if create:
            harness.create()
        return harness

    yield make
    for harness in made:
        harness.close()
        harness.cluster.stop()
