"""Fixtures for the asyncio client tests.

``fake``: in-process fake nodes (``tests.client.fake_node``) that can drop or delay any
request, for argument checks and cancellation. ``real``: one cluster of real node
processes per module (``tests.client.real_cluster``), with nodes a test stopped restarted
after it. ``run(coro)`` runs a coroutine on a fresh event loop, bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from tests.client.fake_node import FakeCluster
from tests.client.real_cluster import RealCluster, node_available


def run(coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
    """Run ``coro`` on a new loop; fail (not hang) after ``timeout`` seconds."""

    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


@pytest.fixture
def fake() -> Iterator[FakeCluster]:
    cluster = FakeCluster(3)
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def real_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    if not node_available():
        pytest.skip("the node process is not built")
    cluster = RealCluster(tmp_path_factory.mktemp("aio-cluster"))
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def real(real_module: RealCluster) -> Iterator[RealCluster]:
    yield real_module
    real_module.restart_stopped()
