"""Snapshot transfer with the sha256s sent after the data (hashed while sending) and the
receiver hashing on a second thread: integrity, authentication, threads, timings."""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

import pytest

from tests.transport.helpers import COOKIE, TamperProxy, wait_for
from zraft.transport import snapshot_files as sf
from zraft.transport import snapshot_stream as ss
from zraft.transport.errors import SnapshotTransferError
from zraft.transport.snapshot_stream import (
    ManifestEntry,
    SnapshotReceiver,
    build_manifest,
    send_snapshot,
)

LOOP = "127.0.0.1"
BIG = 5 * 1024 * 1024 + 123  # over PIPELINE_MIN: received through the hashing thread


@pytest.fixture(autouse=True, params=["splice", "copy"])
def receive_path(request, monkeypatch) -> str:
    """Every test runs with the kernel splice path and with the buffer-copy path."""
    if request.param == "splice" and not hasattr(os, "splice"):
        pytest.skip("no os.splice here")
    monkeypatch.setattr(sf, "USE_SPLICE", request.param == "splice")
    return request.param


def receiver(dest: Path) -> tuple[SnapshotReceiver, str, int]:
    rx = SnapshotReceiver(dest, COOKIE, "follower", listen_addr=LOOP)
    host, port = rx.start()
    return rx, host, port


def tree(root: Path) -> dict[str, bytes]:
    files = {"data/state": os.urandom(BIG), "data/empty": b"", "sessions": b"s" * 100}
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    return files


def hash_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t.name in ("zraft-snap-hash", "zraft-snap-digest")]


def test_default_send_puts_digests_after_the_data(tmp_path: Path, monkeypatch) -> None:
    manifests: list = []
    real = ss._check_manifest
    monkeypatch.setattr(ss, "_check_manifest", lambda raw, cap: manifests.append(raw)
                        or real(raw, cap))
    files = tree(tmp_path / "src")
    before = ss.STATS.snapshot()
    rx, host, port = receiver(tmp_path / "dest")
    send_snapshot(tmp_path / "src", host, port, COOKIE, "leader")
    rx.wait(30)
    assert {p: (tmp_path / "dest" / p).read_bytes() for p in files} == files
    assert manifests == [[["data/empty", 0], ["data/state", BIG], ["sessions", 100]]]
    assert build_manifest(tmp_path / "dest") == build_manifest(tmp_path / "src")
    after = ss.STATS.snapshot()
    for name in ("sendfile_seconds", "send_seconds", "receive_seconds", "receive_sync_seconds"):
        assert after[name] > before[name], name
    assert after["sendfile_bytes"] - before["sendfile_bytes"] == BIG + 100
    wait_for(lambda: not hash_threads())


def test_a_given_manifest_still_carries_the_digests_up_front(tmp_path: Path) -> None:
    files = tree(tmp_path / "src")
    rx, host, port = receiver(tmp_path / "dest")
    send_snapshot(tmp_path / "src", host, port, COOKIE, "leader",
                  manifest=build_manifest(tmp_path / "src"))
    rx.wait(30)
    assert (tmp_path / "dest" / "data" / "state").read_bytes() == files["data/state"]


def test_a_byte_flipped_in_a_pipelined_file_is_caught(tmp_path: Path) -> None:
    tree(tmp_path / "src")
    rx, host, port = receiver(tmp_path / "dest")
    proxy = TamperProxy((host, port), flip_at=3 * 1024 * 1024)  # inside data/state
    try:
        with pytest.raises(SnapshotTransferError, match="sha256 mismatch"):
            send_snapshot(tmp_path / "src", LOOP, proxy.port, COOKIE, "leader")
        with pytest.raises(SnapshotTransferError, match="sha256"):
            rx.wait(10)
    finally:
        proxy.close()
    assert not (tmp_path / "dest").exists()
    wait_for(lambda: not hash_threads())


def test_a_cut_in_a_pipelined_file_leaves_nothing_and_no_thread(tmp_path: Path) -> None:
    tree(tmp_path / "src")
    rx, host, port = receiver(tmp_path / "dest")
    proxy = TamperProxy((host, port), cut_at=2 * 1024 * 1024)
    try:
        with pytest.raises(SnapshotTransferError):
            send_snapshot(tmp_path / "src", LOOP, proxy.port, COOKIE, "leader", io_timeout=5)
        with pytest.raises(SnapshotTransferError):
            rx.wait(10)
    finally:
        proxy.close()
    assert not (tmp_path / "dest").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    wait_for(lambda: not hash_threads())


def test_wrong_digests_from_the_sender_are_refused(tmp_path: Path, monkeypatch) -> None:
    """The sender's digests are authenticated but wrong (e.g. its file changed after it was
    hashed): the receiver's own hashes disagree, nothing is installed."""
    tree(tmp_path / "src")
    monkeypatch.setattr(sf.DigestsOf, "result", lambda self, timeout: [b"\x00" * 32] * 3)
    rx, host, port = receiver(tmp_path / "dest")
    with pytest.raises(SnapshotTransferError, match="sha256 mismatch"):
        send_snapshot(tmp_path / "src", host, port, COOKIE, "leader")
    with pytest.raises(SnapshotTransferError):
        rx.wait(10)
    assert not (tmp_path / "dest").exists()


KEY = b"k" * 32
ENTRIES = [ManifestEntry("a", 1, None), ManifestEntry("b", 2, None)]  # type: ignore[arg-type]
OURS = [b"\x01" * 32, b"\x02" * 32]


