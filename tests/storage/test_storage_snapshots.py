"""SnapshotStore: create, verify, latest, install, backup archives, start-up cleaning."""

from __future__ import annotations

import json
import tarfile

import pytest

from zraft.core.entries import ClusterConfig, SnapshotMeta
from zraft.storage import CorruptSnapshotError
from zraft.storage.snapshots import MANIFEST, SnapshotStore, verify

CONFIG = ClusterConfig.stable(["a@h:1", "b@h:2", "c@h:3"])


def meta(index: int, term: int = 1) -> SnapshotMeta:
    return SnapshotMeta(index, term, 1, CONFIG)


def make(store: SnapshotStore, index: int, term: int = 1, state: bytes = b"state"):
    with store.create(meta(index, term)) as pending:
        (pending.data_dir / "state").write_bytes(state)
        (pending.data_dir / "sub").mkdir()
        (pending.data_dir / "sub" / "more").write_bytes(b"x" * 1000)
        pending.add_file("sessions", b"session-table")
        pending.add_file("monitors", b"")
    return pending.info


def test_create_and_verify(tmp_path):
    store = SnapshotStore(tmp_path / "snapshots")
    info = make(store, 10, 2)
    assert info.path.name == "snapshot-10-2"
    assert info.meta == meta(10, 2)
    assert sorted(f.path for f in info.files) == ["data/state", "data/sub/more", "monitors",
                                                  "sessions"]
    assert verify(info.path) == info
    assert (info.data_dir / "state").read_bytes() == b"state"
    assert store.latest() == info
    assert [p.name for p in (tmp_path / "snapshots").iterdir()] == ["snapshot-10-2"]


def test_for_peer_uses_the_peer_directory(tmp_path):
    store = SnapshotStore.for_peer(tmp_path, "n1@127.0.0.1:5000")
    assert store.root.parent.name.startswith("n1-")
    assert store.root.name == "snapshots"


def test_failed_build_leaves_nothing(tmp_path):
    store = SnapshotStore(tmp_path)
    with pytest.raises(RuntimeError), store.create(meta(5)) as pending:
        (pending.data_dir / "state").write_bytes(b"half")
        raise RuntimeError("backend failed")
    assert list(tmp_path.iterdir()) == []
    assert store.latest() is None


@pytest.mark.parametrize("damage", ["content", "missing", "extra", "manifest", "no_manifest"])
def test_verify_detects_damage(tmp_path, damage):
    store = SnapshotStore(tmp_path)
    info = make(store, 7)
    if damage == "content":
        (info.data_dir / "state").write_bytes(b"stale")  # same size, other bytes
    elif damage == "missing":
        (info.path / "sessions").unlink()
    elif damage == "extra":
        (info.data_dir / "intruder").write_bytes(b"?")
    elif damage == "manifest":
        doc = json.loads((info.path / MANIFEST).read_text())
        doc["index"] = 8
        (info.path / MANIFEST).write_text(json.dumps(doc))
    else:
        (info.path / MANIFEST).unlink()
    with pytest.raises(CorruptSnapshotError):
        verify(info.path)
    if damage in ("manifest", "no_manifest"):
        assert store.latest() is None  # an invalid manifest is never "complete"


def test_new_snapshot_replaces_older_dirs(tmp_path):
    store = SnapshotStore(tmp_path)
    make(store, 5)
    make(store, 9, 2)
    newest = make(store, 12, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot-12-2"]
    assert store.latest() == newest
    assert store.archives() == []


def test_backup_keeps_every_snapshot_as_an_archive(tmp_path):
    store = SnapshotStore(tmp_path, backup=True)
    make(store, 5, state=b"five")
    make(store, 9, state=b"nine")
    names = [p.name for p in store.archives()]
    assert names == ["archive-5-1.tar", "archive-9-1.tar"]
    with tarfile.open(tmp_path / "archive-5-1.tar") as tar:
        member = tar.extractfile("snapshot-5-1/data/state")
        assert member is not None and member.read() == b"five"
    # archives survive start-up cleaning (zraft_lib kept only the latest: SPEC 11, item 24)
    SnapshotStore(tmp_path, backup=True).clean()
    assert [p.name for p in store.archives()] == names


def test_latest_skips_a_newer_snapshot_with_bad_manifest(tmp_path):
    store = SnapshotStore(tmp_path)
    good = make(store, 5)
    bad = tmp_path / "snapshot-9-1"
    bad.mkdir()
    (bad / MANIFEST).write_text("{ torn")
    assert store.latest() == good


def test_startup_cleaning(tmp_path):
    store = SnapshotStore(tmp_path, backup=True)
    make(store, 5)
    newest = make(store, 8)
    # leftovers of a crash: an older dir, a tmp build dir, a tmp archive, a bad newer dir
    older = tmp_path / "snapshot-3-1"
    older.mkdir()
    (older / MANIFEST).write_text("{}")
    tmp_build = store.new_tmp_dir()
    (tmp_build / "data").mkdir()
    (tmp_path / "tmp-archive-9-1.tar").write_bytes(b"partial")
    bad_newer = tmp_path / "snapshot-20-1"
    bad_newer.mkdir()
    fresh = SnapshotStore(tmp_path, backup=True)
    assert fresh.clean() == newest
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["archive-5-1.tar", "archive-8-1.tar", "snapshot-20-1", "snapshot-8-1"]
    assert fresh.latest() == newest


def test_install_received_snapshot(tmp_path):
    sender = SnapshotStore(tmp_path / "leader")
    source = make(sender, 40, 3, state=b"leader state")
    receiver = SnapshotStore(tmp_path / "follower")
    make(receiver, 10)
    incoming = receiver.new_tmp_dir()
    for f in source.files:  # what a transfer would write
        target = incoming / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((source.path / f.path).read_bytes())
    (incoming / MANIFEST).write_bytes((source.path / MANIFEST).read_bytes())
    installed = receiver.install(incoming)
    assert installed.path == tmp_path / "follower" / "snapshot-40-3"
    assert installed.meta == meta(40, 3)
    assert (installed.data_dir / "state").read_bytes() == b"leader state"
    assert [p.name for p in (tmp_path / "follower").iterdir()] == ["snapshot-40-3"]
    assert receiver.latest() == installed


def test_install_refuses_a_damaged_transfer(tmp_path):
    sender = SnapshotStore(tmp_path / "leader")
    source = make(sender, 40, 3)
    (source.path / "sessions").write_bytes(b"flipped-bits!")
    receiver = SnapshotStore(tmp_path / "follower")
    with pytest.raises(CorruptSnapshotError):
        receiver.install(source.path)
    assert receiver.latest() is None


def test_install_from_outside_the_store_copies(tmp_path):
    sender = SnapshotStore(tmp_path / "leader")
    source = make(sender, 40, 3)
    receiver = SnapshotStore(tmp_path / "follower")
    installed = receiver.install(source.path)
    assert installed.path.parent == receiver.root
    assert source.path.exists()
    assert verify(installed.path).meta == source.meta


def test_add_file_rejects_escaping_paths(tmp_path):
    store = SnapshotStore(tmp_path)
    pending = store.create(meta(1))
    for bad in ("../outside", MANIFEST, "."):
        with pytest.raises(ValueError):
            pending.add_file(bad, b"x")
    pending.abort()


def test_retain_keeps_the_previous_snapshot_for_inflight_transfers(tmp_path):
    store = SnapshotStore(tmp_path, retain=2)
    make(store, 5)
    make(store, 9)
    make(store, 12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot-12-1", "snapshot-9-1"]
    assert store.latest().meta.index == 12
