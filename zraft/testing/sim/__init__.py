"""The deterministic simulator: Raft cores over a seeded network, invariants checked after
every step, and the seed sweep (``python -m zraft.testing.sim.sweep``)."""
