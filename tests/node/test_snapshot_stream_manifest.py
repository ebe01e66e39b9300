"""The leader sends a snapshot with the sha256s of its own manifest (no hashing pass)."""

from __future__ import annotations

from pathlib import Path

from zraft.core.entries import ClusterConfig, SnapshotMeta
from zraft.node import snapshots as node_snapshots
from zraft.node.snapshots import stream_manifest
from zraft.storage.snapshots import SnapshotStore
from zraft.transport import snapshot_stream

CONFIG = ClusterConfig.stable(["a@h:1", "b@h:2", "c@h:3"])


def committed(tmp_path: Path):
    store = SnapshotStore(tmp_path / "snaps")
    with store.create(SnapshotMeta(7, 2, 1, CONFIG)) as pending:
        (pending.data_dir / "state").write_bytes(b"s" * 100_000)
        pending.add_file("sessions", b"table")
    return pending.info


def test_stream_manifest_equals_hashing_the_directory(tmp_path: Path, monkeypatch) -> None:
    info = committed(tmp_path)
    hashed: list[str] = []
    real = node_snapshots.file_digest
    monkeypatch.setattr(node_snapshots, "file_digest",
                        lambda path, size: hashed.append(path.name) or real(path, size))
    entries = stream_manifest(info)
    assert entries == snapshot_stream.build_manifest(info.path)
    assert hashed == ["MANIFEST.json"]  # only the small manifest file itself


def test_an_unexpected_file_makes_it_hash_the_directory(tmp_path: Path) -> None:
    info = committed(tmp_path)
    (info.path / "stray").write_bytes(b"?")
    assert stream_manifest(info) == snapshot_stream.build_manifest(info.path)
    assert "stray" in [e.path for e in stream_manifest(info)]


def test_a_file_whose_size_changed_makes_it_hash_the_directory(tmp_path: Path) -> None:
    info = committed(tmp_path)
    (info.path / "sessions").write_bytes(b"longer table")
    entries = stream_manifest(info)
    assert entries == snapshot_stream.build_manifest(info.path)
