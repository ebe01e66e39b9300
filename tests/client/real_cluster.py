"""A cluster of real node processes for the client acceptance tests.

Starts ``python -m zraft.node --config nodeN.toml`` per node on free loopback ports with one
cookie, waits until each listens, then creates peers ``p1..pN`` with ``zraft.client.create``
(check, start, bootstrap p1, configure all). Offers the same contract as the fake
(``peers``, ``cookie``, ``leader_id()``, ``followers()``, ``stop_node``, ``start_node``).
Every process is killed by pid at ``close()``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster.ports import free_port
from zraft.errors import ZRaftError

COOKIE = b"real-cluster-cookie"


def node_available() -> bool:
    """True once the node process exists and imports (``python -m zraft.node``)."""
    try:
        if importlib.util.find_spec("zraft.node.__main__") is None:
            return False
        importlib.import_module("zraft.node.server")
    except Exception:  # not built yet, or mid-way: the fake-node tests still run
        return False
    return True


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


class RealCluster:
    def __init__(self, root: Path, n: int = 3, election_timeout_ms: int = 200) -> None:
        self.root = root
        self.cookie = COOKIE
        self.ports = [free_port() for _ in range(n)]
        self.peers = [f"p{i + 1}@127.0.0.1:{port}" for i, port in enumerate(self.ports)]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.pool = ConnectionPool(self.cookie)
        try:
            self._start_all(election_timeout_ms)
        except BaseException:
            self.close()  # never leave node processes behind
            raise

    def _start_all(self, election_timeout_ms: int) -> None:
        root = self.root
        for i, peer in enumerate(self.peers):
            node_dir = root / f"node{i + 1}"
            node_dir.mkdir(parents=True, exist_ok=True)
            (node_dir / "node.toml").write_text(
                f'[node]\nlisten = "127.0.0.1:{self.ports[i]}"\ncookie = "{COOKIE.decode()}"\n'
                f'log_dir = "{node_dir / "data"}"\nsnapshot_dir = "{node_dir / "data"}"\n'
                f'[raft]\nelection_timeout = {election_timeout_ms}\n'
                f'[logging]\ndir = "{node_dir / "log"}"\n'
            )
            self.start_node(peer)
        api.create(self.peers, "dict", timeout=10, pool=self.pool)

    def peer(self, i: int) -> str:
        return self.peers[i - 1]

    def _config(self, peer: str) -> Path:
        return self.root / f"node{self.peers.index(peer) + 1}" / "node.toml"

    def start_node(self, peer: str) -> None:
        port = self.ports[self.peers.index(peer)]
        self.procs[peer] = subprocess.Popen(
            [sys.executable, "-m", "zraft.node", "--config", str(self._config(peer))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _listening(port):
            if time.monotonic() > deadline or self.procs[peer].poll() is not None:
                raise RuntimeError(f"node of {peer} did not start")
            time.sleep(0.02)

    def stop_node(self, peer: str) -> None:
        proc = self.procs.pop(peer, None)
        if proc is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(proc.pid).kill()
            proc.wait(10)

    def restart_stopped(self) -> None:
        """Restart stopped nodes and wait until their peers run again (loaded from disk)."""
        for peer in self.peers:
            if peer not in self.procs:
                self.start_node(peer)
                deadline = time.monotonic() + 10
                while True:
                    try:
                        api.stat(peer, 1.0, pool=self.pool)
                        break
                    except ZRaftError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.02)

    def leader_id(self, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for peer in self.procs:
                try:
                    return api.get_conf(peer, 1.0, pool=self.pool)[0]
                except ZRaftError:
                    continue
            if time.monotonic() > deadline:
                raise RuntimeError("no leader")

    def followers(self) -> list[str]:
        leader = self.leader_id()
        return [p for p in self.peers if p != leader and p in self.procs]

    def close(self) -> None:
        self.pool.close()
        for peer in list(self.procs):
            self.stop_node(peer)
