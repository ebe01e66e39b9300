"""The backup file and ``zraft snapshot restore`` without nodes: a file written by
``BackupWriter`` round-trips; every damage (truncation anywhere, a flipped byte in a body,
the header or the checksum, trailing bytes, another file) is refused by ``restore`` with
one line on stderr and exit 2, and nothing is written; a restore into a directory that
holds anything is refused the same way; a good restore seeds peers whose storage opens at
the backup's snapshot point with the new cluster id and the operator's peers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgpack
import pytest

from zraft import cli
from zraft.backup.fileformat import (
    MAGIC,
    BackupCorrupt,
    BackupFile,
    BackupHeader,
    BackupWriter,
    read_backup,
)
from zraft.core.entries import ClusterConfig
from zraft.storage import DiskLogStorage, SnapshotStore

FILES = {"sessions": b"S" * 10, "data/state": bytes(range(256)) * 9}


def _write(path: Path, files: dict[str, bytes] = FILES) -> BackupHeader:
    header = BackupHeader(
        "srcid", 42, 3, 40, (("zraft@127.0.0.1:9001",), ()), "dict", "zraft@127.0.0.1:9001",
        1_700_000_000_000,
        tuple(BackupFile(p, len(d), hashlib.sha256(d).hexdigest()) for p, d in files.items()))
    w = BackupWriter(path, header)
    for data in files.values():
        w.write(data)
    w.finish()
    return header


def _restore(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["snapshot", "restore", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_written_backup_reads_back(tmp_path: Path) -> None:
    header = _write(tmp_path / "b.zrb")
    assert read_backup(tmp_path / "b.zrb") == header
    assert not (tmp_path / "b.zrb.tmp").exists()
    assert (tmp_path / "b.zrb").read_bytes().startswith(MAGIC)


def _damaged(raw: bytes) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, the expected message after 'FILE: ')."""
    n = int.from_bytes(raw[8:12], "big")
    body = 12 + n
    return {
        "empty": (b"", "not a zraft backup (bad magic)"),
        "other file": (b"PK\x03\x04" + raw[4:], "not a zraft backup (bad magic)"),
        "cut in header": (raw[: 12 + n // 2], "truncated (in the header)"),
        "cut in body": (raw[: body + 100], f"truncated: {body + 100} bytes, "
                                           f"expected {len(raw)}"),
        "cut checksum": (raw[:-1], f"truncated: {len(raw) - 1} bytes, expected {len(raw)}"),
        "trailing": (raw + b"x", "1 unexpected bytes at the end"),
        "flipped body": (raw[: body + 20] + bytes([raw[body + 20] ^ 1]) + raw[body + 21:],
                         "checksum mismatch in data/state"),
        "flipped checksum": (raw[:-1] + bytes([raw[-1] ^ 1]), "checksum mismatch"),
        "header length": (raw[:8] + (1 << 30).to_bytes(4, "big") + raw[12:],
                          "header too large"),
        "header garbage": (raw[:12] + b"\xc1" * n + raw[body:], "unreadable header "
                                                                 "(FormatError)"),
    }


@pytest.mark.parametrize("case", list(_damaged(b"\x00" * 200)))
def test_restore_refuses_a_damaged_file_with_one_line_and_exit_2(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path / "good.zrb")
    data, message = _damaged((tmp_path / "good.zrb").read_bytes())[case]
    bad = tmp_path / "bad.zrb"
    bad.write_bytes(data)
    for extra in ([], ["--peers", "zraft@127.0.0.1:9001", "--member", "zraft@127.0.0.1:9001"]):
        code, out, err = _restore(capsys, str(bad), "--dir", str(tmp_path / "new"), *extra)
        assert (code, out, err) == (2, "", f"zraft snapshot restore: {bad}: {message}\n")
        assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())


def test_header_paths_and_shapes_are_checked(tmp_path: Path) -> None:
    for path in ("../x", "/etc/passwd", "data/../../x", "a//b", ""):
        raw = MAGIC
        doc = {"format": 1, "cluster_id": "c", "index": 1, "term": 1, "config_index": 1,
               "config": [["p@h:1"], []], "backend": "dict", "source": "p@h:1",
               "created_ms": 0, "files": [[path, 0, "0" * 64]]}
        packed = msgpack.packb(doc)
        raw += len(packed).to_bytes(4, "big") + packed
        raw += hashlib.sha256(raw).digest()
        (tmp_path / "p.zrb").write_bytes(raw)
        with pytest.raises(BackupCorrupt, match="bad file path in header"):
            read_backup(tmp_path / "p.zrb")


def test_restore_refuses_a_directory_that_holds_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path / "b.zrb")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep").write_text("x")
    code, out, err = _restore(capsys, str(tmp_path / "b.zrb"), "--dir", str(tmp_path / "busy"))
    assert (code, out) == (2, "")
    assert err == (f"zraft snapshot restore: {tmp_path / 'busy'} is not empty: restore into a "
                   f"new directory\n")
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["keep"]
    code, out, err = _restore(capsys, str(tmp_path / "b.zrb"), "--dir", str(tmp_path / "d"),
                              "--peers", "a@127.0.0.1:1,b@127.0.0.1:2")
    assert (code, err) == (2, "zraft snapshot restore: --peers needs --member PEER: the "
                              "member this directory is for\n")
    code, out, err = _restore(capsys, str(tmp_path / "b.zrb"), "--dir", str(tmp_path / "d"),
                              "--peers", "a@127.0.0.1:1", "--member", "c@127.0.0.1:3")
    assert (code, err) == (2, "zraft snapshot restore: --member c@127.0.0.1:3 is not one of "
                              "--peers\n")


def test_a_restored_member_opens_at_the_backup_point(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path / "b.zrb")
    peers = ["a@127.0.0.1:1", "b@127.0.0.1:2", "c@127.0.0.1:3"]
    ids = set()
    for peer in peers:
        data = tmp_path / peer[0]
        code, out, err = _restore(capsys, str(tmp_path / "b.zrb"), "--dir", str(data),
                                  "--peers", ",".join(reversed(peers)), "--member", peer,
                                  "--json")
        assert code == 0, err
        ids.add(json.loads(out)["new_cluster_id"])
        storage = DiskLogStorage.open(data, peer)
        try:
            snap = storage.snapshot_meta()
            assert (snap.index, snap.term) == (42, 3)
            assert snap.config == ClusterConfig.stable(peers)
            assert storage.last_index() == 42 and storage.meta.term == 3
            assert storage.meta.cluster_id not in ("", "srcid")
        finally:
            storage.close()
        info = SnapshotStore.for_peer(data, peer).latest()
        assert info is not None and info.meta == snap
        assert {f.path: f.size for f in info.files} == {p: len(d) for p, d in FILES.items()}
        assert (info.path / "data" / "state").read_bytes() == FILES["data/state"]
    assert len(ids) == 1  # every member derives the same new cluster id
