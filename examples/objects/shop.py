"""A replicated app in one file: this process runs a zraft node and uses the Inventory.

Run it three times (one per machine or terminal), with the same --nodes and cookie:

    python examples/objects/shop.py --me 0 --nodes 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103
    python examples/objects/shop.py --me 1 --nodes ...        # and --me 2

The first one creates the cluster once every node is up. Each reads commands on stdin:
``restock ITEM N``, ``sell ITEM N``, ``available ITEM``, ``local ITEM`` (this node's own,
possibly stale, copy), ``report``, ``leader``; it answers one line each (``error: ...``
when a call fails). ``ready`` is printed once the app can serve.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from inventory import Inventory  # this file's directory is on sys.path

import zraft

BACKEND = "inventory:Inventory"
PEER = "shop"


def start_node(args: argparse.Namespace) -> zraft.Node:
    me = args.nodes[args.me]
    return zraft.Node(listen=me, data_dir=Path(args.data) / f"node{args.me}",
                      cookie_file=args.cookie_file, backends=[BACKEND],
                      raft={"election_timeout": args.election_timeout}).start()


def ensure_cluster(peers: list[str], me: int, pool: zraft.ConnectionPool) -> None:
    """The first app creates the cluster once every node answers; the others wait for it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if me == 0:
                for peer in peers:
                    zraft.check_exists(peer, timeout=1, pool=pool)  # node up, peer not made
                zraft.create(peers, BACKEND, pool=pool)
                return
            zraft.get_conf(peers[me], timeout=1, pool=pool)
            return
        except zraft.AlreadyPresent:  # created already (e.g. this app restarted)
            return
        except zraft.ZRaftError:
            time.sleep(0.1)
    raise SystemExit("the cluster did not come up within 60 s")


def serve(shop: zraft.objects.ObjectHandle) -> None:
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        command, args = words[0], [int(w) if w.isdigit() else w for w in words[1:]]
        try:
            if command == "local":
                answer = shop.available.local(*args)
            elif command == "leader":
                answer = shop.session.leader
            else:
                answer = getattr(shop, command)(*args)
        except Exception as exc:
            answer = f"error: {type(exc).__name__}: {exc}"
        print(json.dumps(answer), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--me", type=int, required=True, help="index of this app's node")
    parser.add_argument("--nodes", type=lambda s: s.split(","), required=True,
                        help="host:port of every app's node, comma-separated")
    parser.add_argument("--data", default="shop-data", help="data directory")
    parser.add_argument("--cookie-file", required=True)
    parser.add_argument("--election-timeout", type=int, default=500, help="ms")
    args = parser.parse_args()
    peers = [f"{PEER}@{node}" for node in args.nodes]
    with start_node(args):
        pool = zraft.ConnectionPool(Path(args.cookie_file).read_text().strip().encode())
        ensure_cluster(peers, args.me, pool)
        with zraft.connect_object(peers, Inventory, pool=pool, local_peer=peers[args.me],
                                  election_timeout=args.election_timeout / 1000) as shop:
            print("ready", flush=True)
            serve(shop)
        pool.close()


if __name__ == "__main__":
    main()
