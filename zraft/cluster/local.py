"""LocalCluster: N `python -m zraft.node` processes on 127.0.0.1, for experiments and tests.

Rules: every process is started with psutil and stopped by its pid (never by name); every
wait polls with a deadline; ports are free loopback ports chosen at creation; each node has
its own directory ``DIR/nodeK/`` with its config, data and logs. ``cluster.json`` in DIR
records peers, ports, pids (with each process's start time, so a recycled pid is never
mistaken for a node) and the cookie file so later commands, in other processes, find the
cluster again with ``LocalCluster.load(DIR)``. The backends the nodes may run (``backends``,
always with the group's ``backend``) and the directories they import them from
(``python_path``, absolute) are written into every node's config and kept in
``cluster.json``, so restarted and added nodes get them too. Every fault done through this
class (kill, stop, pause, resume, restart, add, remove, down) is appended to
``DIR/faults.jsonl`` for the event timeline and the bench plot; nodes log their own
partitions and heals.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
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

from zraft.cluster.ports import free_port
from zraft.errors import ZRaftError
from zraft.filemodes import write_private

CLUSTER_FILE = "cluster.json"
FAULTS_FILE = "faults.jsonl"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


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
    proc: psutil.Process | None = None
    extra_raft: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # extra environment of this node only
    metrics_port: int = 0  # its /metrics endpoint on 127.0.0.1 (0: off)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "node.toml"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def create_time(self) -> float | None:
        try:
            return self.proc.create_time() if self.proc is not None else None
        except psutil.Error:
            return None

    def alive(self) -> bool:
        if self.proc is None:
            return False
        try:
            return self.proc.is_running() and self.proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def paused(self) -> bool:
        """True while the process is stopped by SIGSTOP."""
        if self.proc is None:
            return False
        try:
            return self.proc.status() == psutil.STATUS_STOPPED
        except psutil.Error:
            return False

    def rss(self) -> int | None:
        try:
            return int(self.proc.memory_info().rss) if self.proc is not None else None
        except psutil.Error:
            return None


def attach(pid: int | None, create_time: float | None) -> psutil.Process | None:
    """The node process recorded as (pid, start time), or None if it is gone (or the pid
    now names another process)."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 0.05:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            proc.wait(timeout=0)  # our own child: reap it
            return None
        return proc
    except (psutil.Error, ChildProcessError):
        return None


