"""PySyncObj 0.3.17 as a bench side: 3 ``bench.pysyncobj_node`` processes on 127.0.0.1.

Rules:
- PySyncObj is optional (``pip install pysyncobj==0.3.17``, the ``bench`` extra):
  ``available()`` says whether it can be imported and why not; the comparison skips this
  side when it cannot.
- Modes: ``mem`` (PySyncObj's default, RAM only), ``journal`` (its mmap journal, never
  synced), ``msync`` (journal + group-commit msync: durable before ack). ``batch`` is
  PySyncObj's ``appendEntriesUseBatch``.
- Every node is started with psutil and stopped by pid (SIGTERM, then SIGKILL); a node also
  exits by itself when this process dies (it watches its parent).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench.sides import Side
from zraft.cluster.ports import free_port
from zraft.filemodes import write_private

REPO_ROOT = Path(__file__).resolve().parents[1]
PYSYNCOBJ_VERSION = "0.3.17"
DURABILITY = {
    "mem": "none: RAM only (PySyncObj default)",
    "journal": "mmap journal, never synced (survives kill -9, not power loss)",
    "msync": "group-commit msync before ack (bench patch)",
}


def available() -> tuple[bool, str]:
    try:
        from pysyncobj.version import VERSION
    except ImportError as exc:
        return False, (f"pysyncobj is not installed ({exc}); "
                       f"pip install pysyncobj=={PYSYNCOBJ_VERSION}")
    if VERSION != PYSYNCOBJ_VERSION:
        return True, f"pysyncobj {VERSION} (the bench was written for {PYSYNCOBJ_VERSION})"
    return True, f"pysyncobj {VERSION}"


class PySyncObjSide(Side):
    system = "pysyncobj"
    peer_name = "pso"

    def __init__(self, base_dir: Path, mode: str = "msync", batch: int = 1) -> None:
        super().__init__()
        self.mode, self.batch = mode, batch
        self.label = f"pysyncobj {mode} batch={batch}"
        self.durability = DURABILITY[mode]
        self.dir = base_dir
        self.procs: list[psutil.Popen | None] = [None, None, None]
        self.raft_addrs: list[str] = []
        self.client_ports: list[int] = []

    def start(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        ports = [free_port() for _ in range(6)]
        self.raft_addrs = [f"127.0.0.1:{p}" for p in ports[:3]]
        self.client_ports = ports[3:]
        self.peers = [f"{self.peer_name}@127.0.0.1:{p}" for p in self.client_ports]
        cookie_file = self.dir / "cookie"
        write_private(cookie_file, secrets.token_hex(16) + "\n")
        self.cookie = cookie_file.read_text().strip().encode()
        self.cookie_file = cookie_file
        for i in range(3):
            self.start_node(i, wait=False)
        for i in range(3):
            self._wait_listening(i)
        self.pool = self.new_pool()
        self.leader(60.0)

    def _command(self, i: int) -> list[str]:
        return [sys.executable, "-m", "bench.pysyncobj_node", "--index", str(i),
                "--raft-addrs", ",".join(self.raft_addrs), "--peer-ids", ",".join(self.peers),
                "--client-port", str(self.client_ports[i]), "--cookie-file",
                str(self.cookie_file), "--mode", self.mode, "--batch", str(self.batch),
                "--dir", str(self.dir / f"node{i}")]

    def start_node(self, i: int, wait: bool = True) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
        log = open(self.dir / f"node{i}.log", "ab")  # noqa: SIM115 (owned by the child)
        self.procs[i] = psutil.Popen(self._command(i), cwd=str(REPO_ROOT), env=env,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        if wait:
            self._wait_listening(i)

    def _wait_listening(self, i: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive(i):
                raise RuntimeError(f"{self.label}: node {i} exited; see {self.dir}/node{i}.log")
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", self.client_ports[i])) == 0:
                    return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.label}: node {i} does not listen")
            time.sleep(0.05)

    def pid(self, i: int) -> int | None:
        proc = self.procs[i]
        if proc is None or proc.poll() is not None:
            return None
        return proc.pid

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def stop_node(self, i: int) -> None:
        proc = self.procs[i]
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.close()
        for i in range(3):
            with contextlib.suppress(psutil.Error):
                self.stop_node(i)