@pytest.mark.parametrize("frame", [
    ["done"],
    ["done", OURS],
    ["done", OURS, b"x" * 32],  # bad MAC
    ["done", OURS[:1], ss._digests_mac(KEY, OURS[:1])],
    ["done", [b"\x01" * 32, b"\x02" * 31], ss._digests_mac(KEY, [b"\x01" * 32, b"\x02" * 31])],
    ["done", [OURS[1], OURS[0]], ss._digests_mac(KEY, [OURS[1], OURS[0]])],
    ["nope", OURS, ss._digests_mac(KEY, OURS)],
])
def test_bad_done_frames_are_refused(frame) -> None:
    with pytest.raises(SnapshotTransferError):
        SnapshotReceiver._check_done(frame, ENTRIES, OURS, KEY)


def test_a_good_done_frame_passes() -> None:
    SnapshotReceiver._check_done(["done", OURS, ss._digests_mac(KEY, OURS)], ENTRIES, OURS, KEY)
    known = [ManifestEntry("a", 1, OURS[0])]
    SnapshotReceiver._check_done(["done"], known, OURS[:1], KEY)


def test_file_digest_notices_a_file_that_changed_size(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sf.file_digest(path, 3) == __import__("hashlib").sha256(b"abc").digest()
    with pytest.raises(SnapshotTransferError, match="shrank"):
        sf.file_digest(path, 4)
    with pytest.raises(SnapshotTransferError, match="grew"):
        sf.file_digest(path, 2)


def test_the_receive_path_in_use_is_the_one_asked_for(tmp_path: Path, monkeypatch,
                                                      receive_path: str) -> None:
    used: list[str] = []
    real = sf._receive_spliced
    monkeypatch.setattr(sf, "_receive_spliced", lambda *a: used.append("splice") or real(*a))
    files = tree(tmp_path / "src")
    rx, host, port = receiver(tmp_path / "dest")
    send_snapshot(tmp_path / "src", host, port, COOKIE, "leader")
    rx.wait(30)
    assert (tmp_path / "dest" / "data" / "state").read_bytes() == files["data/state"]
    assert used == (["splice"] if receive_path == "splice" else [])


def test_a_stalled_sender_inside_a_spliced_file_hits_the_io_timeout(tmp_path: Path) -> None:
    """The sender stops in the middle of a large file: the receiver gives up after its
    io_timeout (the spliced read waits on the non-blocking socket with that timeout)."""
    import socket as socket_module

    from zraft.transport.frame_auth import FrameAuth
    from zraft.transport.handshake import client_handshake

    rx = SnapshotReceiver(tmp_path / "dest", COOKIE, "follower", listen_addr=LOOP,
                          io_timeout=0.5)
    host, port = rx.start()
    sock = socket_module.create_connection((host, port), timeout=5)
    try:
        auth = client_handshake(sock, COOKIE, "leader", 5.0, role="snapshot")
        files = [["big", BIG]]
        fa = FrameAuth.for_connection(auth.session_key, initiator=True)  # control frames
        ss._send_frame(sock, [files, ss._manifest_mac(auth.session_key, files)], fa)
        assert ss._recv_frame(sock, fa) == ["ready"]
        ss._send_frame(sock, ["big", BIG], fa)
        sock.sendall(b"x" * (2 * 1024 * 1024))  # then nothing more
        with pytest.raises(SnapshotTransferError, match=r"stalled|timed out"):
            rx.wait(10)
    finally:
        sock.close()
    assert not (tmp_path / "dest").exists()
    wait_for(lambda: not hash_threads())


def test_writeback_starts_for_every_chunk_of_a_large_file(tmp_path: Path, monkeypatch) -> None:
    ranges: list[tuple[int, int]] = []
    real = sf.start_writeback
    monkeypatch.setattr(sf, "start_writeback",
                        lambda fd, offset, n: ranges.append((offset, n)) or real(fd, offset, n))
    files = tree(tmp_path / "src")
    rx, host, port = receiver(tmp_path / "dest")
    send_snapshot(tmp_path / "src", host, port, COOKIE, "leader")
    rx.wait(30)
    assert (tmp_path / "dest" / "data" / "state").read_bytes() == files["data/state"]
    ranges.sort()
    assert ranges[0][0] == 0
    assert all(a + n == b for (a, n), (b, _m) in itertools.pairwise(ranges))
    assert sum(n for _a, n in ranges) == BIG


def test_a_forged_control_frame_fails_the_transfer(tmp_path: Path) -> None:
    """The stream's control frames are authenticated like every frame after a handshake: a
    sender whose manifest frame is not sealed (as an on-path relay would inject it) is
    refused before the manifest is even read."""
    import socket as socket_module

    from zraft.transport.handshake import client_handshake

    rx = SnapshotReceiver(tmp_path / "dest", COOKIE, "follower", listen_addr=LOOP,
                          io_timeout=5)
    host, port = rx.start()
    with socket_module.create_connection((host, port), timeout=5) as sock:
        auth = client_handshake(sock, COOKIE, "leader", 5.0, role="snapshot")
        files = [["small", 1]]
        ss._send_frame(sock, [files, ss._manifest_mac(auth.session_key, files)])  # no MAC
        with pytest.raises(SnapshotTransferError, match="failed authentication"):
            rx.wait(10)
    assert not (tmp_path / "dest").exists()
