"""Fixtures for the client tests.

``cluster`` is a FakeCluster (in-process fake nodes speaking the client protocol). Tests that
use only ``cluster.peers``, ``cluster.peer(i)``, ``cluster.cookie``, ``cluster.stop_node`` and
``cluster.start_node`` are written so a real-node cluster fixture can replace this one later;
tests that steer the fake (``script``, ``applied``, ``change_leader``) are marked by using the
``fake`` fixture instead.
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
