"""Issue 3 acceptance: real node processes on 127.0.0.1 keep acknowledged data safe."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Harness
from zraft.client import api
from zraft.cluster.local import wait_until
from zraft.storage.naming import peer_log_path
from zraft.testing.authed_socket import authed
from zraft.transport import codec
from zraft.transport.errors import HandshakeError
from zraft.transport.framing import frame
from zraft.transport.handshake import client_handshake

pytestmark = pytest.mark.integration


def segments(h: Harness, node: int) -> list[Path]:
    n = h.cluster.node(node)
    log_dir = peer_log_path(n.directory / "data", h.cluster.peer_id(node)) / "log"
    return sorted(log_dir.glob("*.seg"))


def record_offsets(path: Path) -> list[int]:
    data = path.read_bytes()
    offsets, pos = [], 16
    while pos + 8 <= len(data):
        length, _crc = struct.unpack_from(">II", data, pos)
        if length == 0:
            break
        offsets.append(pos)
        pos += 8 + length
    return offsets


def wait_applied(h: Harness, node: int, index: int, timeout: float = 30.0) -> None:
    def caught_up() -> bool:
        st = h.stat(node, timeout=2.0)
        return st.get("applied", 0) >= index
    wait_until(caught_up, timeout, f"node {node} to apply index {index}")


def test_elect_replicate_and_kill9_loses_nothing(make_cluster) -> None:
    h = make_cluster(3)
    acked = {}
    for i in range(60):
        assert h.write([f"k{i}", i]) == "ok"
        acked[f"k{i}"] = i
    for victim in (h.leader_index(), 1 + h.leader_index() % 3):
        h.cluster.kill(victim)
        for i in range(60, 80):
            key = f"k{i}-{victim}"
            assert h.write([key, i], timeout=15) == "ok"
            acked[key] = i
        h.cluster.start_node(victim)
        commit = h.stat(h.leader_index()).get("commit")
        wait_applied(h, victim, commit)
        for key, value in acked.items():
            got = api.query_local(h.cluster.peer_id(victim), key, pool=h.pool)
            assert got == value, f"node {victim} lost {key} after kill -9"
    for key, value in acked.items():
        assert h.query(key) == value


def test_far_behind_follower_catches_up_by_sendfile_snapshot(make_cluster) -> None:
    # A small in-flight window: the link's send queue cannot carry the whole gap to the
    # laggard when it returns, so the leader must fall back to a snapshot.
    h = make_cluster(3, max_log_count=20, extra_raft={"max_inflight": 4})
    laggard = 1 + h.leader_index() % 3
    h.cluster.stop_node(laggard)
    for i in range(150):
        assert h.write([f"s{i}", "v" * 100]) == "ok"
    leader = h.leader_index()
    assert h.stat(leader)["first_index"] > 1, "the leader's log should have been compacted"
    h.cluster.start_node(laggard)
    wait_applied(h, laggard, h.stat(leader)["commit"], timeout=40)
    assert api.query_local(h.cluster.peer_id(laggard), "s149", pool=h.pool) == "v" * 100
    sent = h.node_status(leader)["snapshots"]
    received = h.node_status(laggard)["snapshots"]
    assert sent["sent"] >= 1 and sent["stream"]["sendfile_bytes"] > 0
    assert received["received"] >= 1


def test_torn_tail_is_cut_and_the_node_rejoins(make_cluster) -> None:
    """A crash in the middle of a write leaves a partial record after the last durable one:
    the node cuts it with a warning, starts, and catches up."""
    h = make_cluster(3)
    for i in range(20):
        h.write([f"t{i}", i])
    victim = 1 + h.leader_index() % 3
    assert h.cluster.stop_node(victim) == 0, "SIGTERM must stop a node cleanly (exit 0)"
    seg = segments(h, victim)[-1]
    last = record_offsets(seg)[-1]
    length = struct.unpack_from(">I", seg.read_bytes(), last)[0]
    with open(seg, "r+b") as fh:  # a record header promising 200 bytes, then only 5 of them
        fh.seek(last + 8 + length)
        fh.write(struct.pack(">II", 200, 0xDEADBEEF) + b"\x01\x02\x03\x04\x05")
    h.cluster.start_node(victim)
    for i in range(20, 25):
        h.write([f"t{i}", i])
    wait_applied(h, victim, h.stat(h.leader_index())["commit"])
    log_text = (h.cluster.node(victim).directory / "log" / "console.log").read_text()
    assert "torn tail" in log_text
    assert api.query_local(h.cluster.peer_id(victim), "t24", pool=h.pool) == 24


def test_corrupt_middle_record_refuses_to_start(make_cluster) -> None:
    h = make_cluster(3)
    for i in range(20):
        h.write([f"c{i}", i])
    victim = 1 + h.leader_index() % 3
    h.cluster.stop_node(victim)
    seg = segments(h, victim)[0]
    first = record_offsets(seg)[0]
    before = seg.read_bytes()
    with open(seg, "r+b") as fh:
        fh.seek(first + 8 + 1)
        fh.write(bytes([before[first + 9] ^ 0xFF]))
    n = h.cluster.node(victim)
    proc = subprocess.run([sys.executable, "-m", "zraft.node", "--config", str(n.config_path)],
                          cwd=n.directory, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert str(seg) in line and "offset" in line, line
    assert seg.exists() and len(seg.read_bytes()) == len(before), "nothing may be deleted"


def test_wrong_cookie_is_refused(make_cluster) -> None:
    h = make_cluster(1, create=False)
    n = h.cluster.node(1)
    with socket.create_connection(("127.0.0.1", n.port), timeout=5) as sock, \
            pytest.raises(HandshakeError):
        client_handshake(sock, b"not-the-cookie", "intruder", 5.0)
    text = (n.directory / "log" / "console.log").read_text()
    wait_until(lambda: "refused" in (n.directory / "log" / "console.log").read_text()
               or "refused" in text, 5, "the refusal to be logged")


def test_ten_thousand_bad_frames_leave_the_node_serving(make_cluster) -> None:
    h = make_cluster(3)
    h.write(["before", 1])
    n = h.cluster.node(h.leader_index())
    rng = random.Random(1234)
    good = [codec.encode(codec.ClientRequest(1, "propose", ["zraft", b"\x92\x01\xa1x", None])),
            codec.encode(codec.ClientRequest(2, "query", ["zraft", "before", None, None]))]
    sent = 0
    while sent < 10_000:
        with socket.create_connection(("127.0.0.1", n.port), timeout=5) as sock:
            if rng.random() < 0.2:  # unauthenticated garbage
                sock.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))))
                sent += 1
                continue
            fuzzer = authed(sock, client_handshake(sock, h.cluster.cookie.encode(), "fuzzer", 5.0))
            burst = []
            for _ in range(50):
                body = bytearray(rng.choice(good))
                for _ in range(rng.randint(1, 4)):
                    body[rng.randrange(len(body))] = rng.getrandbits(8)
                burst.append(frame(bytes(body)) if rng.random() < 0.9
                             else struct.pack(">I", rng.getrandbits(32)) + bytes(body))
                sent += 1
            with contextlib.suppress(OSError):  # the node closing on us is the point
                fuzzer.sendall(b"".join(burst))  # sealed: the fuzz reaches the decoder
    assert h.cluster.node(n.index).alive()
    assert h.write(["after", 2]) == "ok"
    assert h.query("before") == 1


def list_peers(h: Harness, node: int) -> list[str]:
    return h.node_call(node, "list_peers")


def test_removed_peer_stops_for_good_and_is_not_restarted(make_cluster) -> None:
    h = make_cluster(3)
    h.write(["x", 1])
    leader = h.leader_index()
    victim = 1 + leader % 3
    keep = [p for p in h.peers if p != h.cluster.peer_id(victim)]
    api.set_new_conf(h.cluster.peer_id(leader), keep, h.peers, timeout=15, pool=h.pool)
    wait_until(lambda: list_peers(h, victim) == [], 15, "the removed peer to stop")
    assert h.cluster.node(victim).alive(), "the node process itself stays up"
    h.cluster.restart(victim)
    assert list_peers(h, victim) == [], "a removed peer must never be restarted"
    text = (h.cluster.node(victim).directory / "log" / "console.log").read_text()
    assert "removed from its cluster" in text
    assert h.write(["y", 2]) == "ok"


def test_peer_removed_while_down_stops_when_it_returns_after_compaction(make_cluster) -> None:
    """The victim misses its removal and the entries that carried it are compacted away: on
    return it learns it was removed (from a snapshot or a vote reply), stops, and the
    cluster's term does not move."""
    h = make_cluster(3, max_log_count=50)
    h.write(["x", 1])
    leader = h.leader_index()
    victim = 1 + leader % 3
    h.cluster.kill(victim)
    keep = [p for p in h.peers if p != h.cluster.peer_id(victim)]
    api.set_new_conf(h.cluster.peer_id(leader), keep, h.peers, timeout=15, pool=h.pool)
    for i in range(200):
        assert h.write([f"k{i}", i]) == "ok"
    term = h.stat(leader)["term"]
    assert h.stat(leader)["snapshot_index"] > 0 or h.stat(leader)["first_index"] > 1
    h.cluster.restart(victim)
    console = h.cluster.node(victim).directory / "log" / "console.log"
    wait_until(lambda: "removed from its cluster" in console.read_text()
               and list_peers(h, victim) == [], 20, "the removed peer to stop")
    assert h.write(["y", 2]) == "ok"
    assert h.stat(leader)["role"] == "leader" and h.stat(leader)["term"] == term


