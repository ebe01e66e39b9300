"""Heap trimming after snapshots: rate-limited, deferred (never lost), harmless."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psutil
import pytest

from zraft.backends.dict import DictBackend
from zraft.fsm import heap_trim
from zraft.fsm.heap_trim import HeapTrimmer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_request_trims_at_once_then_at_most_once_per_interval() -> None:
    calls: list[float] = []
    clock = Clock()
    t = HeapTrimmer(lambda: calls.append(clock.now), min_interval=60.0, clock=clock)
    t.request()
    assert calls == [100.0]
    clock.now = 101.0
    t.request()
    t.request()
    assert calls == [100.0]  # deferred: one timer for the burst
    assert t._timer is not None
    t.cancel()
    clock.now = 161.0
    t.request()
    assert calls == [100.0, 161.0]


def test_a_request_inside_the_interval_is_carried_out_later() -> None:
    done = threading.Event()
    t = HeapTrimmer(done.set, min_interval=0.2)
    t.request()
    done.clear()
    t.request()  # within the interval: not now, but not lost
    assert not done.is_set()
    assert done.wait(5.0)
    assert t.trims == 2


def test_a_failing_trim_never_reaches_the_caller() -> None:
    def boom() -> None:
        raise OSError("no")

    HeapTrimmer(boom).request()


def test_disabled_when_there_is_no_trim_function() -> None:
    t = HeapTrimmer(None)
    assert not t.enabled
    t.request()
    assert t.trims == 0


def test_env_switch_turns_it_off(monkeypatch) -> None:
    monkeypatch.setenv("ZRAFT_MALLOC_TRIM", "0")
    assert heap_trim._glibc_trim() is None


@pytest.mark.skipif(heap_trim._glibc_trim() is None, reason="needs glibc malloc_trim")
def test_glibc_trim_returns_freed_heap_to_the_os() -> None:
    proc = psutil.Process()
    blocks = [os.urandom(4096) for _ in range(20_000)]  # ~80 MB of heap blocks
    keep = blocks[::64]  # a few survivors pin the heap top: plain free() cannot shrink it
    del blocks
    before = proc.memory_info().rss
    heap_trim._glibc_trim()()  # type: ignore[misc]
    after = proc.memory_info().rss
    assert before - after > 20 * 2**20, (before, after)
    del keep


def test_snapshot_install_and_write_ask_for_a_trim(tmp_path: Path, monkeypatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr("zraft.backends.dict.request_trim", lambda: asked.append("install"))
    monkeypatch.setattr("zraft.fsm.snapshot.request_trim", lambda: asked.append("write"))
    from zraft.fsm.snapshot import SnapshotImage

    b = DictBackend()
    b.init("p")
    b.apply(["k", 1])
    SnapshotImage(1, 1, 0, b"", b.snapshot()).write(tmp_path)
    b.snapshot_done()
    other = DictBackend()
    other.init("q")
    other.install_snapshot(tmp_path / "data")
    assert asked == ["write", "install"]
    assert other.get("k") == 1


_ARENAS_PROBE = """
import ctypes, sys, threading
from zraft.fsm.heap_trim import limit_arenas
if sys.argv[1] == "limit":
    assert limit_arenas(1)
keep = []
def work():
    keep.append([bytes(2000) for _ in range(2000)])
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL("libc.so.6").malloc_stats()
"""


@pytest.mark.skipif(heap_trim._glibc_trim() is None, reason="needs glibc malloc")
def test_limit_arenas_keeps_every_thread_in_one_arena(tmp_path: Path) -> None:
    import subprocess
    import sys

    def arenas(mode: str) -> int:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        out = subprocess.run([sys.executable, "-c", _ARENAS_PROBE, mode], capture_output=True,
                             text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
                             check=True, env=env)
        return sum(1 for line in out.stderr.splitlines() if line.startswith("Arena "))

    assert arenas("default") > 1  # threads got arenas of their own
    assert arenas("limit") == 1
