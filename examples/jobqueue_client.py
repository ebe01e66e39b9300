"""A tiny client of the replicated job queue (examples/jobqueue.py).

    python -m examples.jobqueue_client --dir jobs submit "resize cat.png" "resize dog.png"
    python -m examples.jobqueue_client --dir jobs work --name w1 --jobs 2
    python -m examples.jobqueue_client --dir jobs stats
    python -m examples.jobqueue_client --dir jobs demo

``--dir`` is the directory of ``zraft cluster up``; or give ``$ZRAFT_PEERS`` and
``$ZRAFT_COOKIE_FILE``. ``demo`` submits three jobs, starts a worker process that claims one
and dies without finishing it (SIGKILL-like: ``os._exit``), then works through the queue:
the dead worker's job comes back when its session expires, and every job is done once.
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
from typing import Any

import zraft
from zraft.client.cli_support import load_cluster_dir

SESSION_TIMEOUT = 2.0  # seconds: how long a dead worker's claims survive it


def connect(args: argparse.Namespace) -> list[str]:
    if args.dir:
        found = load_cluster_dir(args.dir)
        zraft.configure(cookie_file=found.cookie_file)
        return found.peers
    zraft.configure()  # $ZRAFT_COOKIE_FILE or $ZRAFT_COOKIE
    return os.environ["ZRAFT_PEERS"].split(",")


def submit(peers: list[str], payloads: list[str]) -> list[int]:
    ring = zraft.light_session(peers)
    ids = []
    for payload in payloads:
        job_id, ring = zraft.write(ring, ["submit", payload])
        ids.append(job_id)
    return ids


def work(peers: list[str], name: str, jobs: int, crash: bool = False) -> None:
    """Claim and finish ``jobs`` jobs (waiting for work on a watch); with ``crash``, claim
    one and exit at once, leaving the session to expire."""
    with zraft.Session.start(peers, SESSION_TIMEOUT) as session:
        done = 0
        while done < jobs:
            claimed = session.write_sync(["claim", name], temporary=True)
            if claimed is None:  # nothing pending: wait until something is
                wake: queue.Queue[Any] = queue.Queue()
                if not session.query_sync("pending", watch=wake):
                    wake.get(timeout=30)
                continue
            job_id, payload = claimed
            if crash:
                print(f"{name}: claimed job {job_id} ({payload}) and crashed", flush=True)
                os._exit(1)  # no close: the claim lasts until the session expires
            session.write_sync(["finish", job_id, payload.upper()], temporary=True)
            print(f"{name}: finished job {job_id} ({payload})", flush=True)
            done += 1


def demo(args: argparse.Namespace, peers: list[str]) -> None:
    ids = submit(peers, ["resize cat.png", "resize dog.png", "resize emu.png"])
    print("submitted jobs", ids)
    worker = [sys.executable, "-m", "examples.jobqueue_client", *_where(args)]
    subprocess.run([*worker, "work", "--name", "crashy", "--crash"], check=False)
    work(peers, "steady", len(ids))
    stats, _ = zraft.query(peers[0], "stats")
    print("stats", stats)
    assert stats == {"pending": 0, "claimed": 0, "done": 3}, stats
    claims = [zraft.query(peers[0], ["job", i])[0]["claims"] for i in ids]
    print("claims per job", claims)  # the job crashy held was claimed twice
    assert sorted(claims) == [1, 1, 2], claims


def _where(args: argparse.Namespace) -> list[str]:
    return ["--dir", args.dir] if args.dir else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobqueue_client", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", help="the cluster directory of `zraft cluster up`")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("submit")
    p.add_argument("payloads", nargs="+")
    p = sub.add_parser("work")
    p.add_argument("--name", default=f"worker-{os.getpid()}")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--crash", action="store_true", help="claim one job, then die")
    sub.add_parser("stats")
    sub.add_parser("demo")
    args = parser.parse_args(argv)
    peers = connect(args)
    if args.command == "submit":
        print("submitted jobs", submit(peers, args.payloads))
    elif args.command == "work":
        work(peers, args.name, args.jobs, args.crash)
    elif args.command == "stats":
        print(zraft.query(peers[0], "stats")[0])
    else:
        demo(args, peers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
