"""Peer ids on host names (``zraft@localhost:PORT``), not addresses, with real node
processes on loopback: node links, clients, the command line, the snapshot stream, and
the deployment scripts in ``deploy/bin`` (create once, healthcheck). Across hosts with
their own names: tests/jepsen/test_jepsen_netns.py (network namespaces, root only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from zraft.client import api
from zraft.client.calls import PeerCall
from zraft.client.connection import ConnectionPool
from zraft.cluster.local import LocalCluster, NodeProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_BIN = ROOT / "deploy" / "bin"


@dataclass
class NamedNode(NodeProcess):
    @property
    def address(self) -> str:
        return f"localhost:{self.port}"


class NamedCluster(LocalCluster):
    """Nodes listen on ``localhost:PORT``, their identity and peer ids; node 1 binds its
    snapshot listener to 0.0.0.0 (it must advertise its listen host), the others to the
    default (the listen host)."""

    def __init__(self, directory: Path, nodes: int = 3, **kw: Any) -> None:
        super().__init__(directory, nodes, **kw)
        self.nodes = [NamedNode(n.index, n.port, n.directory, extra_raft={
            **n.extra_raft, **({"snapshot_listener_addr": "0.0.0.0"} if n.index == 1 else {})})
            for n in self.nodes]


def run(cluster: LocalCluster, *argv: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """A deploy script or ``zraft`` with the cluster's cookie, the venv's ``zraft`` first
    on PATH, and no ZRAFT_* of the caller's environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ZRAFT_")}
    base["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", "")])
    base["ZRAFT_COOKIE_FILE"] = str(cluster.cookie_file)
    return subprocess.run(list(argv), env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=90)


def health(cluster: LocalCluster, peer: str) -> subprocess.CompletedProcess[str]:
    return run(cluster, str(DEPLOY_BIN / "zraft-healthcheck"), env={"ZRAFT_PEER": peer})


def test_a_cluster_named_by_host_names_is_created_once_served_and_catches_up(
        tmp_path: Path) -> None:
    cluster = NamedCluster(tmp_path / "c", 3, election_timeout=200, max_log_count=10,
                           extra_raft={"snapshot_log_ratio": 0.0})
    peers = cluster.peers
    assert all(p.startswith("zraft@localhost:") for p in peers)
    pool = ConnectionPool(cluster.cookie.encode(), client_id="named")
    create = None
    try:
        for n in cluster.nodes[:2]:
            cluster.start_node(n)
        # healthy before the group exists (the node answers), unhealthy without a node
        assert health(cluster, peers[0]).returncode == 0
        down = health(cluster, peers[2])
        assert down.returncode == 1 and "cannot reach node" in down.stderr
        # the one-shot create waits for the third node, then creates
        script = str(DEPLOY_BIN / "zraft-create-cluster")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZRAFT_")}
        env.update(PATH=os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]]),
                   ZRAFT_COOKIE_FILE=str(cluster.cookie_file), ZRAFT_PEERS=",".join(peers),
                   ZRAFT_CREATE_WAIT="60")
        create = subprocess.Popen([script], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        cluster.start_node(cluster.nodes[2])
        out, err = create.communicate(timeout=90)
        assert create.returncode == 0, err
        assert out.startswith("created: 3 peers")
        # a rerun of the job succeeds without touching anything; other members fail
        again = run(cluster, script, env={"ZRAFT_PEERS": ",".join(peers)})
        assert again.returncode == 0 and again.stdout.startswith("exists already"), again
        other = run(cluster, "zraft", "create", "--exist-ok", "--peers", ",".join(peers[:2]))
        assert other.returncode == 1 and "members are" in other.stderr, other
        assert all(health(cluster, p).returncode == 0 for p in peers)

        # the command line by name
        target = ["--peers", ",".join(peers)]
        assert run(cluster, "zraft", "write", "color", "red", *target).stdout == "ok\n"
        assert run(cluster, "zraft", "read", "color", *target).stdout == "red\n"
        stat = json.loads(run(cluster, "zraft", "stat", peers[1], "--json").stdout)
        assert stat[peers[1]]["id"] == peers[1]
        assert set(stat[peers[1]]["config"]["old"]) == set(peers)

        # node 1 (snapshot listener on 0.0.0.0) misses a snapshot's worth of writes
        light = api.light_session(peers, fail_timeout=1.0, election_timeout=0.2)
        cluster.stop_node(cluster.nodes[0])
        for i in range(40):
            result, light = api.write(light, [f"k{i}", i], timeout=10.0, pool=pool)
            assert result == "ok"
        cluster.start_node(cluster.nodes[0])
        leader = str(light.leader)
        goal = api.stat(leader, 5.0, pool=pool)["commit"]
        wait_until(lambda: api.stat(peers[0], 2.0, pool=pool)["applied"] >= goal, 30.0,
                   "node 1 to catch up")
        status = PeerCall(pool, peers[0], "node_status", lambda _n: [], 3.0).run()
        assert status["snapshots"]["received"] >= 1
        assert api.query_local(peers[0], "k39", timeout=5.0, pool=pool) == 39
    finally:
        if create is not None and create.poll() is None:
            create.kill()
            create.wait(5)
        pool.close()
        cluster.stop()


DNS_DOWN_NODE = """
import socket, sys
from zraft.transport import tcp

def start(self, serve=True):  # what bind() raises while no name server answers
    raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

tcp.TcpTransport.start = start
from zraft.node.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("transient", [True, False])
def test_a_listen_name_that_does_not_resolve_exits_1_if_it_may_later_else_2(
        tmp_path: Path, transient: bool) -> None:
    """Exit 2 is "do not restart" for the deploy files (systemd RestartPreventExitStatus=2):
    a host name that cannot be resolved *for now* (DNS not up yet at boot) was exit 2 as
    well, so the unit gave up on a node that a restart a moment later would have started.
    An unknown name stays exit 2 (a config error)."""
    (tmp_path / "cookie").write_text("secret\n")
    (tmp_path / "cookie").chmod(0o600)
    (tmp_path / "node.toml").write_text(
        '[node]\nlisten = "no-such-host.invalid:7000"\ncookie_file = "cookie"\n'
        '[logging]\ndir = "log"\n')
    code = ["-c", DNS_DOWN_NODE] if transient else ["-m", "zraft.node"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZRAFT_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, *code, "--config", str(tmp_path / "node.toml")],
                          env=env, capture_output=True, text=True, timeout=60)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("zraft node: node.listen no-such-host.invalid:7000: "), done.stderr
    assert done.returncode == (1 if transient else 2), done.stderr
    assert ("not resolve for now" in last) is transient
