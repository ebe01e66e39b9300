"""The two systems under test behind one interface: a 3-node cluster on 127.0.0.1.

Rules:
- A side is a set of node processes this process started (stopped and killed by pid only)
  that all answer the zraft client protocol: ``stat`` (role, term, leader, commit,
  applied), ``propose`` and ``query``. Everything the workloads need (the leader, terms,
  RSS, kill -9, restart) is asked the same way of both sides.
- ``ZraftSide`` is a ``LocalCluster`` at the default settings (election_timeout 500 ms,
  max_log_count 1000, fsync before ack); ``bench.pysyncobj_side.PySyncObjSide`` is the peer.
- Nothing waits without a deadline.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil

from zraft.client.connection import ConnectionPool
from zraft.cluster import admin
from zraft.cluster.local import LocalCluster

ask = admin.ask  # one request, one attempt: (status, payload) or ("timeout", None)


class Side:
    """Common part: identities, status probes, leader, terms, RSS."""

    label = "side"
    system = "?"
    durability = "?"
    peer_name = "zraft"

    def __init__(self) -> None:
        self.peers: list[str] = []
        self.cookie = b""
        self.pool: ConnectionPool | None = None

    # -- to implement ----------------------------------------------------------------
    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def pid(self, i: int) -> int | None:
        raise NotImplementedError

    def kill(self, i: int) -> None:
        raise NotImplementedError

    def stop_node(self, i: int) -> None:
        raise NotImplementedError

    def start_node(self, i: int) -> None:
        raise NotImplementedError

    # -- common ------------------------------------------------------------------------
    def new_pool(self) -> ConnectionPool:
        return ConnectionPool(self.cookie, connect_timeout=2.0)

    def alive(self, i: int) -> bool:
        pid = self.pid(i)
        if pid is None:
            return False
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def stat(self, i: int, timeout: float = 1.0) -> dict[str, Any] | None:
        assert self.pool is not None
        status, payload = ask(self.pool, self.peers[i], "stat", [self.peer_name], timeout)
        return payload if status == "ok" and isinstance(payload, dict) else None

    def stats(self) -> dict[int, dict[str, Any]]:
        out = {}
        for i in range(len(self.peers)):
            if self.alive(i):
                st = self.stat(i)
                if st is not None:
                    out[i] = st
        return out

    def leader(self, timeout: float = 30.0) -> int:
        """The index of the leader every live node agrees on (polls until then)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.stats()
            leaders = [i for i, s in st.items() if s.get("role") == "leader"]
            if len(leaders) == 1:
                lid = self.peers[leaders[0]]
                live = [i for i in range(len(self.peers)) if self.alive(i)]
                if all(i in st and (i == leaders[0] or st[i].get("leader") == lid)
                       for i in live):
                    return leaders[0]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.label}: no agreed leader after {timeout:.0f}s")
            time.sleep(0.05)

    def max_term(self) -> int:
        return max((int(s.get("term") or 0) for s in self.stats().values()), default=0)

    def rss_mb(self) -> list[float]:
        out = []
        for i in range(len(self.peers)):
            pid = self.pid(i)
            try:
                out.append(psutil.Process(pid).memory_info().rss / 2**20 if pid else float("nan"))
            except psutil.Error:
                out.append(float("nan"))
        return out

    def leader_stats(self) -> dict[str, Any]:
        """Extra figures of the leader (zraft: its log writer's group commit)."""
        return {}

    def isolate(self, i: int) -> None:
        """Make the other nodes drop (not queue) what they send to node ``i``."""

    def heal(self) -> None:
        """Undo ``isolate``."""


class ZraftSide(Side):
    system = "zraft"
    durability = "fsync (fdatasync) before ack, group commit"

    def __init__(self, base_dir: Path, election_timeout: int = 500,
                 max_log_count: int = 1000, extra_raft: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.extra_raft = dict(extra_raft or {})
        self.label = "zraft"
        self.dir = base_dir
        self.election_timeout = election_timeout
        self.max_log_count = max_log_count
        self.cluster: LocalCluster | None = None

    def start(self) -> None:
        self.cluster = LocalCluster(self.dir, 3, election_timeout=self.election_timeout,
                                    max_log_count=self.max_log_count,
                                    extra_raft=self.extra_raft)
        self.cluster.start()
        self.cookie = self.cluster.cookie.encode()
        self.peer_name = self.cluster.peer_name
        self.peers = list(self.cluster.peers)
        self.pool = self.new_pool()
        admin.create(self.pool, self.cluster, "dict", 30.0)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self.cluster is not None:
            self.cluster.stop()

    def _node(self, i: int) -> Any:
        assert self.cluster is not None
        return self.cluster.nodes[i]

    def pid(self, i: int) -> int | None:
        n = self._node(i)
        return n.pid if n.alive() else None

    def kill(self, i: int) -> None:
        assert self.cluster is not None
        self.cluster.kill(self._node(i))

    def stop_node(self, i: int) -> None:
        assert self.cluster is not None
        self.cluster.stop_node(self._node(i))

    def start_node(self, i: int) -> None:
        assert self.cluster is not None
        self.cluster.start_node(self._node(i))

    def leader_stats(self) -> dict[str, Any]:
        try:
            st = self.stat(self.leader(10.0)) or {}
        except TimeoutError:
            return {}
        lw = st.get("log_writer") or {}
        return {"entries_per_fsync": lw.get("entries_per_fsync"),
                "fsync_batches": lw.get("fsync_batches")}

    def isolate(self, i: int) -> None:
        # A down peer's link queues up to 64 MB, which would replay the log to a restarted
        # follower; dropping instead (as after a long outage) makes it need the snapshot.
        assert self.pool is not None
        address = self._node(i).address
        for j in range(len(self.peers)):
            if j != i and self.alive(j):
                ask(self.pool, self.peers[j], "partition", [[address]], 2.0)

    def heal(self) -> None:
        assert self.pool is not None
        for j in range(len(self.peers)):
            if self.alive(j):
                ask(self.pool, self.peers[j], "heal", [], 2.0)

    def node_status(self, i: int) -> dict[str, Any] | None:
        assert self.pool is not None
        status, payload = ask(self.pool, self.peers[i], "node_status", [], 2.0)
        return payload if status == "ok" and isinstance(payload, dict) else None

    def snapshot_bytes_sent(self, i: int) -> int:
        st = self.node_status(i) or {}
        stream = (st.get("snapshots") or {}).get("stream") or {}
        return int(stream.get("sendfile_bytes") or 0)
