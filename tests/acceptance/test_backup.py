"""``zraft snapshot save`` / ``restore`` against real nodes: data written (past a log
compaction), saved from the leader, a new cluster restored from the file (a local cluster
directory, or member by member into node data directories), started, and the data read
back; the new cluster has its own identity and the operator's peers. A corrupt or
truncated file, or a target that holds data, is refused with one line and exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import msgpack
import pytest

import zraft
from tests.acceptance.harness import ROOT, Acceptance, wait_for
from zraft.backup.fileformat import iter_files
from zraft.backup.save import save
from zraft.client import api
from zraft.cluster import LocalCluster
from zraft.errors import BadRequest, ZRaftError
from zraft.objects import Counter
from zraft.transport.sentinels import NOT_FOUND

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _zraft(acc: Acceptance | None, *argv: str, cwd: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZRAFT_")}
    if acc is not None:
        env.update(ZRAFT_PEERS=",".join(acc.peers), ZRAFT_COOKIE_FILE=acc.cookie_file)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "zraft.cli", *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_save_then_restore_a_local_cluster_serves_every_acked_write(make_cluster,
                                                                   tmp_path: Path) -> None:
    src = make_cluster(3, max_log_count=40)  # the writes below span a log compaction
    light = src.light()
    for i in range(100):
        assert api.write(light, [f"k{i}", i], pool=src.pool)[0] == "ok"
    saved = _zraft(src, "snapshot", "save", str(tmp_path / "b.zrb"), "--json")
    assert saved.returncode == 0, saved.stderr
    doc = json.loads(saved.stdout)
    source_id = src.stat(src.peers[0])["cluster_id"]
    assert doc["cluster_id"] == source_id and doc["index"] >= 100
    assert doc["backend"].endswith("DictBackend") and doc["source"] in src.peers
    assert api.write(light, ["delete", "k0"], pool=src.pool)[0] == "ok"  # after the save
    _snapshot_read_reads_only_listed_files(src, doc["source"])

    restored = _zraft(None, "snapshot", "restore", str(tmp_path / "b.zrb"),
                      "--dir", str(tmp_path / "new"), "--json")
    assert restored.returncode == 0, restored.stderr
    new_id = json.loads(restored.stdout)["new_cluster_id"]
    assert new_id != source_id
    new = Acceptance(LocalCluster.load(tmp_path / "new"))
    try:
        new.start_nodes([n.index for n in new.cluster.nodes])
        leader = new.leader()
        assert {new.stat(p)["cluster_id"] for p in new.peers} == {new_id}
        assert api.get_conf(leader, pool=new.pool)[1] == sorted(new.peers)
        got = [api.query(new.light(), ["get", f"k{i}"], pool=new.pool)[0] for i in range(100)]
        assert got == list(range(100))
        assert api.write(new.light(), ["after", 1], pool=new.pool)[0] == "ok"
        # --dir names the restored cluster even with the source's $ZRAFT_PEERS set
        read = _zraft(src, "read", "k0", "--dir", str(tmp_path / "new"))
        assert (read.returncode, read.stdout) == (0, "0\n"), read.stderr
    finally:
        new.close()
    assert api.query(light, ["get", "k0"], pool=src.pool)[0] is NOT_FOUND  # source unchanged


def _snapshot_read_reads_only_listed_files(acc: Acceptance, leader: str) -> None:
    st = acc.stat(leader)
    snap = f"snapshot-{st['snapshot_index']}-{st['snapshot_term']}"

    def read(name: str, path: str) -> object:
        return api._single(leader, "snapshot_read", lambda peer: [peer, name, path, 0], 5.0,
                           acc.pool)

    assert read(snap, "sessions")  # listed in its manifest
    for path in ("MANIFEST.json", "../../cookie", "data/../../../cookie", "nope"):
        with pytest.raises(ZRaftError) as err:
            read(snap, path)
        assert err.value.code == "not_found" and "has no such file" in str(err.value)
    with pytest.raises(BadRequest):
        read("../snapshot-1-1", "sessions")


def test_restore_member_by_member_serves_a_replicated_object(make_cluster,
                                                             tmp_path: Path) -> None:
    backend = "zraft.objects:Counter"
    src = make_cluster(3, create=False, backend=backend)
    api.create(src.peers, backend, 20.0, pool=src.pool)
    with zraft.connect_object(src.peers, Counter, cookie_file=src.cookie_file) as hits:
        hits.incr(7)
    backup = str(tmp_path / "c.zrb")
    assert _zraft(src, "snapshot", "save", backup).returncode == 0
    dst = make_cluster(3, start=False, backend=backend)
    peers = ",".join(dst.peers)
    for n in dst.cluster.nodes:
        done = _zraft(None, "snapshot", "restore", backup, "--dir", str(n.directory / "data"),
                      "--peers", peers, "--member", dst.cluster.peer_id(n))
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("restored index ")
    dst.start_nodes([n.index for n in dst.cluster.nodes])
    dst.leader()
    ids = {dst.stat(p)["cluster_id"] for p in dst.peers}
    assert len(ids) == 1 and ids != {src.stat(src.peers[0])["cluster_id"]}
    with zraft.connect_object(dst.peers, Counter, cookie_file=dst.cookie_file) as hits:
        assert hits.get() == 7
        assert hits.incr(1) == 8
    again = _zraft(None, "snapshot", "restore", backup, "--dir",
                   str(dst.cluster.nodes[0].directory / "data"), "--peers", peers,
                   "--member", dst.peers[0])
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr == (f"zraft snapshot restore: {dst.cluster.nodes[0].directory / 'data'} "
                            f"already holds data of peer {dst.peers[0]}\n")


def test_saves_hold_every_acked_write_while_snapshots_are_slow_or_fail(make_cluster,
                                                                      tmp_path: Path) -> None:
    """The leader is nearly always writing an older snapshot when a backup's read index is
    applied: the backup must wait for a snapshot of its own, not take that one; a snapshot
    that fails fails the save (exit 1, named), and the next save works."""
    backend = "slow_snapshot:SlowCounter"
    fail = tmp_path / "fail-snapshots"
    acc = make_cluster(3, create=False, backend=backend, max_log_count=3,
                       python_path=[Path(__file__).parent / "user_backends"],
                       env={"SLOW_SNAPSHOT_FAIL": str(fail)})
    api.create(acc.peers, backend, 20.0, pool=acc.pool)
    acked = [0]
    stop = threading.Event()

    def write() -> None:
        light = acc.light()
        while not stop.is_set():
            value, light = api.write(light, ["add", 1], pool=acc.pool)
            acked[0] = value

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        wait_for(lambda: acked[0] >= 10, 20, "writes")
        for i in range(3):
            before = acked[0]
            header = save(acc.light(), tmp_path / f"{i}.zrb", 30.0, acc.pool)
            data = {f.path: b"".join(blocks) for f, blocks in iter_files(tmp_path / f"{i}.zrb")}
            assert msgpack.unpackb(data["data/state.msgpack"])["state"] >= before, header
        fail.touch()
        failed = _zraft(acc, "snapshot", "save", str(tmp_path / "x.zrb"))
        assert failed.returncode == 1
        assert failed.stderr.startswith("ZRaftError: snapshot failed: "), failed.stderr
        assert not (tmp_path / "x.zrb").exists()
        fail.unlink()
        assert _zraft(acc, "snapshot", "save", str(tmp_path / "x.zrb")).returncode == 0
    finally:
        stop.set()
        writer.join(10)


def test_save_without_a_cluster_exits_1_naming_the_error(tmp_path: Path) -> None:
    cookie = tmp_path / "cookie"
    cookie.write_text("x\n")
    done = _zraft(None, "snapshot", "save", str(tmp_path / "b.zrb"), "--peers",
                  "zraft@127.0.0.1:1", "--cookie-file", str(cookie), "--timeout", "1")
    assert done.returncode == 1 and done.stderr.startswith("AllFailed")
    assert not (tmp_path / "b.zrb").exists() and not (tmp_path / "b.zrb.tmp").exists()
    nowhere = _zraft(None, "snapshot", "save", str(tmp_path / "no" / "b.zrb"), "--peers",
                     "zraft@127.0.0.1:1", "--cookie-file", str(cookie))
    assert nowhere.returncode == 2 and nowhere.stderr.splitlines()[-1] == (
        f"zraft snapshot save: error: {tmp_path / 'no' / 'b.zrb'}: no directory "
        f"{tmp_path / 'no'}")
