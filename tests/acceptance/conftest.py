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
    """``make_cluster(nodes=3, create=True, start=True, **LocalCluster kwargs)`` -> an
    Acceptance whose nodes run and are ready (and whose cluster is created)."""
    made: list[Acceptance] = []

    def make(nodes: int = 3, *, create: bool = True, start: bool = True,
             **kwargs: Any) -> Acceptance:
        kwargs.setdefault("election_timeout", ELECTION_TIMEOUT_MS)
        cluster = LocalCluster(tmp_path / f"cluster{len(made)}", nodes, **kwargs)
        acc = Acceptance(cluster)
        made.append(acc)
        if start:
            acc.start_nodes([n.index for n in cluster.nodes])
        if start and create:
            acc.create()
        return acc

    yield make
    for acc in made:
        acc.close()
