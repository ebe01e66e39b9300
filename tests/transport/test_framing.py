"""Framing: partial reads, many frames per read, hostile lengths."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from zraft.transport.errors import FrameTooLarge
from zraft.transport.framing import HEADER, FrameDecoder, frame


def test_byte_by_byte_feed_yields_each_frame_once():
    bodies = [b"a", b"bc" * 100, bytes(range(256)), b"z"]
    stream = b"".join(frame(b) for b in bodies)
    dec = FrameDecoder()
    got = []
    for i in range(len(stream)):
        got.extend(dec.feed(stream[i : i + 1]))
    assert got == bodies
    assert dec.pending() == 0


def test_many_frames_in_one_read_and_random_chunking():
    rng = random.Random(7)
    bodies = [rng.randbytes(rng.randint(1, 3000)) for _ in range(300)]
    stream = b"".join(frame(b) for b in bodies)
    assert FrameDecoder().feed(stream) == bodies
    for _ in range(20):
        dec = FrameDecoder()
        got, pos = [], 0
        while pos < len(stream):
            step = rng.randint(1, 9000)
            got.extend(dec.feed(memoryview(stream)[pos : pos + step]))
            pos += step
        assert got == bodies


def test_partial_header_waits():
    dec = FrameDecoder()
    assert dec.feed(b"\x00\x00") == []
    assert dec.pending() == 2
    assert dec.feed(b"\x00\x01") == []
    assert dec.feed(b"x") == [b"x"]


@pytest.mark.parametrize("length", [2**32 - 1, 64 * 1024 * 1024 + 1, 0])
def test_huge_or_zero_length_rejected_from_the_header_alone(length):
    dec = FrameDecoder()
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge):
            dec.feed(HEADER.pack(length) + b"abc")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024  # nothing near the announced size was allocated


def test_max_frame_size_is_configurable():
    dec = FrameDecoder(max_frame_size=10)
    assert dec.feed(frame(b"x" * 10)) == [b"x" * 10]
    with pytest.raises(FrameTooLarge):
        dec.feed(frame(b"x" * 11))
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_size=0)


def test_frame_refuses_empty_body():
    with pytest.raises(ValueError):
        frame(b"")