@pytest.mark.parametrize(("extra", "needle"), [
    ('[node]\nbogus = 1\n', "unknown key 'node.bogus'"),
    ('[raft]\nelection_timeout = "x"\n', "raft.election_timeout must be an integer"),
])
def test_bad_config_exits_2_with_one_line(tmp_path, extra: str, needle: str) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'{extra}\n')
    text = cfg.read_text()
    if "[node]" in text:
        text = text.replace("[node]\n", '[node]\ncookie = "c"\n')
    else:
        text = '[node]\ncookie = "c"\n' + text
    cfg.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "zraft.node", "--config", str(cfg)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_port_in_use_exits_2(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cfg = tmp_path / "node.toml"
        cfg.write_text(f'[node]\ncookie = "c"\nlisten = "127.0.0.1:{port}"\n'
                       f'log_dir = "{tmp_path / "d"}"\nsnapshot_dir = "{tmp_path / "d"}"\n'
                       f'[logging]\ndir = "{tmp_path / "log"}"\n')
        proc = subprocess.run([sys.executable, "-m", "zraft.node", "--config", str(cfg)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"127.0.0.1:{port}" in proc.stderr and "in use" in proc.stderr


def test_restarted_node_dials_the_members_of_its_groups_at_start(make_cluster) -> None:
    """Followers never message each other in steady state, so only the dial at start can
    give a restarted follower a link to the other follower (the leader, likewise, adopts it
    at once instead of waiting out its reconnect backoff)."""
    h = make_cluster(3)
    assert h.write(["k", 1]) == "ok"
    leader = h.leader_index()
    victim, other = [n for n in (1, 2, 3) if n != leader]
    h.cluster.stop_node(victim)
    h.cluster.start_node(victim)
    other_addr = h.cluster.nodes[other - 1].address

    def linked() -> bool:
        try:
            links = h.node_status(victim, timeout=2.0)["transport"]["links"]
        except Exception:  # still starting
            return False
        return bool(links.get(other_addr, {}).get("connected"))

    wait_until(linked, 10.0, "a link from the restarted follower to the other follower")


def test_a_node_serves_only_once_its_stored_peers_are_up(make_cluster) -> None:
    """Restart, then ask at once: the first answer already lists the stored peer (the
    transport binds first but listens only after the peers start)."""
    h = make_cluster(3)
    assert h.write(["k", 1]) == "ok"
    for _ in range(5):
        h.cluster.restart(2)
        assert list_peers(h, 2) == ["zraft"]


def test_follower_behind_compaction_installs_the_leaders_snapshot_without_loading_its_own(
        make_cluster) -> None:
    """The others drop (not queue) what they send the victim while it is away, so on return
    the leader's newer snapshot is the first thing it needs: its own is never loaded."""
    h = make_cluster(3, max_log_count=20, extra_raft={"snapshot_log_ratio": 0})
    for i in range(60):
        assert h.write([f"k{i}", i]) == "ok"
    leader = h.leader_index()
    victim = 1 + leader % 3
    wait_until(lambda: h.stat(victim)["snapshot_index"] > 0, 15, "a local snapshot")
    others = [n for n in (1, 2, 3) if n != victim]
    for n in others:
        h.node_call(n, "partition", [[h.cluster.node(victim).address]])
    h.cluster.kill(victim)
    for i in range(60, 160):
        assert h.write([f"k{i}", i]) == "ok"
    goal = h.stat(leader)["commit"]
    for n in others:
        h.node_call(n, "heal")
    h.cluster.restart(victim)

    def caught_up() -> dict | None:
        st = h.stat(victim, timeout=2.0)
        fsm = st.get("fsm") or {}
        return st if fsm.get("applied_index", 0) >= goal and not fsm.get("restore_pending") \
            else None
    st = wait_until(caught_up, 30, "the restarted follower to catch up")
    text = (h.cluster.node(victim).directory / "log" / "console.log").read_text()
    assert st["fsm"]["snapshots_installed"] == 1, text[-3000:]
    assert "skipped: the leader's" in text
    # its state is the leader's: it answers once it leads
    h.cluster.kill(leader)
    assert h.write(["after", 1], timeout=20) == "ok"
    assert h.query("k159", timeout=20) == 159 and h.query("k0", timeout=20) == 0
