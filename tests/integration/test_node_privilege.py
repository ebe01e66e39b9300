"""Issue 13 sections 2 and 3 against real node processes: secret files others can read,
fault injection off unless configured, one node per data directory, the node's identity
recorded there, and relative config paths resolved against the config file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgpack
import psutil
import pytest

from zraft.cluster.local import free_port, wait_until
from zraft.filemodes import write_private
from zraft.testing.authed_socket import AuthedSocket, authed
from zraft.transport import codec
from zraft.transport.framing import frame
from zraft.transport.handshake import client_handshake

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

COOKIE = "priv-cookie"


def node_config(path: Path, port: int, data: str, *, cookie_file: str = "cookie",
                extra: str = "") -> Path:
    """A node config at ``path``; ``data`` and ``cookie_file`` as written (may be relative)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[node]\nlisten = "127.0.0.1:{port}"\ncookie_file = "{cookie_file}"\n'
                    f'log_dir = "{data}"\nsnapshot_dir = "{data}"\n{extra}'
                    f'[raft]\nelection_timeout = 200\n[logging]\ndir = "log"\n')
    return path


def run_node(config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A node that is expected to refuse to start (bounded)."""
    return subprocess.run([sys.executable, "-m", "zraft.node", "--config", str(config)],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


class Running:
    """A node process started in the background, ready, stopped by its pid."""

    def __init__(self, config: Path, cwd: Path) -> None:
        self.out = config.with_suffix(".out")
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "zraft.node", "--config", str(config)], cwd=cwd,
                stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: "ready" in self.out.read_text() or self.proc.poll() is not None,
                   30, "the node to start")
        assert self.proc.poll() is None, self.out.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(self.proc.pid).send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            psutil.Process(self.proc.pid).kill()
            return self.proc.wait(10)


@pytest.fixture
def started() -> Iterator[list[Running]]:
    nodes: list[Running] = []
    yield nodes
    for n in nodes:
        n.stop()


def start(nodes: list[Running], config: Path, cwd: Path) -> Running:
    n = Running(config, cwd)
    nodes.append(n)
    return n


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def admin(port: int, op: str, args: list[object]) -> tuple[str, object]:
    """One admin request on a client connection: (status, value)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        peer = authed(sock, client_handshake(sock, COOKIE.encode(), "operator", 10.0))
        peer.sendall(frame(codec.encode(codec.AdminRequest(1, op, args))))
        reply = _read_frame(peer)
    status, value = reply[2], reply[3] if len(reply) > 3 else None
    return status, value


def _read_frame(sock: AuthedSocket) -> list[object]:
    head = _exactly(sock, 4)
    (body,) = sock.feed(head + _exactly(sock, int.from_bytes(head, "big")))
    return msgpack.unpackb(body, raw=False)


def _exactly(sock: AuthedSocket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


# ---------------------------------------------------------------- secret files


def test_a_cookie_file_others_can_read_stops_the_node_with_the_chmod_to_run(
        tmp_path, started) -> None:
    """Relative paths in the file resolve against its directory: the node runs from
    another cwd, and the message names the file where it really is."""
    etc, elsewhere = tmp_path / "etc", tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = node_config(etc / "node.toml", free_port(), "data")
    cookie = etc / "cookie"
    cookie.write_text(COOKIE + "\n")
    cookie.chmod(0o644)
    line = one_line(run_node(config, elsewhere))
    assert line == (f"zraft node: node.cookie_file {cookie} is readable by group or others "
                    f"(mode 0644): run chmod 600 {cookie}")
    cookie.chmod(0o640)
    assert "(mode 0640): run chmod 600" in one_line(run_node(config, elsewhere))
    assert not (etc / "data" / "node.json").exists()  # refused before claiming the data
    cookie.chmod(0o600)
    start(started, config, elsewhere)
    assert (etc / "data" / "node.json").is_file() and (etc / "log" / "console.log").is_file()
    assert not (elsewhere / "data").exists() and not (elsewhere / "log").exists()


# ---------------------------------------------------------------- fault injection


def test_fault_injection_is_off_unless_the_config_turns_it_on(tmp_path, started) -> None:
    write_private(tmp_path / "cookie", COOKIE + "\n")
    port = free_port()
    config = node_config(tmp_path / "a.toml", port, "a")
    n = start(started, config, tmp_path)
    status, value = admin(port, "partition", [["127.0.0.1:1"]])
    assert status == "not_allowed" and "fault injection is disabled" in str(value)
    assert admin(port, "heal", [])[0] == "not_allowed"
    assert admin(port, "ping", [])[0] == "ok"  # the connection was otherwise served
    n.stop()
    node_config(config, port, "a", extra="fault_injection = true\n")
    start(started, config, tmp_path)
    assert admin(port, "partition", [["127.0.0.1:1"]])[0] == "ok"
    assert admin(port, "heal", [])[0] == "ok"


def test_a_client_connection_cannot_send_raft_messages(tmp_path, started) -> None:
    write_private(tmp_path / "cookie", COOKIE + "\n")
    port = free_port()
    start(started, node_config(tmp_path / "a.toml", port, "a"), tmp_path)
    msg = codec.AppendEntries(99, "zraft@127.0.0.1:1", f"zraft@127.0.0.1:{port}", 0, 0, [],
                              0, 0)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        intruder = authed(sock, client_handshake(sock, COOKIE.encode(), "intruder", 10.0))
        intruder.sendall(frame(codec.encode(msg)))  # sealed: refused for what it is
        sock.settimeout(10)
        assert sock.recv(1) == b""  # closed by the node
    assert admin(port, "ping", [])[0] == "ok"


# ---------------------------------------------------------------- one node per directory


def test_a_second_node_on_the_same_data_directory_exits_2(tmp_path, started) -> None:
    write_private(tmp_path / "cookie", COOKIE + "\n")
    port = free_port()
    first = start(started, node_config(tmp_path / "a.toml", port, "shared"), tmp_path)
    data = tmp_path / "shared"
    line = one_line(run_node(node_config(tmp_path / "b.toml", port, "shared"), tmp_path))
    assert line == (f"zraft node: node.log_dir {data} is in use by another node (pid "
                    f"{first.proc.pid} at 127.0.0.1:{port}: {data / 'zraft.lock'} is "
                    "locked): stop that node, or give this one its own data directory")
    # a separate snapshot directory is locked as well
    other = tmp_path / "b2.toml"
    node_config(other, free_port(), "own")
    other.write_text(other.read_text().replace('snapshot_dir = "own"',
                                               'snapshot_dir = "shared"'))
    line = one_line(run_node(other, tmp_path))
    assert line.startswith(f"zraft node: node.snapshot_dir {data} is in use by another node")
    assert first.proc.poll() is None
    assert first.stop() == 0
    start(started, node_config(tmp_path / "b.toml", port, "shared"), tmp_path)  # free now


def test_a_node_whose_address_is_not_its_datas_exits_2(tmp_path, started) -> None:
    write_private(tmp_path / "cookie", COOKIE + "\n")
    port, moved = free_port(), free_port()
    assert start(started, node_config(tmp_path / "a.toml", port, "d"), tmp_path).stop() == 0
    data = tmp_path / "d"
    line = one_line(run_node(node_config(tmp_path / "a.toml", moved, "d"), tmp_path))
    assert line == (f"zraft node: data directory {data} belongs to the node at "
                    f"127.0.0.1:{port} ({data / 'node.json'}), not 127.0.0.1:{moved}: set "
                    f'listen = "127.0.0.1:{port}", or give this node its own data directory')
    start(started, node_config(tmp_path / "a.toml", port, "d"), tmp_path)


def test_local_cluster_cookie_is_private(tmp_path) -> None:
    from zraft.cluster import LocalCluster

    cluster = LocalCluster(tmp_path / "c", 1)
    assert os.stat(cluster.cookie_file).st_mode & 0o777 == 0o600
    cluster.write_config(cluster.nodes[0])
    assert "fault_injection = true" in cluster.nodes[0].config_path.read_text()
