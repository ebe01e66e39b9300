"""Measurements, printed and never asserted (a timing floor fails on a loaded machine: one
run here saw decode at 1/150 of its quiet rate): codec rates for AppendEntries batches and
loopback frames/s. Run with ``-s`` to see the figures; bench/ is where figures are judged."""

from __future__ import annotations

import sys
import time

from tests.transport.helpers import COOKIE, Inbox, wait_for
from zraft.core.entries import DATA, Entry
from zraft.core.messages import AppendEntries, AppendReply
from zraft.transport import codec
from zraft.transport.tcp import TcpTransport


def batch(n: int, size: int = 100, prev: int = 0) -> AppendEntries:
    ents = [Entry(prev + i, 7, DATA, b"x" * size, 1_700_000_000_000 + i) for i in range(1, n + 1)]
    return AppendEntries(7, "a@127.0.0.1:1", "b@127.0.0.1:2", prev, 7, ents, prev, 3)


def python_calls(fn) -> int:
    """Python-level function calls made while running ``fn`` (C calls not counted)."""
    count = 0

    def prof(frame, event, arg):
        nonlocal count
        if event == "call":
            count += 1

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count


def test_encode_does_no_per_entry_python_work():
    small, large = batch(10), batch(1000)
    codec.encode(small)  # warm the thread's packer
    assert python_calls(lambda: codec.encode(large)) == python_calls(lambda: codec.encode(small))


def _rate(fn, seconds: float = 0.5) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def test_codec_rates(capsys):
    msg = batch(1000)
    body = codec.encode(msg)
    enc = _rate(lambda: codec.encode(msg))
    dec = _rate(lambda: codec.decode(body))
    raw = _rate(lambda: codec.unpack(body))
    with capsys.disabled():
        print(
            f"\n[codec] AppendEntries 1000 x 100 B ({len(body) / 1e3:.0f} kB): "
            f"encode {enc:.0f}/s = {enc * 1000 / 1e6:.2f} M entries/s "
            f"({enc * len(body) / 1e6:.0f} MB/s); decode+validate {dec:.0f}/s = "
            f"{dec * 1000 / 1e6:.2f} M entries/s; bare msgpack unpack {raw:.0f}/s"
        )
    assert enc > 0 and dec > 0 and raw > 0


def test_loopback_frames_per_second(capsys):
    inbox = Inbox()
    a = TcpTransport(COOKIE, Inbox())
    b = TcpTransport(COOKIE, inbox)
    a.start()
    b.start()
    try:
        n = 50_000
        reply = codec.encode_frame(AppendReply(7, "b@x", "a@y", True, 1, 0, 0, 1))
        a.send(b.address, reply)
        inbox.wait_count(1)
        start = time.perf_counter()
        for i in range(n):
            a.send(b.address, reply)
            if i % 2000 == 0:  # the caller's flow control (a node caps messages in flight)
                wait_for(lambda: a.link_state(b.address)["queued"] < 4000, interval=0.0005)
        inbox.wait_count(n + 1, timeout=60)
        small = n / (time.perf_counter() - start)
        calls = len(inbox.calls)

        batches, per = 500, 100
        start = time.perf_counter()
        for i in range(batches):
            a.send(b.address, batch(per, prev=i * per))
        inbox.wait_count(n + 1 + batches, timeout=60)
        big = batches * per / (time.perf_counter() - start)
        with capsys.disabled():
            print(
                f"\n[loopback] {small:.0f} small frames/s (AppendReply, {n} frames in "
                f"{calls - 1} callbacks); AppendEntries 100 x 100 B: {big:.0f} entries/s "
                "(encode in caller, decode+validate in reader)"
            )
        assert calls > 1 and big > 0
        assert a.link_state(b.address)["dropped"] == 0
    finally:
        a.close()
        b.close()
