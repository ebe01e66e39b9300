"""Storage faults on real node processes (issue 11 section 2).

Acknowledged data after a tail repair plus a second fault: C is partitioned away, A and B
acknowledge 30 writes, A is killed and B stopped, B's newest log segment is damaged (one bit
flipped in its last record, zero-filled, or deleted), the partition heals and B starts. B
may have lost entries it acknowledged: it must not help C (which never saw them) elect a
leader. Once A is back, a leader holding the writes repairs B and every write is there.

A node whose raft.meta is damaged, or whose data sits on a read-only file system, exits 2
with one line naming the file instead of skipping the peer or printing a traceback.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from zraft.cluster import admin
from zraft.cluster.local import wait_until
from zraft.storage.meta import META_FILE
from zraft.storage.naming import peer_log_path

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

KEYS = 30


def _newest_segment(h, node: int) -> Path:
    n = h.cluster.node(node)
    log = peer_log_path(n.directory / "data", h.cluster.peer_id(node)) / "log"
    return sorted(log.glob("*.seg"))[-1]


def _damage(path: Path, how: str) -> None:
    if how == "delete":
        path.unlink()
        return
    data = bytearray(path.read_bytes())
    if how == "zero":
        path.write_bytes(bytes(len(data)))
        return
    end = len(data.rstrip(b"\0"))  # the last record ends here
    data[end - 20] ^= 0x04  # one bit inside the last record
    path.write_bytes(bytes(data))


def _role(h, node: int) -> str | None:
    try:
        return h.stat(node, timeout=1.0).get("role")
    except Exception:
        return None


@pytest.mark.parametrize("how", ["bitflip", "zero", "delete"])
def test_a_damaged_node_does_not_help_elect_a_leader_missing_acknowledged_writes(
        make_cluster, how) -> None:
    h = make_cluster(3)
    cluster = h.cluster
    c_node = cluster.node(3)
    admin.partition(h.pool, cluster, [[c_node]])
    a = wait_until(lambda: next((i for i in (1, 2) if _role(h, i) == "leader"), None), 15,
                   "a leader among nodes 1 and 2")
    b = 3 - a
    for i in range(KEYS):
        assert h.write([f"k{i}", i]) == "ok"
    cluster.kill(a)
    assert cluster.stop_node(b) == 0
    _damage(_newest_segment(h, b), how)
    admin.heal(h.pool, cluster)
    cluster.start_node(b)
    stat = h.stat(b)
    assert stat["recovering"] > 0, stat
    # B and C are a majority, but only C could lead, and C lacks the writes: B must not
    # vote for it. Watch for ten election timeouts that no leader appears.
    deadline = time.monotonic() + 10 * 0.3
    while time.monotonic() < deadline:
        assert _role(h, 3) != "leader" and _role(h, b) != "leader"
        time.sleep(0.05)
    cluster.start_node(a)
    wait_until(lambda: h.stat(b, timeout=1.0)["recovering"] == 0, 20, "B to be repaired")
    for i in range(KEYS):
        assert h.query(f"k{i}") == i
    events = (cluster.node(b).directory / "log" / "console.log").read_text()
    assert "log_damaged" in events and "healed" in events


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_a_node_with_damaged_metadata_exits_2_naming_the_file(make_cluster, damage) -> None:
    h = make_cluster(3)
    h.write(["x", 1])
    cluster = h.cluster
    assert cluster.stop_node(2) == 0
    meta = peer_log_path(cluster.node(2).directory / "data", cluster.peer_id(2)) / META_FILE
    if damage == "garbage":
        meta.write_bytes(b"\0" * 40)
    elif damage == "truncated":
        meta.write_bytes(meta.read_bytes()[:20])
    else:
        meta.unlink()
    n = cluster.node(2)
    cluster.write_config(n)
    proc = subprocess.run(cluster.node_command(n), capture_output=True, text=True, timeout=60,
                          cwd=n.directory)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(meta) in lines[0], proc.stderr
    assert "ready" not in proc.stdout


def _can_mount() -> bool:
    return shutil.which("mount") is not None and Path("/proc/self/mountinfo").exists() \
        and subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() == "0"


@pytest.mark.skipif(not _can_mount(), reason="needs root to mount a read-only file system")
@pytest.mark.parametrize("where", ["data_dir", "peer_dir"])
def test_a_node_on_a_read_only_file_system_exits_2_with_one_line(make_cluster, tmp_path,
                                                                 where) -> None:
    h = make_cluster(3)
    h.write(["x", 1])
    cluster = h.cluster
    n = cluster.node(2)
    assert cluster.stop_node(2) == 0
    data = n.directory / "data"
    # the whole data directory, or only the peer's own directory (the node's checks of
    # its directories pass, the peer's files cannot be written)
    target = data if where == "data_dir" else peer_log_path(data, cluster.peer_id(2))
    saved = tmp_path / "saved"
    shutil.copytree(target, saved)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(target)], check=True)
    try:
        shutil.copytree(saved, target, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
        cluster.write_config(n)
        proc = subprocess.run(cluster.node_command(n), capture_output=True, text=True,
                              timeout=60, cwd=n.directory)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert str(target) in lines[0], lines
        assert "ead-only" in lines[0] or "not writable" in lines[0], lines
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_damaged_single_node_waits_for_the_operator(make_cluster) -> None:
    # alone, it cannot tell whether it lost a config that had more members (and their
    # votes): it waits; --clear-recovering is the operator's explicit acceptance
    h = make_cluster(1)
    for i in range(5):
        assert h.write([f"k{i}", i]) == "ok"
    cluster = h.cluster
    assert cluster.stop_node(1) == 0
    _damage(_newest_segment(h, 1), "bitflip")
    cluster.start_node(1)
    assert h.stat(1)["recovering"] > 0
    deadline = time.monotonic() + 10 * 0.3
    while time.monotonic() < deadline:
        assert _role(h, 1) != "leader"
        time.sleep(0.05)
    assert cluster.stop_node(1) == 0
    n = cluster.node(1)
    proc = subprocess.run([*cluster.node_command(n), "--clear-recovering", "nosuch"],
                          capture_output=True, text=True, timeout=60, cwd=n.directory)
    assert proc.returncode == 2 and "no peer named 'nosuch'" in proc.stderr
    n.proc = psutil.Popen([*cluster.node_command(n), "--clear-recovering", cluster.peer_name],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          cwd=n.directory, start_new_session=True)  # reaped by the fixture
    cluster.wait_listening(n)
    wait_until(lambda: _role(h, 1) == "leader", 10, "the node to lead again")
    assert h.stat(1)["recovering"] == 0
    assert h.query("k0") == 0
