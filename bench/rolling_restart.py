"""Rolling restart under load: the longest gap in acknowledged writes, with leadership
transfer (``zraft cluster rolling-restart``) and without (the leader's node simply
restarted), on a fresh 3-node local cluster at the default settings.

    python -m bench.rolling_restart [--writers 4] [--election-timeout 500] [--repeats 1]

Rules: writers are threads, each with one write outstanding (``zraft.write`` through a
light session: it follows redirects and moves on from a peer that does not answer); a
write counts once acknowledged. The gap is the longest time between two consecutive
acknowledgements (of any writer) while the restart runs. Every acknowledged write is read
back afterwards; a missing one is reported as lost.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import threading
import time
from typing import Any

from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster import admin
from zraft.cluster.local import LocalCluster
from zraft.cluster.rolling import rolling_restart
from zraft.errors import ZRaftError


def measure(cluster: LocalCluster, pool: ConnectionPool, *, transfer: bool,
            writers: int = 4, tag: str = "w") -> dict[str, Any]:
    """Run ``rolling_restart`` while ``writers`` threads write; figures as a dict."""
    acks: list[tuple[float, str, int]] = []
    errors: list[str] = []
    stop = threading.Event()
    peers = cluster.peers

    et = cluster.election_timeout / 1000

    def writer(slot: int) -> None:
        # a light session, as a client that follows the leader does: it moves on from a
        # peer that does not answer, and to the leader a redirect names
        session = api.light_session(peers, fail_timeout=2 * et, election_timeout=et)
        i = 0
        while not stop.is_set():
            key = f"{tag}{slot}-{i}"
            try:
                _, session = api.write(session, [key, i], timeout=15, pool=pool)
                acks.append((time.monotonic(), key, i))
            except ZRaftError as exc:
                errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            i += 1

    threads = [threading.Thread(target=writer, args=(s,), daemon=True) for s in range(writers)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 20
        while len(acks) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)  # load is flowing (a bench: polling with a deadline)
        started = time.monotonic()
        steps = rolling_restart(pool, cluster, transfer=transfer)
        ended = time.monotonic()
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    times = sorted(t for t, _, _ in acks if started <= t <= ended)
    edges = [started, *times, ended]
    gap = max(b - a for a, b in itertools.pairwise(edges))
    lost = [key for _, key, value in acks
            if api.query(peers[0], ["get", key], timeout=10, pool=pool)[0] != value]
    return {"transfer": transfer, "max_gap_ms": round(gap * 1000, 1),
            "restart_seconds": round(ended - started, 2), "acked": len(acks),
            "errors": errors, "lost": lost, "steps": steps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rolling_restart",
                                     description=__doc__)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--election-timeout", type=int, default=500, metavar="MS")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="zraft-rolling-") as tmp:
        cluster = LocalCluster(tmp, 3, election_timeout=args.election_timeout)
        cluster.start()
        pool = admin.pool_for(cluster)
        try:
            admin.create(pool, cluster)
            bad = 0
            for r in range(args.repeats):
                for transfer in (True, False):
                    fig = measure(cluster, pool, transfer=transfer, writers=args.writers,
                                  tag=f"r{r}{'t' if transfer else 'n'}")
                    bad += len(fig["errors"]) + len(fig["lost"])
                    print(f"{'with' if transfer else 'without'} transfer: longest gap in "
                          f"acknowledged writes {fig['max_gap_ms']:.0f} ms; "
                          f"{fig['acked']} writes acked, {len(fig['errors'])} failed, "
                          f"{len(fig['lost'])} lost; restart took "
                          f"{fig['restart_seconds']:.1f} s", flush=True)
                    for err in sorted(set(fig["errors"]))[:5]:
                        print("   ", err)
        finally:
            pool.close()
            cluster.stop()
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