class LocalCluster:
    """Start, stop, kill, pause and restart node processes of one local cluster."""

    def __init__(self, directory: str | os.PathLike[str], nodes: int = 3, *,
                 election_timeout: int = 500, max_log_count: int = 1000,
                 backend: str = "dict", base_port: int | None = None,
                 peer_name: str = "zraft", extra_raft: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None, backends: list[str] | None = None,
                 python_path: list[str | os.PathLike[str]] | None = None,
                 metrics: bool = False,
                 extra_logging: dict[str, Any] | None = None,
                 tls: bool = False) -> None:
        """``backend``: the group's backend (``create`` uses it); ``backends``: what every
        node may run (default ``["dict"]``; ``backend`` is always added); ``python_path``:
        directories the nodes import backend modules from (made absolute here). ``env``:
        extra environment for every node process (e.g. ZRAFT_TEST_MUTATIONS);
        ``nodes[i].env`` adds to it for one node. ``metrics``: each node serves
        ``/metrics`` on a free port of 127.0.0.1 (``nodes[i].metrics_port``);
        ``extra_logging``: more ``[logging]`` keys (e.g. ``{"format": "json"}``);
        ``tls``: mutual TLS everywhere, with a throwaway CA and certificates made once in
        ``DIR/tls`` (``certs.py``); ``client_tls()`` is the context clients connect with."""
        self.metrics = metrics
        self.tls = tls
        self.tls_dir = Path(directory).resolve() / "tls"
        if tls and not (self.tls_dir / "node.pem").exists():
            from zraft.cluster.certs import make_cluster_certs  # cryptography, only if used

            make_cluster_certs(self.tls_dir, ["127.0.0.1"])
        self.extra_logging = dict(extra_logging or {})
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.election_timeout = election_timeout
        self.max_log_count = max_log_count
        self.backend = backend
        self.backends = list(dict.fromkeys([*(backends or ["dict"]), backend]))
        self.python_path = [str(Path(p).resolve()) for p in python_path or []]
        self.peer_name = peer_name
        self.base_port = base_port
        self.extra_raft = dict(extra_raft or {})
        self.env = dict(env or {})
        self.cookie_file = self.directory / "cookie"
        if not self.cookie_file.exists():
            write_private(self.cookie_file, secrets.token_hex(16) + "\n")
        self.nodes: list[NodeProcess] = []
        for _ in range(nodes):
            self._new_node()

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> LocalCluster:
        """The cluster recorded in ``DIR/cluster.json``, attached to its running processes."""
        path = Path(directory) / CLUSTER_FILE
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise ZRaftError(f"no cluster in {directory}: {path} does not exist") from None
        cluster = cls(directory, 0, election_timeout=doc.get("election_timeout", 500),
                      max_log_count=doc.get("max_log_count", 1000),
                      backend=doc.get("backend", "dict"), peer_name=doc.get("peer_name", "zraft"),
                      extra_raft=doc.get("extra_raft"), env=doc.get("env"),
                      backends=doc.get("backends"), python_path=doc.get("python_path"),
                      metrics=bool(doc.get("metrics")), extra_logging=doc.get("extra_logging"),
                      tls=bool(doc.get("tls")))
        cluster.cookie_file = Path(doc.get("cookie_file") or cluster.cookie_file)
        for item in doc.get("nodes", []):
            port = int(str(item["address"]).rpartition(":")[2])
            n = NodeProcess(int(item["index"]), port, Path(item["dir"]),
                            extra_raft=dict(cluster.extra_raft), env=dict(item.get("env") or {}),
                            metrics_port=int(item.get("metrics_port") or 0))
            n.proc = attach(item.get("pid"), item.get("create_time"))
            cluster.nodes.append(n)
        return cluster

    def _new_node(self) -> NodeProcess:
        # never reuse the directory of a removed node (its data stays there)
        used = [n.index for n in self.nodes]
        used += [int(d.name[4:]) for d in self.directory.glob("node*") if d.name[4:].isdigit()]
        index = max(used, default=0) + 1
        port = self.base_port + index - 1 if self.base_port else free_port()
        n = NodeProcess(index, port, self.directory / f"node{index}",
                        extra_raft=dict(self.extra_raft),
                        metrics_port=free_port() if self.metrics else 0)
        self.nodes.append(n)
        return n

    # ---------------------------------------------------------------- identities

    @property
    def cookie(self) -> str:
        return self.cookie_file.read_text().strip()

    def tls_files(self) -> dict[str, str] | None:
        """The client's TLS files (``ca``, ``cert``, ``key``), None without TLS."""
        if not self.tls:
            return None
        d = self.tls_dir
        return {"ca": str(d / "ca.pem"), "cert": str(d / "client.pem"),
                "key": str(d / "client.key")}

    def client_tls(self) -> Any:
        """An ``ssl.SSLContext`` for clients of this cluster (None without TLS)."""
        files = self.tls_files()
        if files is None:
            return None
        from zraft.transport.tls import TlsFiles, client_context

        return client_context(TlsFiles(files["cert"], files["key"], files["ca"]))

    def peer_id(self, node: NodeProcess | int | str) -> str:
        n = self.node(node)
        return f"{self.peer_name}@{n.address}"

    @property
    def peers(self) -> list[str]:
        return [self.peer_id(n) for n in self.nodes]

    def node(self, node: NodeProcess | int | str) -> NodeProcess:
        """A node by object, 1-based index, index text, address or peer id."""
        if isinstance(node, NodeProcess):
            return node
        for n in self.nodes:
            if isinstance(node, int):
                if n.index == node:
                    return n
            elif node in (str(n.index), n.address, self.peer_id(n), f"node{n.index}"):
                return n
        raise KeyError(f"no node {node!r} in this cluster")

    # ---------------------------------------------------------------- processes

    def write_config(self, n: NodeProcess) -> None:
        n.directory.mkdir(parents=True, exist_ok=True)
        raft = {"election_timeout": self.election_timeout, "max_log_count": self.max_log_count,
                **n.extra_raft}
        lines = ["[node]", f'listen = "{n.address}"', f'cookie_file = "{self.cookie_file}"',
                 f'log_dir = "{n.directory / "data"}"',
                 f'snapshot_dir = "{n.directory / "data"}"',
                 f"backends = {json.dumps(self.backends)}",  # JSON strings are TOML strings
                 f"python_path = {json.dumps(self.python_path)}",
                 # a throwaway local cluster: `zraft cluster partition/heal` and the fault
                 # runs partition it (a node started by hand refuses, by default)
                 "fault_injection = true", "", "[raft]"]
        for key, value in raft.items():
            lines.append(f"{key} = {json.dumps(value)}")
        if n.metrics_port:
            lines.insert(1, f'metrics_addr = "127.0.0.1:{n.metrics_port}"')
        if self.tls:
            d = self.tls_dir
            lines[1:1] = [f'tls_cert = "{d / "node.pem"}"', f'tls_key = "{d / "node.key"}"',
                          f'tls_ca = "{d / "ca.pem"}"', "tls_verify_client = true"]
        lines += ["", "[logging]", f'dir = "{n.directory / "log"}"', 'level = "info"']
        lines += [f"{key} = {json.dumps(value)}" for key, value in self.extra_logging.items()]
        n.config_path.write_text("\n".join(lines) + "\n")

    def start_node(self, node: NodeProcess | int, wait: bool = True) -> NodeProcess:
        n = self.node(node)
        if n.alive():
            return n
        self.write_config(n)
        env = {**os.environ, **self.env, **n.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH"))
                                            if p)
        out = open(n.directory / "stdout.log", "ab")  # noqa: SIM115 (owned by the process)
        n.proc = psutil.Popen(self.node_command(n),
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              cwd=str(n.directory), start_new_session=True, env=env)
        out.close()
        if wait:
            self.wait_listening(n)
        self.save()
        return n

    def node_command(self, n: NodeProcess) -> list[str]:
        """The command line of a node process (subclasses wrap it, e.g. in a namespace)."""
        return [sys.executable, "-m", "zraft.node", "--config", str(n.config_path)]

    def wait_listening(self, n: NodeProcess, timeout: float = 20.0) -> None:
        """Until the node accepts connections; a node that exits fails at once."""
        deadline = time.monotonic() + timeout
        while True:
            if not n.alive():
                code = _reap(n.proc, 1) if n.proc is not None else None
                raise ZRaftError(f"node {n.index} exited (code {code}): see "
                                 f"{n.directory / 'stdout.log'}")
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", n.port)) == 0:
                    return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {timeout:.1f}s waiting for node {n.index} "
                                   f"to listen on {n.address}")
            time.sleep(0.05)

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
            self.record_fault("kill", n)
            n.proc.kill()
            _reap(n.proc, 10)
        self.save()

    def stop_node(self, node: NodeProcess | int, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait; SIGKILL if it does not stop in time. Returns the exit code (None
        when the process is not our child or was not running)."""
        n = self.node(node)
        if n.proc is not None and n.alive():
            self.record_fault("stop", n)
        code = self._stop_process(n, timeout)
        self.save()
        return code

    def _stop_process(self, n: NodeProcess, timeout: float) -> int | None:
        if n.proc is None:
            return None
        if n.alive():
            if n.paused():
                n.proc.send_signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            n.proc.send_signal(signal.SIGTERM)
            try:
                return _reap(n.proc, timeout)
            except psutil.TimeoutExpired:
                n.proc.kill()
                return _reap(n.proc, 10)
        try:
            return _reap(n.proc, 1)
        except psutil.TimeoutExpired:
            return None

    def pause(self, node: NodeProcess | int) -> None:
        """SIGSTOP; returns once the process is stopped."""
        n = self.node(node)
        if n.alive() and not n.paused():
            self.record_fault("pause", n)
            self.signal(n, signal.SIGSTOP)
            wait_until(lambda: n.paused() or not n.alive(), 5.0, f"node {n.index} to stop")

    def resume(self, node: NodeProcess | int) -> None:
        """SIGCONT; returns once the process runs again."""
        n = self.node(node)
        if n.alive() and n.paused():
            self.record_fault("resume", n)
            self.signal(n, signal.SIGCONT)
            wait_until(lambda: not n.paused(), 5.0, f"node {n.index} to run")

    def restart(self, node: NodeProcess | int) -> NodeProcess:
        n = self.node(node)
        self.record_fault("restart", n)
        self._stop_process(n, 20.0)
        return self.start_node(n)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every node at once, wait for all; SIGKILL those still running after
        ``timeout`` (in parallel: a node's shutdown does not wait for the others')."""
        running = [n for n in self.nodes if n.proc is not None and n.alive()]
        if running:
            self.record_fault("down")
        for n in running:
            assert n.proc is not None
            if n.paused():
                n.proc.send_signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            n.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for n in running:
            assert n.proc is not None
            try:
                _reap(n.proc, max(0.1, deadline - time.monotonic()))
            except psutil.TimeoutExpired:
                n.proc.kill()
                _reap(n.proc, 10)
        self.save()

    # ---------------------------------------------------------------- membership (processes)

    def add_node(self, start: bool = True) -> NodeProcess:
        """A new node process (next index, a free port); its peer is created by the caller."""
        n = self._new_node()
        if start:
            self.start_node(n)
        self.record_fault("add", n)
        self.save()
        return n

    def forget_node(self, node: NodeProcess | int) -> NodeProcess:
        """Stop a node's process and drop it from the cluster record (its data stays)."""
        n = self.node(node)
        self.record_fault("remove", n)
        self._stop_process(n, 20.0)
        self.nodes.remove(n)
        self.save()
        return n

    def purge(self) -> None:
        """Delete the cluster directory (every process must be stopped first)."""
        if any(n.alive() for n in self.nodes):
            raise ZRaftError("purge: stop the cluster first")
        shutil.rmtree(self.directory, ignore_errors=True)

    # ---------------------------------------------------------------- record

    def record_fault(self, kind: str, node: NodeProcess | None = None, **fields: Any) -> None:
        """Append one fault to DIR/faults.jsonl (best effort: the timeline is a diagnosis aid)."""
        event: dict[str, Any] = {"t": round(time.time(), 3), "kind": kind, "source": "cluster"}
        if node is not None:
            event.update(node=node.address, index=node.index, peer=self.peer_id(node))
        event.update(fields)
        try:
            with open(self.directory / FAULTS_FILE, "a") as f:
                f.write(json.dumps(event, sort_keys=True) + "\n")
        except OSError:
            pass

    def save(self) -> None:
        if not self.directory.exists():
            return
        doc = {
            "peer_name": self.peer_name, "backend": self.backend,
            "backends": self.backends, "python_path": self.python_path,
            "cookie_file": str(self.cookie_file),
            "election_timeout": self.election_timeout, "max_log_count": self.max_log_count,
            "extra_raft": self.extra_raft, "env": self.env, "metrics": self.metrics,
            "extra_logging": self.extra_logging,
            "tls": self.tls_files(),
            "nodes": [{"index": n.index, "address": n.address, "peer": self.peer_id(n),
                       "pid": n.pid if n.alive() else None,
                       "create_time": n.create_time if n.alive() else None,
                       "dir": str(n.directory), "env": n.env,
                       "metrics_port": n.metrics_port}
                      for n in self.nodes],
            "peers": self.peers,
        }
        tmp = self.directory / f"{CLUSTER_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, self.directory / CLUSTER_FILE)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reap(proc: psutil.Process, timeout: float) -> int | None:
    """Wait for a process to end; reaps our own children (exit code), polls others (None)."""
    try:
        return proc.wait(timeout=timeout)
    except psutil.NoSuchProcess:
        return None
