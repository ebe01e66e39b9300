"""Disk full everywhere (issue 11 section 2): each node's data directory is a small tmpfs
that fills up. Clients must get an error that says the cluster cannot write
(``StorageFailed`` naming ENOSPC), not only timeouts; the peers must wait and retry (no
crash loop: same processes, no restarts), and writes work again once space is freed."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

import zraft
from zraft.client import api
from zraft.cluster.local import wait_until
from zraft.errors import ZRaftError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _root() -> bool:
    return subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() == "0"


def _fill(directory: Path) -> Path:
    """Fill the file system holding ``directory``; returns the filler file."""
    filler = directory / "filler"
    chunk = b"\xff" * 4096
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, chunk)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.skipif(not _root(), reason="needs root to mount a small tmpfs per node")
def test_disk_full_everywhere_says_so_and_recovers(make_cluster) -> None:
    mounts: list[Path] = []
    h = make_cluster(3, create=False, extra_raft={"max_segment_size": 65536})
    cluster = h.cluster
    cluster.stop()
    try:
        for n in cluster.nodes:
            data = n.directory / "data"
            data.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(data)],
                           check=True)
            mounts.append(data)
        cluster.start()
        h.create()
        pids = [n.pid for n in cluster.nodes]
        assert h.write(["before", 1]) == "ok"
        fillers = [_fill(m) for m in mounts]
        error: ZRaftError | None = None
        deadline = time.monotonic() + 60
        i = 0
        while time.monotonic() < deadline:
            try:
                _result, h.session = api.write(h.session, [f"k{i}", "x" * 2000], timeout=3,
                                              pool=h.pool)
                i += 1
            except zraft.StorageFailed as exc:
                error = exc
                break
            except ZRaftError:
                continue  # elections while the peers step out; the error must follow
        assert error is not None, f"no StorageFailed after {i} writes"
        assert "No space left on device" in str(error), error
        print(f"after {i} writes: {error}")
        # the peers wait instead of crash-looping: same processes, never restarted
        assert [n.pid for n in cluster.nodes] == pids
        failed = [h.stat(n.index).get("storage_failed") for n in cluster.nodes]
        assert any(failed), failed
        for n in cluster.nodes:
            text = (n.directory / "log" / "console.log").read_text()
            assert "restarting child" not in text
        for filler in fillers:
            filler.unlink()
        wait_until(lambda: _writes(h), 60, "writes to work again once space is freed")
        assert h.query("before") == 1
    finally:
        cluster.stop()
        for m in mounts:
            subprocess.run(["umount", "-l", str(m)], check=False)


def _writes(h) -> bool:
    try:
        return h.write(["after", 2], timeout=2) == "ok"
    except ZRaftError:
        return False
