"""Issue 13 section 1 (TLS) against real node processes: a mutual-TLS cluster serves the
client API and the CLI and sends a snapshot to a follower over TLS; a wrong CA, an expired or
unknown client certificate and a plaintext client are refused with a clear error while the
node stays up; a node whose key others can read, or whose TLS files do not work, exits 2."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Harness
from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster import LocalCluster
from zraft.cluster.certs import issue, load_ca, make_ca
from zraft.cluster.local import free_port, wait_until
from zraft.errors import ZRaftError
from zraft.transport.tls import TlsFiles, client_context

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    # a small in-flight window and log: a follower that comes back must get a snapshot
    cluster = LocalCluster(tmp_path_factory.mktemp("tls") / "c", 3, election_timeout=300,
                           max_log_count=20, extra_raft={"max_inflight": 4}, tls=True)
    h = Harness(cluster)
    h.pool.close()
    h.pool = ConnectionPool(cluster.cookie.encode(), tls=cluster.client_tls())
    try:
        cluster.start()
        h.create()
        yield h
    finally:
        h.close()
        cluster.stop()


def pool_with(h: Harness, files: TlsFiles | None) -> ConnectionPool:
    return ConnectionPool(h.cluster.cookie.encode(), connect_timeout=2.0,
                          tls=None if files is None else client_context(files))


def refusal(h: Harness, files: TlsFiles | None) -> str:
    """The error a client with these TLS files gets from node 1."""
    pool = pool_with(h, files)
    try:
        with pytest.raises(ZRaftError) as caught:
            api.stat(h.cluster.peer_id(1), timeout=3.0, pool=pool)
        return str(caught.value)
    finally:
        pool.close()


def test_tls_cluster_serves_the_api_the_cli_and_a_snapshot(tls_cluster: Harness) -> None:
    h = tls_cluster
    for i in range(10):
        assert h.write([f"k{i}", i]) == "ok"
    assert h.query("k9") == 9
    # the CLI finds the CA and the client certificate in the cluster directory
    d = str(h.cluster.directory)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZRAFT_")}
    cli = [sys.executable, "-m", "zraft.cli"]
    out = subprocess.run([*cli, "write", "--dir", d, "cli", "yes"], capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([*cli, "read", "--dir", d, "cli"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert (out.returncode, out.stdout.strip()) == (0, "yes"), out.stderr
    # a follower far behind gets a snapshot, through TLS (no sendfile: encrypted in user space)
    laggard = 1 + h.leader_index() % 3
    h.cluster.stop_node(laggard)
    for i in range(120):
        assert h.write([f"s{i}", "v" * 100]) == "ok"
    leader = h.leader_index()
    h.cluster.start_node(laggard)
    commit = h.stat(leader)["commit"]
    wait_until(lambda: h.stat(laggard, timeout=2.0).get("applied", 0) >= commit, 40,
               "the laggard to catch up")
    assert api.query_local(h.cluster.peer_id(laggard), "s119", pool=h.pool) == "v" * 100
    sent = h.node_status(leader)["snapshots"]
    assert sent["sent"] >= 1 and sent["stream"]["tls_sent_bytes"] > 0
    assert sent["stream"]["sendfile_bytes"] == 0
    assert h.node_status(laggard)["snapshots"]["received"] >= 1
    log = (h.cluster.nodes[0].directory / "log" / "console.log").read_text()
    assert "TLS on 127.0.0.1" in log and "PLAINTEXT" not in log


def test_bad_clients_are_refused_clearly_and_the_node_stays_up(tls_cluster: Harness,
                                                               tmp_path: Path) -> None:
    h = tls_cluster
    tls = h.cluster.tls_dir
    ca, cert, key = str(tls / "ca.pem"), str(tls / "client.pem"), str(tls / "client.key")
    other = make_ca(tmp_path / "other", "other")
    stranger = issue(other, tmp_path / "other", "stranger")
    now = dt.datetime.now(dt.UTC)
    expired = issue(load_ca(tls), tmp_path, "expired", not_before=now - dt.timedelta(days=30),
                    not_after=now - dt.timedelta(days=1))
    # the client does not trust the node: another CA
    wrong_ca = refusal(h, TlsFiles(cert, key, str(other.cert_path)))
    assert re.search(r"not trusted: [a-z -]*certificate", wrong_ca), wrong_ca  # whole reason
    # the node does not trust the client: expired, another CA's, none at all
    assert "certificate expired" in refusal(h, TlsFiles(str(expired.cert), str(expired.key),
                                                        ca)).lower()
    assert "unknown ca" in refusal(h, TlsFiles(str(stranger.cert), str(stranger.key),
                                               ca)).lower()
    assert "certificate required" in refusal(h, TlsFiles("", "", ca)).lower()
    # plaintext: the node answers in plaintext that it requires TLS
    assert "requires TLS" in refusal(h, None)
    # ... which the CLI shows, even after retrying every peer until its deadline
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZRAFT_")}
    out = subprocess.run([sys.executable, "-m", "zraft.cli", "write", "--peers",
                          ",".join(h.peers), "--cookie-file", str(h.cluster.cookie_file),
                          "--timeout", "3", "k", "v"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode != 0 and "requires TLS" in out.stderr, out.stderr
    assert h.stat(1)["role"] in ("leader", "follower")
    log = (h.cluster.nodes[0].directory / "log" / "console.log").read_text()
    assert "plaintext client refused" in log
    assert max(len(line) for line in log.splitlines() if "refused connection" in line) < 400


# -- a node whose TLS files are wrong never starts ---------------------------------------


def node_config(tmp: Path, tls_lines: str) -> Path:
    (tmp / "cookie").write_text("c00kie\n")
    (tmp / "cookie").chmod(0o600)
    config = tmp / "node.toml"
    config.write_text(f'[node]\nlisten = "127.0.0.1:{free_port()}"\ncookie_file = "cookie"\n'
                      f'{tls_lines}[raft]\nelection_timeout = 200\n[logging]\ndir = "log"\n')
    return config


def run_node(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zraft.node", "--config", str(config)],
                          cwd=config.parent, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from zraft.cluster.certs import make_cluster_certs

    d = tmp_path_factory.mktemp("files")
    make_cluster_certs(d, ["127.0.0.1"])
    return d


def with_certs(tmp: Path, cert_files: Path) -> None:
    for name in ("ca.pem", "node.pem", "node.key", "client.key"):
        shutil.copy2(cert_files / name, tmp / name)


TLS_LINES = 'tls_cert = "node.pem"\ntls_key = "node.key"\ntls_ca = "ca.pem"\n'


def test_a_key_others_can_read_refuses_start(tmp_path: Path, cert_files: Path) -> None:
    with_certs(tmp_path, cert_files)
    (tmp_path / "node.key").chmod(0o644)
    out = run_node(node_config(tmp_path, TLS_LINES))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "node.tls_key" in lines[0]
    assert f"chmod 600 {tmp_path / 'node.key'}" in lines[0]


@pytest.mark.parametrize("lines,expect", [
    ('tls_cert = "missing.pem"\ntls_key = "node.key"\ntls_ca = "ca.pem"\n', "not found"),
    ('tls_cert = "node.pem"\ntls_key = "client.key"\ntls_ca = "ca.pem"\n', "does not match"),
    ('tls_cert = "node.pem"\ntls_key = "node.key"\ntls_ca = "node.key"\n', "tls_ca"),
    ('tls_cert = "node.pem"\ntls_key = "node.key"\n', "needs tls_ca"),
    ("tls_verify_client = true\n", "tls_verify_client needs"),
])
def test_tls_files_that_do_not_work_exit_2(tmp_path: Path, cert_files: Path, lines: str,
                                           expect: str) -> None:
    with_certs(tmp_path, cert_files)
    out = run_node(node_config(tmp_path, lines))
    assert out.returncode == 2, out.stderr
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err


def test_a_plaintext_node_says_so_at_start(tmp_path: Path) -> None:
    from tests.integration.test_node_privilege import Running

    config = node_config(tmp_path, "")
    node = Running(config, tmp_path)
    try:
        listen = config.read_text().split('"')[1]
        log = tmp_path / "log" / "console.log"
        line = wait_until(lambda: [x for x in log.read_text().splitlines()
                                   if "PLAINTEXT" in x], 10, "the warning")
        assert len(line) == 1 and "WARNING" in line[0] and listen in line[0]
    finally:
        assert node.stop() == 0


# -- the README's TLS section runs as written ---------------------------------------------

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
TLS_SECTION = README[README.index("### TLS"):README.index("### Several machines")]


def test_readme_tls_commands_run(tmp_path: Path) -> None:
    import shlex

    (body,) = re.findall(r"```sh\n(.*?)```", TLS_SECTION, re.S)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZRAFT_")}
    outputs = []
    for line in body.splitlines():
        argv = shlex.split(line.replace("/tmp/zraft-tls-demo", str(tmp_path / "demo")))
        assert argv[0] == "zraft"
        out = subprocess.run([sys.executable, "-m", "zraft.cli", *argv[1:]],
                             capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0, (line, out.stdout[-1000:], out.stderr[-1000:])
        outputs.append(out.stdout)
    assert "TLS (mutual)" in outputs[0] and outputs[2].strip() == "hello"


def test_readme_tls_config_parses(tmp_path: Path, cert_files: Path) -> None:
    import tomllib

    from zraft.config import load_config

    (block,) = re.findall(r"```toml\n(.*?)```", TLS_SECTION, re.S)
    with_certs(tmp_path, cert_files)
    (tmp_path / "cookie").write_text("c00kie\n")
    config = tmp_path / "node.toml"
    config.write_text(block)
    cfg = load_config(config)
    assert cfg.tls_verify_client and cfg.tls_cert == str(tmp_path / "node.pem")
    assert cfg.node_tls() is not None and tomllib.loads(block)["node"]["tls_ca"] == "ca.pem"
