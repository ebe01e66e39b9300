"""Acceptance fixtures: real node processes (``zraft.cluster.LocalCluster``) per test.

Rules: every process is started by this fixture (or by a test, which registers it with
``Acceptance.own``) and killed by its pid at teardown, whatever the test did; every wait is
a poll with a deadline (``wait_for``), never a bare sleep; elections are fast
(``election_timeout`` 250 ms) so the whole area stays within a few minutes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.client.session import Session
from zraft.cluster import LocalCluster
from zraft.cluster.local import wait_until
from zraft.errors import ZRaftError

ELECTION_TIMEOUT_MS = 250
ET = ELECTION_TIMEOUT_MS / 1000


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``pred`` until truthy (exceptions count as "not yet"); TimeoutError otherwise."""
    return wait_until(pred, timeout, what, interval)


class Acceptance:
    """One LocalCluster, a client pool with its cookie, and the helpers the scenarios use."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.cookie_file = str(cluster.cookie_file)
        self.pool = ConnectionPool(cluster.cookie.encode())
        self.sessions: list[Session] = []
        self.processes: list[psutil.Popen] = []

    @property
    def peers(self) -> list[str]:
        return self.cluster.peers

    def peer(self, node: int) -> str:
        return self.cluster.peer_id(node)

    def node_of(self, peer: str) -> int:
        return self.cluster.node(peer).index

    def alive_peers(self) -> list[str]:
        return [self.cluster.peer_id(n) for n in self.cluster.nodes if n.alive()]

    # -- cluster API shortcuts (this cluster's cookie) -------------------------------------

    def create(self, timeout: float = 20.0) -> list[str]:
        return api.create(self.peers, "dict", timeout=timeout, pool=self.pool)

    def stat(self, peer: str, timeout: float = 2.0) -> dict[str, Any]:
        return api.stat(peer, timeout=timeout, pool=self.pool)

    def light(self) -> api.LightSession:
        return api.light_session(self.peers, fail_timeout=2 * ET, election_timeout=ET)

    def session(self, peers: Any = None, session_timeout: float = 10.0, **kw: Any) -> Session:
        """A Session (own pool, this cluster's cookie), stopped at teardown."""
        kw.setdefault("election_timeout", ET)
        s = Session.start(self.peers if peers is None else peers, session_timeout,
                          cookie_file=self.cookie_file, **kw)
        self.sessions.append(s)
        return s

    # -- leaders --------------------------------------------------------------------------

    def leader(self, timeout: float = 10.0, exclude: str | None = None) -> str:
        """The peer that a majority of the running peers name as leader, and that says it
        leads (polled: right after a kill the survivors may still disagree)."""

        def agreed() -> str | None:
            alive = self.alive_peers()
            votes: dict[str, int] = {}
            for peer in alive:
                with contextlib.suppress(ZRaftError):
                    info = self.stat(peer, timeout=1.0)
                    if info.get("leader"):
                        votes[info["leader"]] = votes.get(info["leader"], 0) + 1
            for leader, count in votes.items():
                majority = count * 2 > len(self.peers)
                if (leader != exclude and majority and leader in alive
                        and self.stat(leader, timeout=1.0).get("role") == "leader"):
                    return leader
            return None

        return wait_for(agreed, timeout, "an agreed leader")

    def kill(self, peer: str) -> float:
        """SIGKILL the node hosting ``peer``; returns the monotonic time of the kill."""
        self.cluster.kill(self.node_of(peer))
        return time.monotonic()

    def restart(self, peer: str, timeout: float = 15.0) -> None:
        """Start a stopped node again and wait until its peer answers (loaded from disk)."""
        self.cluster.start_node(self.node_of(peer))
        wait_for(lambda: self.stat(peer, timeout=1.0), timeout, f"{peer} to answer")

    def own(self, proc: psutil.Popen) -> psutil.Popen:
        """Register a child process to be killed at teardown."""
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for s in self.sessions:
            with contextlib.suppress(Exception):
                s.stop(timeout=1.0)
        for proc in self.processes:
            with contextlib.suppress(psutil.Error):
                proc.kill()
                proc.wait(5)
        self.pool.close()
        for n in self.cluster.nodes:  # SIGKILL by pid, reaped
            self.cluster.kill(n)


@pytest.fixture
def make_cluster(tmp_path) -> Iterator[Callable[..., Acceptance]]:
    """``make_cluster(nodes=3, create=True, **LocalCluster kwargs)`` -> a started Acceptance."""
    made: list[Acceptance] = []

    def make(nodes: int = 3, *, create: bool = True, **kwargs: Any) -> Acceptance:
        kwargs.setdefault("election_timeout", ELECTION_TIMEOUT_MS)
        cluster = LocalCluster(tmp_path / f"cluster{len(made)}", nodes, **kwargs)
        acc = Acceptance(cluster)
        made.append(acc)
        cluster.start()
        if create:
            acc.create()
        return acc

    yield make
    for acc in made:
        acc.close()
