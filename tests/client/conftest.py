"""Fixtures for the client tests.

``cluster`` is a FakeCluster (in-process fake nodes speaking the client protocol). Tests that
take ``cluster`` use only what a real-node cluster fixture can also offer, so one can replace
this fixture later (e.g. by overriding ``cluster`` in a conftest for real nodes):
``peers``, ``cookie`` (bytes), ``leader_id()`` (wait for and return the leader),
``followers()``, ``stop_node(peer)``, ``start_node(peer)``. Tests that steer the fake
(``script``, ``applied``, ``change_leader``, ``data``) take the ``fake`` fixture instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest

from tests.client.fake_node import FakeCluster
from zraft.client.client_actor import Client, ClientProxy
from zraft.client.connection import ConnectionPool
from zraft.client.session import Session


@pytest.fixture
def fake() -> Iterator[FakeCluster]:
    cluster = FakeCluster(3)
    yield cluster
    cluster.close()


@pytest.fixture
def cluster(fake: FakeCluster) -> FakeCluster:
    return fake


@pytest.fixture
def pool(cluster: FakeCluster) -> Iterator[ConnectionPool]:
    p = ConnectionPool(cluster.cookie)
    yield p
    p.close()


@pytest.fixture
def client(cluster: FakeCluster) -> ClientProxy:
    return Client.start(cluster.peers, cookie=cluster.cookie).proxy()


@pytest.fixture
def sessions(cluster: FakeCluster) -> Iterator[Callable[..., Session]]:
    """``sessions(timeout=10.0, peers=..., **Session.start options)``; all stopped after."""
    started: list[Session] = []

    def start(**kw: Any) -> Session:
        kw.setdefault("cookie", cluster.cookie)
        s = Session.start(kw.pop("peers", cluster.peers), kw.pop("timeout", 10.0), **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=5)
