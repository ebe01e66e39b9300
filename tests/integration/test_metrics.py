"""Issue 13 section 6: the Prometheus endpoint of real node processes, and JSON logs."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Harness
from zraft.cluster.local import free_port, wait_until
from zraft.config import parse_config

pytestmark = pytest.mark.integration


def scrape(port: int, timeout: float = 5.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, parsed by prometheus_client's own parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def readme_metrics() -> set[str]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Metrics"):readme.index("### JSON logs")]
    rows = [line for line in section.splitlines() if line.startswith("| `zraft_")]
    return {name for row in rows for name in re.findall(r"`(zraft_\w+)`", row.split("|")[1])}


def test_readme_metrics_config_parses() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Metrics"):readme.index("### Several machines")]
    raw = tomllib.loads(re.search(r"```toml\n(.*?)```", section, re.S).group(1))
    raw["node"]["cookie"] = "c"
    assert parse_config(raw).metrics_addr == "127.0.0.1:9100"
    line = re.search(r"```json\n(.*?)```", section, re.S).group(1)
    assert {"time", "level", "logger", "message", "event"} <= set(json.loads(line))


def test_scrape_moves_with_writes(make_cluster) -> None:
    h: Harness = make_cluster(3, metrics=True)
    leader = h.cluster.node(h.leader_index())
    peer = h.cluster.peer_name
    before = scrape(leader.metrics_port)
    assert value(before, "zraft_peer_role", peer=peer, role="leader") == 1.0
    assert value(before, "zraft_term", peer=peer) >= 1
    for i in range(20):
        assert h.write([f"k{i}", i]) == "ok"
    after = scrape(leader.metrics_port)
    assert value(after, "zraft_commit_index", peer=peer) \
        >= value(before, "zraft_commit_index", peer=peer) + 20
    assert value(after, "zraft_proposals_total", peer=peer) \
        >= value(before, "zraft_proposals_total", peer=peer) + 20
    # every write waited for its commit: the histogram counted each of them
    assert value(after, "zraft_proposal_seconds_count", peer=peer) >= 20
    assert value(after, "zraft_proposal_seconds_bucket", peer=peer, le="+Inf") \
        == value(after, "zraft_proposal_seconds_count", peer=peer)
    assert value(after, "zraft_fsync_seconds_count", peer=peer) \
        > value(before, "zraft_fsync_seconds_count", peer=peer)
    assert value(after, "zraft_apply_seconds_count", peer=peer) > 0
    assert value(after, "zraft_leader_changes_total", peer=peer) >= 1
    assert value(after, "zraft_client_connections") >= 1
    assert value(after, "zraft_metrics_errors_total") == 0
    # the README's table names every metric family a node serves, and only those
    with urllib.request.urlopen(f"http://127.0.0.1:{leader.metrics_port}/metrics") as resp:
        served = re.findall(r"^# TYPE (\w+) ", resp.read().decode(), re.M)

    def family(name: str) -> str:
        return re.sub(r"_total$", "", name)
    assert {family(n) for n in served} == {family(n) for n in readme_metrics()}
    for other in h.cluster.nodes:
        if other is leader:
            continue
        link = other.address
        assert value(after, "zraft_link_sent_bytes_total", link=link) \
            > value(before, "zraft_link_sent_bytes_total", link=link)
        assert value(after, "zraft_link_up", link=link) == 1.0
    # a follower reports its role and catches up on the commit index
    follower = next(n for n in h.cluster.nodes if n is not leader)
    commit = value(after, "zraft_commit_index", peer=peer)
    got = wait_until(lambda: (s := scrape(follower.metrics_port))
                     and value(s, "zraft_applied_index", peer=peer) >= commit and s,
                     15, "the follower to apply")
    assert value(got, "zraft_peer_role", peer=peer, role="follower") == 1.0


def test_snapshots_counted(make_cluster) -> None:
    h: Harness = make_cluster(3, metrics=True, max_log_count=10)
    leader = h.cluster.node(h.leader_index())
    for i in range(30):
        assert h.write([f"s{i}", i]) == "ok"
    peer = h.cluster.peer_name
    got = wait_until(lambda: (s := scrape(leader.metrics_port))
                     and value(s, "zraft_snapshots_taken_total", peer=peer) >= 1 and s,
                     15, "a snapshot")
    assert value(got, "zraft_snapshot_written_bytes_total", peer=peer) > 0
    assert value(got, "zraft_snapshot_seconds_total", peer=peer) > 0


def _write_config(tmp: Path, **node: str) -> Path:
    (tmp / "cookie").write_text("secret\n")
    (tmp / "cookie").chmod(0o600)
    lines = ["[node]", f'listen = "127.0.0.1:{free_port()}"',
             f'cookie_file = "{tmp / "cookie"}"', f'log_dir = "{tmp / "data"}"',
             f'snapshot_dir = "{tmp / "data"}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in node.items() if k != "logging"]
    lines += ["[logging]", f'dir = "{tmp / "log"}"', *node.get("logging", "").split(";")]
    path = tmp / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run_node(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zraft.node", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("addr", ["nonsense", "127.0.0.1:0", "127.0.0.1:99999", ":9100"])
def test_bad_metrics_addr_is_a_config_error(tmp_path, addr) -> None:
    result = _run_node(_write_config(tmp_path, metrics_addr=addr))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "node.metrics_addr" in lines[0], result.stderr


def test_metrics_addr_in_use_is_exit_2(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run_node(_write_config(tmp_path, metrics_addr=f"127.0.0.1:{port}"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"node.metrics_addr 127.0.0.1:{port}" in lines[0], result.stderr


def test_bad_log_format_is_a_config_error(tmp_path) -> None:
    result = _run_node(_write_config(tmp_path, logging='format = "xml"'))
    assert result.returncode == 2
    assert "logging.format" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_hostile_scrapers_never_stop_the_node(make_cluster) -> None:
    """Garbage, half requests and clients that hang up: each fails alone; the node and the
    endpoint keep serving."""
    h: Harness = make_cluster(1, metrics=True)
    node = h.cluster.node(1)
    for payload in (b"\x00\xff" * 5000, b"GET /metrics HTTP/1.1\r\n", b"POST / HTTP/1.0\r\n\r\n",
                    b"GET /" + b"a" * 70000 + b" HTTP/1.0\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", node.metrics_port), timeout=5) as s:
            s.sendall(payload)
    with socket.create_connection(("127.0.0.1", node.metrics_port), timeout=5):
        pass  # connect and leave
    assert h.write(["after", 1]) == "ok"
    assert value(scrape(node.metrics_port), "zraft_peers") == 1.0
    assert node.alive()


def test_idle_scraper_flood_costs_no_threads(make_cluster) -> None:
    """Connections that never send hold at most MAX_SCRAPERS threads (the rest are closed
    at once); the node serves on, and the endpoint again once they go."""
    from zraft.node.metrics import MAX_SCRAPERS

    h: Harness = make_cluster(1, metrics=True)
    node = h.cluster.node(1)
    threads_before = node.proc.num_threads()
    idle = [socket.create_connection(("127.0.0.1", node.metrics_port), timeout=5)
            for _ in range(4 * MAX_SCRAPERS)]
    try:
        assert h.write(["during", 1]) == "ok"
        assert node.proc.num_threads() <= threads_before + MAX_SCRAPERS + 2
    finally:
        for s in idle:
            s.close()
    wait_until(lambda: value(scrape(node.metrics_port, timeout=2), "zraft_peers") == 1.0,
               15, "the endpoint after the flood")
    assert node.alive()


def test_json_logs(make_cluster) -> None:
    h: Harness = make_cluster(1, extra_logging={"format": "json"})
    node = h.cluster.node(1)
    path = node.directory / "log" / "console.log"

    def records() -> list[dict[str, Any]]:
        return [json.loads(line) for line in path.read_text().splitlines()]

    got = wait_until(lambda: [r for r in records() if r.get("event", {}).get("kind") == "role"
                              and r["event"].get("role") == "leader"], 15, "a role event")
    rec = got[0]
    assert {"time", "level", "logger", "message"} <= set(rec)
    assert rec["level"] == "info" and rec["logger"] == "zraft.events"
    assert rec["event"]["peer"] == h.cluster.peer_id(1)
    assert rec["time"].endswith("Z")
    # `zraft cluster events` still reads the timeline from JSON logs
    from zraft.cluster.events import node_events

    kinds = {e["kind"] for e in node_events(h.cluster.directory)}
    assert {"node_start", "role"} <= kinds
