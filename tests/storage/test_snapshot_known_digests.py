"""Installing a received snapshot with the sha256s the transfer computed: compared with the
manifest, not read again; a wrong or short file is still refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from zraft.core.entries import ClusterConfig, SnapshotMeta
from zraft.storage import CorruptSnapshotError
from zraft.storage import snapshots as snapshots_module
from zraft.storage.snapshots import MANIFEST, SnapshotStore

CONFIG = ClusterConfig.stable(["a@h:1", "b@h:2", "c@h:3"])


def received_copy(tmp_path: Path) -> tuple[SnapshotStore, Path, dict[str, bytes]]:
    """A leader snapshot copied into the follower store's tmp dir, with its digests."""
    sender = SnapshotStore(tmp_path / "leader")
    with sender.create(SnapshotMeta(40, 3, 1, CONFIG)) as pending:
        (pending.data_dir / "state").write_bytes(b"leader state" * 1000)
        pending.add_file("sessions", b"session-table")
    source = pending.info
    receiver = SnapshotStore(tmp_path / "follower")
    incoming = receiver.new_tmp_dir()
    digests = {}
    for rel in [f.path for f in source.files] + [MANIFEST]:
        data = (source.path / rel).read_bytes()
        (incoming / rel).parent.mkdir(parents=True, exist_ok=True)
        (incoming / rel).write_bytes(data)
        digests[rel] = hashlib.sha256(data).digest()
    return receiver, incoming, digests


def test_known_digests_are_compared_instead_of_reading(tmp_path: Path, monkeypatch) -> None:
    receiver, incoming, digests = received_copy(tmp_path)
    read: list[Path] = []
    real = snapshots_module._hash_file
    monkeypatch.setattr(snapshots_module, "_hash_file",
                        lambda path, sync: read.append(path) or real(path, sync))
    installed = receiver.install(incoming, known_digests=digests)
    assert read == []
    assert installed.meta.index == 40
    assert (installed.data_dir / "state").read_bytes() == b"leader state" * 1000


def test_files_without_a_known_digest_are_still_hashed(tmp_path: Path, monkeypatch) -> None:
    receiver, incoming, digests = received_copy(tmp_path)
    read: list[str] = []
    real = snapshots_module._hash_file
    monkeypatch.setattr(snapshots_module, "_hash_file",
                        lambda path, sync: read.append(path.name) or real(path, sync))
    del digests["sessions"]
    receiver.install(incoming, known_digests=digests)
    assert read == ["sessions"]


def test_a_known_digest_that_disagrees_with_the_manifest_is_refused(tmp_path: Path) -> None:
    receiver, incoming, digests = received_copy(tmp_path)
    digests["data/state"] = hashlib.sha256(b"something else").digest()
    with pytest.raises(CorruptSnapshotError):
        receiver.install(incoming, known_digests=digests)
    assert receiver.latest() is None


def test_a_known_digest_does_not_hide_a_wrong_size(tmp_path: Path) -> None:
    receiver, incoming, digests = received_copy(tmp_path)
    with open(incoming / "data" / "state", "ab") as f:
        f.write(b"extra")
    with pytest.raises(CorruptSnapshotError):
        receiver.install(incoming, known_digests=digests)


def test_two_stores_on_one_directory_never_hand_out_the_same_tmp_name(tmp_path: Path) -> None:
    """The receiver takes a name and removes the directory until its transfer completes;
    the state machine's own store must not take that name meanwhile."""
    receiving, building = SnapshotStore(tmp_path / "s"), SnapshotStore(tmp_path / "s")
    reserved = receiving.new_tmp_dir()
    reserved.rmdir()
    other = building.new_tmp_dir()
    assert other != reserved
    assert not reserved.exists()
