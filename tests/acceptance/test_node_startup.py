"""``create_peer`` (the first step of zraft_lib's create/2) must never fail with an internal
error: not when it arrives the moment a fresh node listens, not when several clients ask
for the same peer at once (one creates it, the others are told ``already_present``).
Regression tests for .coord/bugs-issue4.md #1 and #2 (fixed in the node at 06:10).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from typing import Any

import psutil
import pytest

from tests.acceptance.harness import ROOT, Acceptance, wait_for
from zraft.client import api
from zraft.client.connection import ConnectionPool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RACERS = 16
ROUNDS = 6


def _create_peers(acc: Acceptance, node: int, names: list[str]) -> list[tuple[str, Any]]:
    """One client per name sends ``create_peer`` to ``node`` at once; returns the
    (status, payload) replies."""
    n = acc.cluster.node(node)
    pools = [ConnectionPool(acc.cluster.cookie.encode()) for _ in names]
    replies: list[tuple[str, Any]] = []
    answered = threading.Semaphore(0)

    try:
        ready = threading.Semaphore(0)
        for pool in pools:  # connect and authenticate every client first ...
            pool.request(n.address, "ping", [], lambda _status, _payload: ready.release())
        for _ in pools:
            assert ready.acquire(timeout=15), "a client could not connect"
        waiting = list(zip(pools, names, strict=True))
        for _attempt in range(50):  # ... then all ask at once; "retry" (node busy) asks again
            got: list[tuple[Any, str, Any]] = []
            for pool, name in waiting:
                pool.request(f"{name}@{n.address}", "create_peer", [name, "dict"],
                             lambda status, payload, pool=pool, name=name, got=got: (
                                 got.append(((pool, name), status, payload)),
                                 answered.release()))
            for _ in waiting:
                assert answered.acquire(timeout=15), "a create_peer got no answer"
            replies.extend((status, payload) for _, status, payload in got
                           if status != "retry")
            waiting = [who for who, status, _ in got if status == "retry"]
            if not waiting:
                break
            time.sleep(0.05)  # a client's back-off before it asks again
        assert not waiting, "create_peer still refused as busy"
    finally:
        for pool in pools:
            pool.close()
    return replies


# The node's own entry point, with its start-up made slow after the transport started
# (as on a loaded machine): the supervisor takes one second to come up.
SLOW_START_NODE = textwrap.dedent("""
    import sys, time
    import zraft.node.server as server
    real = server.OneForOneSupervisor

    class SlowSupervisor:
        @staticmethod
        def start(*args, **kwargs):
            time.sleep(1.0)
            return real.start(*args, **kwargs)

    server.OneForOneSupervisor = SlowSupervisor
    from zraft.node.main import main
    sys.exit(main(sys.argv[1:]))
""")


def test_create_peer_while_the_node_is_still_starting(make_cluster) -> None:
    """A node that listens must either serve create_peer or say it is not ready (a status
    the client retries, like ``loading``), never fail it."""
    acc = make_cluster(nodes=1, start=False)
    n = acc.cluster.nodes[0]
    acc.cluster.write_config(n)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    acc.own(psutil.Popen([sys.executable, "-c", SLOW_START_NODE, "--config",
                          str(n.config_path)], cwd=str(n.directory), env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def accepts() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", n.port)) == 0

    wait_for(accepts, 20, "the node to listen", interval=0.005)
    peer = acc.cluster.peer_id(n)
    api.create_peer(peer, "dict", timeout=10, pool=acc.pool)  # raises if it failed
    wait_for(lambda: acc.stat(peer, timeout=1.0), 10, "the created peer to answer")


def test_concurrent_create_peer_of_one_name(make_cluster) -> None:
    acc = make_cluster(nodes=1, create=False)
    for round_ in range(ROUNDS):  # each round asks for a new peer, RACERS times at once
        replies = _create_peers(acc, 1, [f"p{round_}"] * RACERS)
        counts = Counter(s for s, _ in replies)
        assert counts == {"ok": 1, "already_present": RACERS - 1}, (round_, replies)
