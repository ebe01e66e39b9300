"""Dict backend snapshot format 3: chunked, written and read in bounded memory; formats 1
and 2 stay readable; damage anywhere is refused."""

from __future__ import annotations

import os
import tracemalloc
import zlib
from pathlib import Path

import pytest

from zraft.backends import dict as dict_backend
from zraft.backends.dict import STATE_FILE, DictBackend, read_state
from zraft.fsm import SnapshotCorrupted
from zraft.fsm.codec import packer, unpacker


def _backend() -> DictBackend:
    b = DictBackend()
    b.init("p1@127.0.0.1:9000")
    return b


def _write(backend: DictBackend, directory: Path) -> None:
    backend.snapshot().write(directory)
    backend.snapshot_done()


def _stream_objects(path: Path) -> list:
    raw = path.read_bytes()
    stream = unpacker(max_buffer_size=2**31 - 1)
    stream.feed(raw[len(dict_backend._MAGIC) : -dict_backend._CRC.size])
    return list(stream)


def _seal(path: Path, body: bytes) -> None:
    """A file with a valid magic and CRC around ``body``."""
    path.write_bytes(dict_backend._MAGIC + body + dict_backend._CRC.pack(zlib.crc32(body)))


def test_large_state_is_written_in_bounded_chunks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(dict_backend, "CHUNK_BYTES", 64 * 1024)
    b = _backend()
    for i in range(300):
        b.apply([f"k{i}", os.urandom(1024)])
    b.apply_in_session(["t1", 1], "s1")
    b.apply_in_session(["t2", 2], "s2")
    _write(b, tmp_path)
    header, *chunks = _stream_objects(tmp_path / STATE_FILE)
    assert header == [3, 301 + 1, 2]
    data_chunks = chunks[:-1]
    assert len(data_chunks) >= 4  # 300 KB of values in chunks of ~64 KB
    assert sum(len(c) for c in data_chunks) == 302
    assert all(len(packer().pack(c)) < 3 * 64 * 1024 for c in data_chunks)
    restored = _backend()
    restored.install_snapshot(tmp_path)
    assert restored.items() == b.items()
    assert restored.owner_of("t2") == "s2"
    assert restored.expire_session("s1") == ["t1"]


def test_empty_state_round_trips(tmp_path: Path) -> None:
    _write(_backend(), tmp_path)
    assert _stream_objects(tmp_path / STATE_FILE) == [[3, 0, 0]]
    restored = _backend()
    restored.apply(["x", 1])
    restored.install_snapshot(tmp_path)
    assert restored.size() == 0


def _traced_peak(fn) -> tuple[int, int]:
    """(peak bytes above the start, bytes still held at the end) while ``fn`` runs."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        current, peak = tracemalloc.get_traced_memory()
        del result
        return peak - base, current - base
    finally:
        tracemalloc.stop()


def test_writing_does_not_copy_the_whole_state(tmp_path: Path) -> None:
    b = _backend()
    value_bytes = 2000 * 8192  # 16 MB of values
    for i in range(2000):
        b.apply([f"k{i}", os.urandom(8192)])
    peak, _ = _traced_peak(lambda: _write(b, tmp_path))
    # format 2 packed everything at once: a buffer and a bytes copy, > 2 x 16 MB
    assert peak < 8 * 2**20, peak
    assert (tmp_path / STATE_FILE).stat().st_size > value_bytes


def test_reading_needs_little_beyond_the_state_itself(tmp_path: Path) -> None:
    b = _backend()
    for i in range(2000):
        b.apply([f"k{i}", os.urandom(8192)])
    _write(b, tmp_path)
    path = tmp_path / STATE_FILE
    peak, held = _traced_peak(lambda: read_state(path))
    # reading the file at once and unpacking it cost the state plus 2 x the file
    assert held > 16_000_000
    assert peak - held < 8 * 2**20, (peak, held)


def test_format_2_snapshots_stay_readable(tmp_path: Path) -> None:
    pack = packer()
    body = pack.pack([2, 2, 1]) + pack.pack([["a", 1], [["t", 1], b"v"]])
    body += pack.pack([["sid-1", [["t", 1]]]])
    _seal(tmp_path / STATE_FILE, body)
    b = _backend()
    b.install_snapshot(tmp_path)
    assert b.query("a").value == 1 and b.query(("t", 1)).value == b"v"
    assert b.expire_session("sid-1") == [("t", 1)]


@pytest.mark.parametrize("case", ["count_high", "count_low", "trailing", "cut_object",
                                  "empty_chunk", "not_a_chunk", "bad_version"])
def test_sealed_but_malformed_streams_are_refused(tmp_path: Path, case: str) -> None:
    """Valid magic and CRC, wrong content: refused, and the current state is kept."""
    pack = packer()
    header = [3, 2, 0]
    chunks = [pack.pack([["a", 1]]), pack.pack([["b", 2]])]
    if case == "count_high":
        header = [3, 3, 0]
    elif case == "count_low":
        header = [3, 1, 0]
    elif case == "trailing":
        chunks.append(pack.pack(["extra"]))
    elif case == "cut_object":
        chunks.append(pack.pack([["c", b"x" * 100]])[:-10])
    elif case == "empty_chunk":
        chunks.insert(0, pack.pack([]))
    elif case == "not_a_chunk":
        chunks[0] = pack.pack("a")
    else:
        header = [4, 2, 0]
    _seal(tmp_path / STATE_FILE, pack.pack(header) + b"".join(chunks))
    b = _backend()
    b.apply(["mine", 1])
    with pytest.raises(SnapshotCorrupted):
        b.install_snapshot(tmp_path)
    assert b.items() == [("mine", 1)]


@pytest.mark.parametrize("where", [0.1, 0.5, 0.99])
def test_damage_anywhere_in_a_multi_chunk_file_is_refused(tmp_path: Path, monkeypatch,
                                                          where: float) -> None:
    monkeypatch.setattr(dict_backend, "READ_BLOCK", 4096)  # damage lands in a later block
    b = _backend()
    for i in range(100):
        b.apply([f"k{i}", bytes(1000)])
    _write(b, tmp_path)
    path = tmp_path / STATE_FILE
    raw = bytearray(path.read_bytes())
    raw[int(len(raw) * where)] ^= 0x01  # inside a value: parses fine, only the CRC sees it
    path.write_bytes(bytes(raw))
    with pytest.raises(SnapshotCorrupted, match=r"checksum|corrupt"):
        read_state(path)
