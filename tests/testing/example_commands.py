"""Command generators for the example apps' backends (examples/), for the checker."""

from __future__ import annotations

import random

from zraft.testing.check_backend import query, write
from zraft.testing.check_backend.generators import Op
from zraft.testing.check_backend.shipped import _int


def inventory_commands(rng: random.Random) -> Op:
    item = rng.choice(["apple", "pear", "fig"])
    r = rng.random()
    if r < 0.35:
        return write(["restock", [item, _int(rng)]])
    if r < 0.7:
        return write(["sell", [item, rng.randint(0, 4)]])
    return query(rng.choice([["available", [item]], ["report"]]))


def jobqueue_commands(rng: random.Random) -> Op:
    r = rng.random()
    if r < 0.3:
        return write(["submit", {"n": rng.randint(0, 9)}])
    if r < 0.55:
        return write(["claim", rng.choice(["w1", "w2"])])
    if r < 0.8:
        return write(["finish", rng.randint(1, 12), rng.choice(["done", 1, None])])
    return query(rng.choice(["stats", "pending", ["job", rng.randint(1, 12)]]))
