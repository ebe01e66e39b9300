"""The acceptance harness: a LocalCluster of real node processes and what scenarios share.

Rules: every process is started by the ``make_cluster`` fixture (conftest) or by a test
that registers it with ``Acceptance.own``, and is killed by its pid at teardown whatever
the test did; every wait is a poll with a deadline (``wait_for``), never a bare sleep;
elections are fast (``election_timeout`` 250 ms) so the whole area stays within minutes.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pykka

from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.client.session import Session
from zraft.cluster import LocalCluster
from zraft.cluster.local import wait_until
from zraft.errors import ZRaftError

ELECTION_TIMEOUT_MS = 250
ET = ELECTION_TIMEOUT_MS / 1000


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``pred`` until truthy (exceptions count as "not yet"); TimeoutError otherwise."""
    return wait_until(pred, timeout, what, interval)


def _ready_lines(directory: Path) -> int:
    log = directory / "stdout.log"
    return log.read_text().count(" ready\n") if log.exists() else 0


class Acceptance:
    """One LocalCluster, a client pool with its cookie, and the helpers the scenarios use."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.cookie_file = str(cluster.cookie_file)
        self.pool = ConnectionPool(cluster.cookie.encode())
        self.sessions: list[Session] = []
        self.processes: list[psutil.Popen] = []

    @property
    def peers(self) -> list[str]:
        return self.cluster.peers

    def peer(self, node: int) -> str:
        return self.cluster.peer_id(node)

    def node_of(self, peer: str) -> int:
        return self.cluster.node(peer).index

    def alive_peers(self) -> list[str]:
        return [self.cluster.peer_id(n) for n in self.cluster.nodes if n.alive()]

    # -- cluster API shortcuts (this cluster's cookie) -------------------------------------

    def create(self, timeout: float = 20.0) -> list[str]:
        return api.create(self.peers, "dict", timeout=timeout, pool=self.pool)

    def stat(self, peer: str, timeout: float = 2.0) -> dict[str, Any]:
        return api.stat(peer, timeout=timeout, pool=self.pool)

    def light(self) -> api.LightSession:
        return api.light_session(self.peers, fail_timeout=2 * ET, election_timeout=ET)

    def session(self, peers: Any = None, session_timeout: float = 10.0, **kw: Any) -> Session:
        """A Session (own pool, this cluster's cookie), stopped at teardown."""
        kw.setdefault("election_timeout", ET)
        s = Session.start(self.peers if peers is None else peers, session_timeout,
                          cookie_file=self.cookie_file, **kw)
        self.sessions.append(s)
        return s

    # -- leaders --------------------------------------------------------------------------

    def leader(self, timeout: float = 10.0, exclude: str | None = None) -> str:
        """The peer that a majority of the running peers name as leader, and that says it
        leads (polled: right after a kill the survivors may still disagree)."""

        def agreed() -> str | None:
            alive = self.alive_peers()
            votes: dict[str, int] = {}
            for peer in alive:
                with contextlib.suppress(ZRaftError):
                    info = self.stat(peer, timeout=1.0)
                    if info.get("leader"):
                        votes[info["leader"]] = votes.get(info["leader"], 0) + 1
            for leader, count in votes.items():
                majority = count * 2 > len(self.peers)
                if (leader != exclude and majority and leader in alive
                        and self.stat(leader, timeout=1.0).get("role") == "leader"):
                    return leader
            return None

        return wait_for(agreed, timeout, "an agreed leader")

    def kill(self, peer: str) -> float:
        """SIGKILL the node hosting ``peer``; returns the monotonic time of the kill."""
        self.cluster.kill(self.node_of(peer))
        return time.monotonic()

    def start_node(self, node: int | str, timeout: float = 20.0) -> None:
        self.start_nodes([node], timeout)

    def start_nodes(self, nodes: list[int] | list[str], timeout: float = 20.0) -> None:
        """Start node processes together and wait until each printed "ready".

        "ready" means the node finished starting: its stored peers run, so the first
        requests of a test do not race the start-up (test_node_startup.py checks that such
        races are harmless anyway). Each start appends one "ready" line to
        DIR/nodeK/stdout.log.
        """
        started = []
        for node in nodes:
            n = self.cluster.node(node if isinstance(node, int) else self.node_of(node))
            started.append((n, _ready_lines(n.directory)))
            self.cluster.start_node(n, wait=False)
        for n, before in started:
            # ready, or exited: a node that cannot start (a port taken, say) fails the test
            # at once with its own words instead of after the whole timeout
            wait_for(lambda n=n, before=before: (_ready_lines(n.directory) > before
                                                 or not n.alive()),
                     timeout, f"node {n.index} to be ready")
            if _ready_lines(n.directory) <= before:
                tail = (n.directory / "stdout.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"node {n.index} exited before it was ready:\n{tail}")

    def restart(self, peer: str, timeout: float = 15.0) -> None:
        """Start a stopped node again and wait until its peer answers (loaded from disk)."""
        self.start_node(peer)
        wait_for(lambda: self.stat(peer, timeout=1.0), timeout, f"{peer} to answer")

    def own(self, proc: psutil.Popen) -> psutil.Popen:
        """Register a child process to be killed at teardown."""
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for s in self.sessions:
            with contextlib.suppress(Exception):
                s.stop(timeout=1.0)
        for proc in self.processes:
            with contextlib.suppress(psutil.Error):
                proc.kill()
                proc.wait(5)
        self.pool.close()
        for n in self.cluster.nodes:  # SIGKILL by pid, reaped
            self.cluster.kill(n)


# -- a session owner in another process (killed, frozen) -------------------------------------

SESSION_TIMEOUT = 1.5  # the owners' session timeout, seconds
ROOT = str(Path(__file__).resolve().parents[2])

OWNER = textwrap.dedent("""
    import sys
    from zraft.client.session import Session
    peers, cookie_file, timeout, et, key = sys.argv[1:6]
    s = Session.start(peers.split(","), float(timeout), cookie_file=cookie_file,
                      election_timeout=float(et))
    assert s.write_sync([key, "owned"], temporary=True) == "ok"
    print("ready", s.sid, flush=True)
    for line in sys.stdin:                 # "state" or "write": answer one line each
        if line.strip() == "state":
            print(s.state.value, flush=True)
        else:
            try:
                print(s.write_sync([key, "again"], temporary=True, timeout=2), flush=True)
            except Exception as exc:
                print(type(exc).__name__, flush=True)
""")


def start_owner(acc: Acceptance, key: str) -> psutil.Popen:
    """A child process whose session owns ``key`` (temporary); returns once it is written.
    It answers "state" and "write" lines on stdin (see ``ask``) until killed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    proc = acc.own(psutil.Popen(
        [sys.executable, "-c", OWNER, ",".join(acc.peers), acc.cookie_file,
         str(SESSION_TIMEOUT), str(ET), key],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env))
    line = _line(proc, 20.0)
    assert line.startswith("ready"), line
    return proc


def _line(proc: psutil.Popen, timeout: float) -> str:
    """One line of the child's stdout, waiting at most ``timeout`` (select, not a bare read)."""
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    assert readable, "the owner process did not answer in time"
    return proc.stdout.readline().decode().strip()


def ask(proc: psutil.Popen, command: str, timeout: float = 10.0) -> str:
    assert proc.stdin is not None
    proc.stdin.write(f"{command}\n".encode())
    proc.stdin.flush()
    return _line(proc, timeout)


def read_key(acc: Acceptance, key: str) -> object:
    """A linearizable read through a fresh light session."""
    return api.query(acc.light(), key, timeout=5, pool=acc.pool)[0]


# -- writers and futures ---------------------------------------------------------------------


def answered(future: pykka.Future[Any]) -> bool:
    try:
        future.get(timeout=0)
    except pykka.Timeout:
        return False
    return True


class Writer(threading.Thread):
    """Writes ``[name-i, i]`` in a loop until told to stop, counting successes and failures."""

    def __init__(self, name: str, write: Callable[[Any], Any]) -> None:
        super().__init__(name=name, daemon=True)
        self.write = write
        self.ok = 0
        self.failures: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.halt.is_set():
            i += 1
            try:
                assert self.write([f"{self.name}-{i}", i]) == "ok"
                self.ok += 1
            except Exception as exc:  # any failure counts: there must be none
                self.failures.append(f"{type(exc).__name__}: {exc}")
