"""What TLS costs: W1, W2 and W6 (issue 7's workloads) and a snapshot transfer, plaintext
and mutual TLS measured in the same run, with the ratio.

``python -m bench.tls_cost [--scale S] [--repeats N] [--snapshot-mb M]``

Rules: each repeat runs a fresh plaintext cluster then a fresh TLS cluster (``LocalCluster``
with ``tls=True``: mutual TLS, the cookie handshake on top), both driven by the client engine
of ``bench.cpu_cost`` (throughput, p50, CPU microseconds per operation per process). The
snapshot transfer is ``snapshot_stream`` in process over loopback, the same files both ways:
plaintext goes through the kernel's ``sendfile`` and ``splice``; TLS through user space
(read, encrypt, send; receive, decrypt, write), which is what replaces them here (no kernel
TLS before Python 3.12: ``zraft.transport.tls``); received into tmpfs by default, so the
disk's fsync does not hide the stream's cost. Medians over the repeats.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.cpu_cost import measure
from bench.engine import Ops
from bench.sides import ZraftSide
from zraft.cluster.certs import make_cluster_certs
from zraft.transport import snapshot_stream
from zraft.transport.tls import KTLS_AVAILABLE, NodeTls, TlsFiles, client_context

COOKIE = b"tls-cost"


def cluster_rows(base: Path, tls: bool, scale: float) -> dict[str, dict[str, Any]]:
    side = ZraftSide(base / ("tls" if tls else "plain"), tls=tls)
    side.start()
    try:
        ops = Ops(side.peer_name)
        return {w: measure(side, ops, w, scale) for w in ("w1", "w2", "w6")}
    finally:
        side.stop()
        shutil.rmtree(side.dir, ignore_errors=True)


def snapshot_rate(base: Path, tls: bool, mb: int, dest_root: Path) -> float:
    """MB/s (10^6) of one transfer of ``mb`` MiB in 4 files, connect to "ok", received into
    ``dest_root`` (tmpfs by default: a disk's fsync would hide what the stream costs)."""
    src = base / "snap-src"
    if not src.exists():
        src.mkdir()
        for i in range(4):
            (src / f"part{i}").write_bytes(os.urandom(mb * 1024 * 1024 // 4))
    server = client = None
    if tls:
        certs = make_cluster_certs(base / "certs", ["127.0.0.1"])
        files = TlsFiles(str(certs.node.cert), str(certs.node.key), str(certs.ca))
        server = NodeTls.build(files, verify_client=True).server
        client = client_context(TlsFiles(str(certs.client.cert), str(certs.client.key),
                                         str(certs.ca)))
    dest = dest_root / f"snap-dest-{'tls' if tls else 'plain'}"
    shutil.rmtree(dest, ignore_errors=True)
    receiver = snapshot_stream.SnapshotReceiver(dest, COOKIE, "receiver",
                                                listen_addr="127.0.0.1", tls=server)
    host, port = receiver.start()
    result = snapshot_stream.send_snapshot(src, host, port, COOKIE, "sender", tls=client,
                                           io_timeout=60.0)
    receiver.wait(60)
    shutil.rmtree(dest, ignore_errors=True)
    return result.mb_per_s


FIGURES = [  # (label, workload, key, unit)
    ("W1 sequential writes p50", "w1", "p50_ms", "ms"),
    ("W1 leader CPU per op", "w1", "leader_us", "us"),
    ("W2 pipelined writes", "w2", "ops_per_s", "ops/s"),
    ("W2 leader CPU per op", "w2", "leader_us", "us"),
    ("W2 client CPU per op", "w2", "client_us", "us"),
    ("W6 linearizable reads", "w6", "ops_per_s", "ops/s"),
    ("W6 leader CPU per op", "w6", "leader_us", "us"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tls_cost", description=__doc__)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--scale", type=float, default=0.4, help="operations x this")
    parser.add_argument("--snapshot-mb", type=int, default=256)
    parser.add_argument("--snapshot-dest", default="/dev/shm" if os.path.isdir("/dev/shm")
                        else None, help="where the snapshot is received (default: tmpfs)")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="zraft-tls-cost-"))
    dest_root = Path(tempfile.mkdtemp(prefix="zraft-tls-cost-", dir=args.snapshot_dest))
    runs: dict[bool, list[dict[str, dict[str, Any]]]] = {False: [], True: []}
    snaps: dict[bool, list[float]] = {False: [], True: []}
    try:
        for _ in range(args.repeats):
            for tls in (False, True):
                runs[tls].append(cluster_rows(base, tls, args.scale))
                snaps[tls].append(snapshot_rate(base, tls, args.snapshot_mb, dest_root))
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(dest_root, ignore_errors=True)

    def med(tls: bool, w: str, key: str) -> float:
        return statistics.median(float(r[w][key]) for r in runs[tls])

    rows = [(label, med(False, w, k), med(True, w, k), unit) for label, w, k, unit in FIGURES]
    rows.append((f"snapshot stream, {args.snapshot_mb} MiB", statistics.median(snaps[False]),
                 statistics.median(snaps[True]), "MB/s"))
    print(f"TLS vs plaintext, {args.repeats} repeat(s), scale {args.scale}; kernel TLS "
          f"{'available' if KTLS_AVAILABLE else 'not available (Python < 3.12)'}")
    print(f"| {'figure':<34} | {'plaintext':>10} | {'TLS':>10} | {'TLS/plain':>9} |")
    print(f"|{'-' * 36}|{'-' * 12}|{'-' * 12}|{'-' * 11}|")
    for label, plain, tls_value, unit in rows:
        ratio = tls_value / plain if plain else float("nan")
        print(f"| {label + ' (' + unit + ')':<34} | {plain:>10,.2f} | {tls_value:>10,.2f} | "
              f"{ratio:>9.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
