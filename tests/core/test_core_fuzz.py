"""Randomized runs of the core with async persistence, loss, duplication, reordering,
partitions, crashes, snapshots and membership changes; safety checked after every step."""

from __future__ import annotations

import pytest
from core_fuzz import Fuzz


@pytest.mark.parametrize("seed", range(8))
def test_fuzz_safety(seed):
    f = Fuzz(seed)
    f.run(3000)
    f.settle()
    assert f.stats["applied"] > 0, f.stats


@pytest.mark.parametrize("seed", range(4))
def test_fuzz_safety_without_prevote_and_check_quorum(seed):
    f = Fuzz(100 + seed, prevote=False, check_quorum=False)
    f.run(3000)
    f.settle()
