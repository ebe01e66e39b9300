"""Real-node fixtures for replicated objects: node processes that allow the objects'
backends, with ``examples/objects`` (the user-defined Inventory) on their import path.

Every node is killed by pid at teardown (``Acceptance.close``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.harness import ELECTION_TIMEOUT_MS, Acceptance, wait_for
from zraft.client import api
from zraft.cluster import LocalCluster
from zraft.objects import backend_name

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "objects"
BACKENDS = ["dict", "inventory:Inventory", "zraft.objects:Counter", "zraft.objects:Dict",
            "zraft.objects:List", "zraft.objects:Queue", "zraft.objects:Set",
            "zraft.objects:LockManager"]


class Objects(Acceptance):
    """An Acceptance whose groups are replicated objects, one group per peer name."""

    def group(self, name: str) -> list[str]:
        return [f"{name}@{n.address}" for n in self.cluster.nodes]

    def group_leader(self, peers: list[str], timeout: float = 10.0) -> str:
        """The running peer of ``peers`` that says it leads (polled)."""
        def leading() -> str | None:
            alive = set(self.alive_peers_of(peers))
            return next((p for p in peers
                         if p in alive and self.stat(p, timeout=1.0).get("role") == "leader"),
                        None)
        return wait_for(leading, timeout, "a leader")

    def alive_peers_of(self, peers: list[str]) -> list[str]:
        alive = {n.address for n in self.cluster.nodes if n.alive()}
        return [p for p in peers if p.partition("@")[2] in alive]

    def create_object(self, name: str, cls: type) -> list[str]:
        peers = self.group(name)
        api.create(peers, backend_name(cls), timeout=20, pool=self.pool)
        return peers


def make_objects(directory: Path, nodes: int = 3, **kwargs: Any) -> Objects:
    kwargs.setdefault("election_timeout", ELECTION_TIMEOUT_MS)
    acc = Objects(LocalCluster(directory, nodes, backends=BACKENDS, python_path=[EXAMPLES],
                               **kwargs))
    acc.start_nodes([n.index for n in acc.cluster.nodes])
    return acc


@pytest.fixture(scope="session")
def shared_objects(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Objects]:
    """One 3-node cluster for these tests; each test makes its own groups (peer names) on
    it, and leaves every node running.
    Snapshots every 20 entries, so they happen in short tests too."""
    acc = make_objects(tmp_path_factory.mktemp("objects"), max_log_count=20,
                       extra_raft={"snapshot_log_ratio": 0})
    yield acc
    acc.close()


@pytest.fixture(autouse=True)
def _end_test_sessions(request: pytest.FixtureRequest) -> Iterator[None]:
    """Sessions a test registered on the shared cluster end with the test (they would
    keep pinging it, and reconnecting in this process, through the tests after)."""
    if "shared_objects" not in request.fixturenames:
        yield
        return
    acc: Objects = request.getfixturevalue("shared_objects")
    first = len(acc.sessions)
    yield
    for session in acc.sessions[first:]:
        with contextlib.suppress(Exception):
            session.stop(timeout=1.0)
    del acc.sessions[first:]
