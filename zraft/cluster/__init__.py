"""Local multi-node clusters for experiments and tests (real node processes on 127.0.0.1)."""

from zraft.cluster.local import LocalCluster, NodeProcess, free_port

__all__ = ["LocalCluster", "NodeProcess", "free_port"]
