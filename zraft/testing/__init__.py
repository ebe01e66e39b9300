"""Testing tools importable by users.

- ``zraft.testing.sim``: the deterministic simulator (cores over a seeded network), its
  invariants, workloads and the seed sweep (``python -m zraft.testing.sim.sweep``).
- ``zraft.testing.jepsen``: Jepsen-style fault runs against real node processes
  (``python -m zraft.testing.jepsen.run``) and the live protocol fuzzer (``.fuzz``).
- ``zraft.testing.linearizability``: the Wing & Gong checker both of them use.
"""
