"""Jepsen-style fault runs against real node processes: workloads, nemesis, history and
safety checks (``python -m zraft.testing.jepsen.run``, ``.fuzz``)."""
