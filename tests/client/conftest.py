"""Fixtures for the client tests.

``cluster`` is a FakeCluster (in-process fake nodes speaking the client protocol). Tests that
take ``cluster`` use only what a real-node cluster fixture can also offer, so one can replace
this fixture later (e.g. by overriding ``cluster`` in a conftest for real nodes):
``peers``, ``cookie`` (bytes), ``leader_id()`` (wait for and return the leader),
``followers()``, ``stop_node(peer)``, ``start_node(peer)``. Tests that steer the fake
(``script``, ``applied``, ``change_leader``, ``data``) take the ``fake`` fixture instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pykka
import pytest

from tests.client.fake_node import FakeCluster
from zraft.client.connection import ConnectionPool


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


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=5)
