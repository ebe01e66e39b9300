"""Raft metadata: atomic replace, crash leftovers, peer listing, directory names."""

from __future__ import annotations

import logging
import os

import pytest

from zraft.core.entries import DATA, ClusterConfig, Entry, HardState, SnapshotMeta
from zraft.storage import CorruptMetaError, DiskLogStorage, RaftMeta, list_peers
from zraft.storage.meta import META_FILE, META_TMP, encode_meta, read_meta, write_meta
from zraft.storage.naming import peer_dir_name


def sample_meta(**kw) -> RaftMeta:
    base = dict(peer_id="p1@10.0.0.1:9000", backend="dict", term=4, vote="p2@10.0.0.2:9000",
                snapshot=SnapshotMeta(9, 3, 2, ClusterConfig.joint(["a"], ["a", "b"])))
    base.update(kw)
    return RaftMeta(**base)


def test_meta_round_trip(tmp_path):
    meta = sample_meta(removed=True)
    write_meta(tmp_path, meta)
    got = read_meta(tmp_path)
    assert got == meta
    assert got.first_index == 10
    assert got.hard_state == HardState(4, "p2@10.0.0.2:9000")
    assert not (tmp_path / META_TMP).exists()


def test_meta_write_is_atomic_replace_with_fsyncs(tmp_path, monkeypatch):
    write_meta(tmp_path, sample_meta(term=1))
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def recording_replace(src, dst) -> None:
        # at rename time the temp file is complete and was fsynced
        assert read_meta_bytes_ok(src)
        assert synced, "temp file must be fsynced before the rename"
        replaced.append((os.path.basename(src), os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    write_meta(tmp_path, sample_meta(term=2))
    assert replaced == [(META_TMP, META_FILE)]
    assert len(synced) == 2  # the temp file, then the directory
    assert read_meta(tmp_path).term == 2


def read_meta_bytes_ok(path) -> bool:
    with open(path, "rb") as fh:
        return fh.read() == encode_meta(sample_meta(term=2))


def test_crash_before_rename_keeps_old_meta(tmp_path, caplog):
    store = DiskLogStorage.open(tmp_path, "p1@10.0.0.1:9000")
    store.set_hard_state(HardState(3, None))
    store.close()
    # simulated crash during a later write: a temp file (complete or torn) is left behind
    torn = encode_meta(sample_meta(term=99))[:17]
    (store.peer_path / META_TMP).write_bytes(torn)
    with caplog.at_level(logging.WARNING, logger="zraft.storage"):
        reopened = DiskLogStorage.open(tmp_path, "p1@10.0.0.1:9000")
    assert reopened.initial_state()[0] == HardState(3, None)
    assert not (store.peer_path / META_TMP).exists()
    assert "unfinished metadata write" in caplog.text
    reopened.close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "magic", "trailing"])
def test_damaged_meta_is_detected(tmp_path, damage):
    write_meta(tmp_path, sample_meta())
    path = tmp_path / META_FILE
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[-5] ^= 0xFF
    elif damage == "truncate":
        del raw[-3:]
    elif damage == "magic":
        raw[0:2] = b"XX"
    else:
        raw += b"\x00"
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptMetaError) as info:
        read_meta(tmp_path)
    assert str(path) in str(info.value)


def test_list_peers_skips_empty_dirs_with_a_warning(tmp_path, caplog):
    for peer in ("a@h:1", "b@h:2"):
        DiskLogStorage.open(tmp_path, peer, backend="dict").close()
    (tmp_path / "junk-dir").mkdir()
    (tmp_path / "stray-file").write_text("x")
    with caplog.at_level(logging.WARNING, logger="zraft.storage"):
        peers = list_peers(tmp_path)
    assert sorted(m.peer_id for m in peers) == ["a@h:1", "b@h:2"]
    assert all(m.backend == "dict" for m in peers)
    assert "junk-dir" in caplog.text
    assert list_peers(tmp_path / "nothing-here") == []


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "unreadable"])
def test_list_peers_refuses_a_peer_whose_metadata_is_damaged(tmp_path, damage):
    # a node that skipped such a peer would start without its data and say "ready"
    store = DiskLogStorage.open(tmp_path, "c@h:3", backend="dict")
    store.append([Entry(1, 1, DATA, b"x", 0)])
    store.close()
    path = tmp_path / peer_dir_name("c@h:3") / META_FILE
    if damage == "garbage":
        path.write_bytes(b"nonsense")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-5])
    elif damage == "missing":
        path.unlink()
    else:
        path.chmod(0)
        if os.access(path, os.R_OK):  # root reads anything: make it a directory instead
            path.chmod(0o600)
            path.unlink()
            path.mkdir()
    with pytest.raises(CorruptMetaError) as info:
        list_peers(tmp_path)
    assert str(path) in str(info.value)


def test_peer_dir_name_is_safe_and_deterministic():
    a = peer_dir_name("node1@127.0.0.1:7000")
    assert a == peer_dir_name("node1@127.0.0.1:7000")
    assert a.startswith("node1-") and len(a.split("-")[-1]) == 12
    assert a != peer_dir_name("node1@127.0.0.1:7001")
    weird = peer_dir_name("../evil/ name:*?@h:1")
    assert "/" not in weird and " " not in weird and not weird.startswith(".")
    assert peer_dir_name("x" * 500 + "@h:1").startswith("x" * 32 + "-")
    assert peer_dir_name("a/b@h:1") != peer_dir_name("a_b@h:1")
    assert peer_dir_name("@h:1").startswith("peer-")
