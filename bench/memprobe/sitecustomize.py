"""Memory probe for bench runs (never part of the product): put this directory on a node's
PYTHONPATH and set ZRAFT_MEMPROBE_OUT=DIR; SIGUSR2 then writes DIR/<pid>-<n>.json with
RSS/USS (psutil), glibc ``mallinfo2`` (heap in use / free / mmapped), Python's object
allocator totals and, if tracemalloc runs (``PYTHONTRACEMALLOC=25``), the top allocation
sites. ``ZRAFT_MEMPROBE_TRIM=1`` calls ``malloc_trim(0)`` after the first reading and
takes a second one (how much of RSS is free heap that glibc kept).

``ZRAFT_PROBE_CONNECT_AT_START=1`` (measuring only, until the node does it itself): after
``Node.start`` the node calls ``transport.connect`` for the members of its groups, so the
effect of dialing peers at start on W5's catch-up can be measured."""

from __future__ import annotations

import os

if os.environ.get("ZRAFT_MEMPROBE_OUT"):
    import ctypes
    import gc
    import json
    import signal
    import sys
    import threading
    import tracemalloc

    _OUT = os.environ["ZRAFT_MEMPROBE_OUT"]
    _libc = ctypes.CDLL("libc.so.6")

    class _MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    _libc.mallinfo2.restype = _MallInfo2

    def _reading() -> dict:
        import psutil
        full = psutil.Process().memory_full_info()
        mi = _libc.mallinfo2()
        out = {"rss_mb": full.rss / 2**20, "uss_mb": full.uss / 2**20,
               "heap_arena_mb": mi.arena / 2**20, "heap_in_use_mb": mi.uordblks / 2**20,
               "heap_free_mb": mi.fordblks / 2**20, "mmapped_mb": mi.hblkhd / 2**20,
               "mmapped_blocks": mi.hblks, "top_pad_mb": mi.keepcost / 2**20,
               "py_blocks": sys.getallocatedblocks(), "gc_objects": len(gc.get_objects()),
               "threads": threading.active_count(), "modules": len(sys.modules)}
        return out

    _count = [0]

    def _dump() -> None:
        _count[0] += 1
        counter = _count
        gc.collect()
        doc = {"pid": os.getpid(), "argv": sys.argv, "before_trim": _reading()}
        if tracemalloc.is_tracing():
            snap = tracemalloc.take_snapshot()
            cur, peak = tracemalloc.get_traced_memory()
            doc["traced_mb"], doc["traced_peak_mb"] = cur / 2**20, peak / 2**20
            doc["top_lines"] = [[str(s.traceback[0]), s.size / 2**20, s.count]
                                for s in snap.statistics("lineno")[:25]]
            doc["top_traces"] = [[[str(f) for f in s.traceback][:8], s.size / 2**20, s.count]
                                 for s in snap.statistics("traceback")[:12]]
        if os.environ.get("ZRAFT_MEMPROBE_TRIM"):
            import time
            t0 = time.perf_counter()
            _libc.malloc_trim(0)
            doc["trim_ms"] = (time.perf_counter() - t0) * 1e3
            doc["after_trim"] = _reading()
        path = os.path.join(_OUT, f"{os.getpid()}-{counter[0]}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(path + ".tmp", path)

    def _on_signal(signum, frame) -> None:
        threading.Thread(target=_dump, daemon=True, name="memprobe").start()

    signal.signal(signal.SIGUSR2, _on_signal)


if os.environ.get("ZRAFT_PROBE_CONNECT_AT_START"):
    def _patch_node_start() -> None:
        from zraft.ids import PeerId
        from zraft.node import server

        original = server.Node.start

        def start(self) -> None:  # the proposed change to Node.start, as a wrapper
            members: set = set()
            for storage in self._preopened.values():
                _index, conf = storage.config_at(storage.last_index())
                members.update(PeerId.parse(p).node for p in (*conf.old, *conf.new))
            original(self)
            self.transport.connect(members)

        server.Node.start = start

    import contextlib

    with contextlib.suppress(Exception):  # zraft not importable: nothing to patch
        _patch_node_start()
