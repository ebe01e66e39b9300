"""Issue 11, section 1, on real node processes: one hostile frame, a flood of silent
connections under a low fd limit, or half-sent large frames stop nothing; a node whose
transport cannot keep serving exits loudly."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import psutil
import pytest

from tests.integration.conftest import Harness
from zraft.client import api
from zraft.cluster import LocalCluster
from zraft.cluster.local import NodeProcess, wait_until
from zraft.cluster.ports import free_port
from zraft.testing.authed_socket import AuthedSocket, authed
from zraft.transport import codec
from zraft.transport.framing import HEADER, frame
from zraft.transport.handshake import NONCE_SIZE, _recv, client_handshake

pytestmark = pytest.mark.integration

DEEP = b"\x91" * 1000 + b"\xc0"  # 1,000 nested one-element arrays


class TunedCluster(LocalCluster):
    """A LocalCluster whose nodes may get extra [node] keys and a hard fd limit."""

    node_keys: dict[str, Any]
    nofile: int | None

    def write_config(self, n: NodeProcess) -> None:
        super().write_config(n)
        extra = "".join(f"{k} = {v}\n" for k, v in self.node_keys.items())
        text = n.config_path.read_text().replace("[node]\n", "[node]\n" + extra, 1)
        n.config_path.write_text(text)

    def node_command(self, n: NodeProcess) -> list[str]:
        command = super().node_command(n)
        if self.nofile is None:
            return command
        return ["prlimit", f"--nofile={self.nofile}:{self.nofile}", "--", *command]


@pytest.fixture
def tuned(tmp_path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(nodes: int = 3, *, nofile: int | None = None, create: bool = True,
             node_keys: dict[str, Any] | None = None, **kwargs: Any) -> Harness:
        kwargs.setdefault("election_timeout", 300)
        cluster = TunedCluster(tmp_path / f"cluster{len(made)}", nodes, **kwargs)
        cluster.node_keys, cluster.nofile = dict(node_keys or {}), nofile
        harness = Harness(cluster)
        made.append(harness)
        cluster.start()
        if create:
            harness.create()
        return harness

    yield make
    for harness in made:
        harness.close()
        harness.cluster.stop()


def _authenticated(h: Harness, node: int, name: str) -> AuthedSocket:
    """A raw client that holds the cookie (its frames are sealed: they reach the decoder)."""
    sock = socket.create_connection(("127.0.0.1", h.cluster.node(node).port), timeout=5)
    return authed(sock, client_handshake(sock, h.cluster.cookie.encode(), name, 5.0))


def _closed_by_node(sock: socket.socket) -> bool:
    sock.settimeout(5)
    with contextlib.suppress(ConnectionResetError):
        while sock.recv(65536):
            pass
    return True


def _nested_auth() -> bytes:
    """An auth message whose version field is 1,000 nested arrays."""
    parts = [msgpack.packb(v, use_bin_type=True)
             for v in ("zraft-auth", 1, "c", os.urandom(NONCE_SIZE), b"m" * 32, "client")]
    parts[1] = DEEP
    body = b"\x96" + b"".join(parts)
    return HEADER.pack(len(body)) + body


def _writes_through_every_peer(h: Harness, tag: str, timeout: float = 5.0) -> None:
    for n in h.cluster.nodes:
        result, _leader = api.write(h.cluster.peer_id(n), [f"{tag}{n.index}", n.index],
                                    timeout=timeout, pool=h.pool)
        assert result == "ok"


def test_nested_frames_stop_nothing_and_leak_no_socket(tuned) -> None:
    """Was: the first nested frame killed that node's client reactor; every write through
    it timed out and accepted sockets leaked."""
    h = tuned(3)
    _writes_through_every_peer(h, "before")
    nested_args = codec.pack([2, 1, "propose", msgpack.unpackb(DEEP)])
    for n in h.cluster.nodes:
        for body in (DEEP, nested_args):
            with _authenticated(h, n.index, "nested") as sock:
                sock.sendall(frame(body))
                assert _closed_by_node(sock)
        with socket.create_connection(("127.0.0.1", n.port), timeout=5) as sock:
            _recv(sock, time.monotonic() + 5)  # the hello
            sock.sendall(_nested_auth())
            assert _closed_by_node(sock)
    started = time.monotonic()
    _writes_through_every_peer(h, "after")
    assert time.monotonic() - started < 5.0
    for n in h.cluster.nodes:
        def settled(index: int = n.index) -> dict[str, Any] | None:
            t = h.node_status(index)["transport"]
            nested = [c for c in t["inbound"] if c["peer"] == "nested"]
            return t if not nested and t["handshaking"] == 0 else None
        t = wait_until(settled, 10, f"node {n.index} to drop the hostile sockets")
        assert t["malformed"] >= 2 and t["auth_failures"] >= 1
        assert t["thread_restarts"] == 0 and t["fatal"] is None


def _silent_flood(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    return socks


@pytest.mark.skipif(not os.path.exists("/usr/bin/prlimit"), reason="needs prlimit(1)")
def test_silent_connections_over_the_fd_limit_starve_nothing(tuned) -> None:
    """Was: with the fd limit below the silent connections, the log writer could not open
    a segment, the peers crashed and the node exited; new clients waited seconds."""
    h = tuned(3, nofile=256, extra_raft={"max_segment_size": 65536})
    leader = h.leader_index()
    port = h.cluster.node(leader).port
    flood = _silent_flood(port, 400)
    more: list[socket.socket] = []
    try:
        value = "v" * 1024  # 200 x 1 KiB: segments of 64 KiB roll while flooded
        flooding = threading.Thread(target=lambda: more.extend(_silent_flood(port, 400)))
        flooding.start()
        for i in range(200):
            assert h.write([f"k{i}", value], timeout=10) == "ok"
        flooding.join(30)
        _writes_through_every_peer(h, "flooded")
        started = time.monotonic()
        with _authenticated(h, leader, "newcomer"):
            assert time.monotonic() - started < 2.0
        assert all(n.alive() for n in h.cluster.nodes)
        t = h.node_status(leader)["transport"]
        assert t["handshakes_evicted"] > 0 and t["max_handshaking"] < 256 // 4
        assert h.query("k199") == value
    finally:
        for sock in flood + more:
            sock.close()


class RssPeak:
    """Samples a process's RSS every few ms on a thread; ``peak`` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(0.005)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def test_half_sent_large_frames_cannot_grow_memory_past_the_cap(tuned) -> None:
    """Was: 8 half-sent 50 MB frames grew a node's RSS to 480 MB (64 MiB per connection,
    no node-wide cap)."""
    cap = 32 << 20
    h = tuned(1, node_keys={"max_buffered_bytes": cap})
    for i in range(50):
        h.write([f"warm{i}", i])
    node = h.cluster.node(1)
    baseline = node.rss()
    assert baseline is not None
    peak = RssPeak(node.pid)
    hogs: list[socket.socket] = []
    try:
        for i in range(8):  # 8 x 24 MiB of 48 MiB frames = 192 MiB attempted
            sock = _authenticated(h, 1, f"hog{i}")
            hogs.append(sock)
            with contextlib.suppress(OSError):  # the node closing on us is the point
                sock.sendall(HEADER.pack(48 << 20) + b"\x00" * (24 << 20))
        t = wait_until(lambda: (s := h.node_status(1)["transport"])["closed_over_buffer_budget"]
                       >= 6 and s, 20, "the node to refuse the hogs")
        assert h.write(["during", 1], timeout=5) == "ok"  # other clients keep working
        assert t["buffered_bytes_peak"] <= cap
    finally:
        grown = peak.stop() - baseline
        for sock in hogs:
            sock.close()
    # the cap, 1 MiB per connection, and room for the allocator and one copy in flight
    assert grown < cap + (8 << 20) + (40 << 20), f"RSS grew by {grown >> 20} MiB"
    wait_until(lambda: h.node_status(1)["transport"]["buffered_bytes"] == 0, 10,
               "the budget to be given back")


def test_a_node_whose_reactor_keeps_dying_exits_1_with_one_line(tmp_path) -> None:
    port = free_port()
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'[node]\ncookie = "c"\nlisten = "127.0.0.1:{port}"\n'
                   f'log_dir = "{tmp_path / "d"}"\nsnapshot_dir = "{tmp_path / "d"}"\n'
                   f'[logging]\ndir = "{tmp_path / "log"}"\n')
    inject = ("import sys\n"
              "from zraft.transport import reactor\n"
              "def boom(self):\n"
              "    raise RuntimeError('injected reactor failure')\n"
              "reactor.Reactor._round = boom\n"
              "from zraft.node.main import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", inject, "--config", str(cfg)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "reactor died" in lines[0], proc.stderr
