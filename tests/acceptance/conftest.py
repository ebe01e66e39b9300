"""Acceptance fixtures: ``make_cluster`` starts real node processes (``harness.Acceptance``)
and kills every one of them, and every child a test registered, by pid at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.acceptance.harness import ELECTION_TIMEOUT_MS, Acceptance
from zraft.cluster import LocalCluster


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
