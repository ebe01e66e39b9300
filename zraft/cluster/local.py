"""LocalCluster: N `python -m zraft.node` processes on 127.0.0.1, for experiments and tests.

Rules: every process is started with psutil and stopped by its pid (never by name); every
wait polls with a deadline; ports are free loopback ports chosen at creation; each node has
its own directory ``DIR/nodeK/`` with its config, data and logs. ``cluster.json`` in DIR
records peers, ports, pids and the cookie file so later commands find the cluster.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from zraft.errors import ZRaftError


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``pred`` until it returns a truthy value; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except Exception as exc:  # polled conditions may fail while things start
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


@dataclass
class NodeProcess:
    index: int
    port: int
    directory: Path
    proc: psutil.Popen | None = None
    extra_raft: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "node.toml"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        if self.proc is None:
            return False
        try:
            return self.proc.is_running() and self.proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False


class LocalCluster:
    """Start, stop, kill, pause and restart node processes of one local cluster."""

    def __init__(self, directory: str | os.PathLike[str], nodes: int = 3, *,
                 election_timeout: int = 500, max_log_count: int = 1000,
                 backend: str = "dict", base_port: int | None = None,
                 peer_name: str = "zraft", extra_raft: dict[str, Any] | None = None) -> None:
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.election_timeout = election_timeout
        self.max_log_count = max_log_count
        self.backend = backend
        self.peer_name = peer_name
        self.cookie_file = self.directory / "cookie"
        if not self.cookie_file.exists():
            self.cookie_file.write_text(secrets.token_hex(16) + "\n")
            self.cookie_file.chmod(0o600)
        self.nodes: list[NodeProcess] = []
        for k in range(1, nodes + 1):
            port = base_port + k - 1 if base_port else free_port()
            self.nodes.append(NodeProcess(k, port, self.directory / f"node{k}",
                                          extra_raft=dict(extra_raft or {})))

    # ---------------------------------------------------------------- identities

    @property
    def cookie(self) -> str:
        return self.cookie_file.read_text().strip()

    def peer_id(self, node: NodeProcess | int) -> str:
        n = self.node(node)
        return f"{self.peer_name}@{n.address}"

    @property
    def peers(self) -> list[str]:
        return [self.peer_id(n) for n in self.nodes]

    def node(self, node: NodeProcess | int | str) -> NodeProcess:
        if isinstance(node, NodeProcess):
            return node
        if isinstance(node, int):
            return self.nodes[node - 1]
        for n in self.nodes:
            if node in (str(n.index), n.address, self.peer_id(n)):
                return n
        raise KeyError(f"no node {node!r} in this cluster")

    # ---------------------------------------------------------------- processes

    def write_config(self, n: NodeProcess) -> None:
        n.directory.mkdir(parents=True, exist_ok=True)
        raft = {"election_timeout": self.election_timeout, "max_log_count": self.max_log_count,
                **n.extra_raft}
        lines = ["[node]", f'listen = "{n.address}"', f'cookie_file = "{self.cookie_file}"',
                 f'log_dir = "{n.directory / "data"}"',
                 f'snapshot_dir = "{n.directory / "data"}"', "", "[raft]"]
        for key, value in raft.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines += ["", "[logging]", f'dir = "{n.directory / "log"}"', 'level = "info"']
        n.config_path.write_text("\n".join(lines) + "\n")

    def start_node(self, node: NodeProcess | int, wait: bool = True) -> NodeProcess:
        n = self.node(node)
        if n.alive():
            return n
        self.write_config(n)
        out = open(n.directory / "stdout.log", "ab")  # noqa: SIM115 (owned by the process)
        n.proc = psutil.Popen([sys.executable, "-m", "zraft.node", "--config", str(n.config_path)],
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              cwd=str(n.directory), start_new_session=True)
        out.close()
        if wait:
            self.wait_listening(n)
        self.save()
        return n

    def wait_listening(self, n: NodeProcess, timeout: float = 20.0) -> None:
        def listening() -> bool:
            if not n.alive():
                raise ZRaftError(f"node {n.index} exited: see {n.directory / 'stdout.log'}")
            with socket.socket() as s:
                s.settimeout(0.2)
                return s.connect_ex(("127.0.0.1", n.port)) == 0
        wait_until(listening, timeout, f"node {n.index} to listen on {n.address}")

    def start(self) -> LocalCluster:
        for n in self.nodes:
            self.start_node(n, wait=False)
        for n in self.nodes:
            self.wait_listening(n)
        self.save()
        return self

    def signal(self, node: NodeProcess | int, sig: int) -> None:
        n = self.node(node)
        if n.proc is not None and n.alive():
            n.proc.send_signal(sig)

    def kill(self, node: NodeProcess | int) -> None:
        """SIGKILL and reap."""
        n = self.node(node)
        if n.proc is not None and n.alive():
            n.proc.kill()
            n.proc.wait(timeout=10)

    def stop_node(self, node: NodeProcess | int, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait; SIGKILL if it does not stop in time. Returns the exit code."""
        n = self.node(node)
        if n.proc is None:
            return None
        if n.alive():
            n.proc.send_signal(signal.SIGTERM)
            try:
                return n.proc.wait(timeout=timeout)
            except psutil.TimeoutExpired:
                n.proc.kill()
                return n.proc.wait(timeout=10)
        try:
            return n.proc.wait(timeout=1)
        except (psutil.TimeoutExpired, psutil.NoSuchProcess):
            return None

    def pause(self, node: NodeProcess | int) -> None:
        self.signal(node, signal.SIGSTOP)

    def resume(self, node: NodeProcess | int) -> None:
        self.signal(node, signal.SIGCONT)

    def restart(self, node: NodeProcess | int) -> NodeProcess:
        self.stop_node(node)
        return self.start_node(node)

    def stop(self) -> None:
        for n in self.nodes:
            self.resume(n)
        for n in reversed(self.nodes):
            self.stop_node(n)
        self.save()

    # ---------------------------------------------------------------- record

    def save(self) -> None:
        doc = {
            "peer_name": self.peer_name, "backend": self.backend,
            "cookie_file": str(self.cookie_file),
            "election_timeout": self.election_timeout, "max_log_count": self.max_log_count,
            "nodes": [{"index": n.index, "address": n.address, "peer": self.peer_id(n),
                       "pid": n.pid if n.alive() else None, "dir": str(n.directory)}
                      for n in self.nodes],
            "peers": self.peers,
        }
        tmp = self.directory / "cluster.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, self.directory / "cluster.json")

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
