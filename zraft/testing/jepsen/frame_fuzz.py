"""Structure-aware fuzzing of authenticated frames against a live 3-node cluster.

Every case (``zraft.testing.protocol_strategies``: every op and Raft message type, built
from the protocol's own schema, with wrong types, boundary sizes and deep nesting) is sent
on a fresh authenticated connection to one of the nodes, followed by a probe request on
the same connection. What must hold, checked after every case:

- the node answers the case as its kind says: a well-formed request gets an answer that is
  not ``bad_request`` or ``error``; a malformed one exactly ``bad_request`` (or
  ``too_large``) and its connection stays open (the probe is answered); a frame that is not
  a frame closes its connection, and only that one; a refused peer frame is answered by
  nothing and leaves the connection open;
- meanwhile a witness client, writing through the cluster on its own connections, keeps
  completing writes (another client's bad frame never costs it anything);
- every node process is the one that started (no crash, no exit), and at the end no peer
  restarted, no serving thread was restarted, and every witness write is readable.

``python -m zraft.testing.jepsen.frame_fuzz --cases N`` (``make soak``), and a short run in
``make test`` (tests/jepsen/test_frame_fuzz.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster.local import LocalCluster
from zraft.errors import ZRaftError
from zraft.node import requests as R
from zraft.testing import protocol_strategies as ps
from zraft.testing.authed_socket import AuthedSocket, authed
from zraft.transport.errors import TransportError
from zraft.transport.handshake import client_handshake

PROBE_ID = 2**63 + 7
MAX_ENTRY_SIZE = 4096  # small, so that the size edge costs nothing to hit
NODE_ROLE_ID = "127.0.0.1:9"  # what a fuzz connection claiming to be a node calls itself


class Witness(threading.Thread):
    """Another client: writes through the cluster the whole time, on its own pool."""

    def __init__(self, peers: list[str], cookie: bytes) -> None:
        super().__init__(name="fuzz-witness", daemon=True)
        self.pool = ConnectionPool(cookie)
        self.ring = api.light_session(peers, fail_timeout=0.5, election_timeout=0.3)
        self.ok = 0
        self.errors: Counter[str] = Counter()
        self.halt = threading.Event()
        self._cond = threading.Condition()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                _result, self.ring = api.write(self.ring, [f"witness/{self.ok}", self.ok],
                                               timeout=5.0, pool=self.pool)
            except ZRaftError as exc:
                self.errors[type(exc).__name__] += 1
                continue
            with self._cond:
                self.ok += 1
                self._cond.notify_all()

    def progressed(self, since: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.ok > since, timeout)

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
        self.pool.close()


class FrameFuzzer:
    def __init__(self, cluster: LocalCluster, witness: Witness, target: ps.Target,
                 deadline: float = 5.0) -> None:
        self.cluster = cluster
        self.witness = witness
        self.target = target
        self.deadline = deadline
        self.pids = [n.pid for n in cluster.nodes]
        self.counts: Counter[str] = Counter()
        self.failures: list[str] = []
        self._next = 0

    def check(self, case: ps.Case) -> str | None:
        """Run one case; returns a failure description (also recorded) or None."""
        node = self.cluster.nodes[self._next % len(self.cluster.nodes)]
        self._next += 1
        before = self.witness.ok
        try:
            problem = self._send(case, node.port)
        except OSError as exc:
            problem = f"could not run the case: {exc}"
        if problem is None and [n.pid for n in self.cluster.nodes] != self.pids:
            problem = "a node process died or was replaced"
        if problem is None and not self.witness.progressed(before, self.deadline):
            problem = (f"the witness client stalled ({self.witness.ok} writes, errors "
                       f"{dict(self.witness.errors)})")
        self.counts[f"{case.label} -> {case.expect}"] += 1
        if problem is not None:
            text = f"{case.label} ({case.role}, expect {case.expect}) on node " \
                   f"{node.index}: {problem}; body {case.body[:80]!r}"
            self.failures.append(text)
            return text
        return None

    def _send(self, case: ps.Case, port: int) -> str | None:
        with socket.create_connection(("127.0.0.1", port), self.deadline) as sock:
            client_id = NODE_ROLE_ID if case.role == "node" else "fuzzer"
            peer = authed(sock, client_handshake(sock, self.cluster.cookie.encode(), client_id,
                                                 self.deadline, role=case.role))
            probe = ps.frame([2, PROBE_ID, "stat", [self.target.peer_name]])
            # sealed: the case reaches the decoder behind the frame MAC (a cookie holder
            # can MAC anything)
            peer.sendall(_framed(case.body) + _framed(probe))
            wanted = _req_id(case.body) if case.expect in (
                ps.ANSWER, ps.BAD_REQUEST, ps.TOO_LARGE) else None
            replies, closed = _read(peer, wanted, self.deadline)
        if case.expect == ps.CLOSE:
            return None if closed and PROBE_ID not in replies else \
                "the connection was not closed"
        if PROBE_ID not in replies:
            return "the connection did not answer the probe after the case" + (
                " (it was closed)" if closed else "")
        if wanted is None:
            return None
        status = replies.get(wanted)
        if status is None:
            return "no reply to the request"
        if case.expect == ps.ANSWER:
            return None if status not in ("bad_request", "error") else f"answered {status}"
        return None if status == case.expect else f"answered {status}, not {case.expect}"

    def final_checks(self, pool: ConnectionPool) -> None:
        for n in self.cluster.nodes:
            text = (n.directory / "log" / "console.log").read_text(errors="replace")
            for bad in ("restarting child", "peer_failed", "thread died", "reactor thread failed"):
                if bad in text:
                    self.failures.append(f"node {n.index} log says {bad!r}")
        for i in range(0, self.witness.ok, max(1, self.witness.ok // 50)):
            value, _leader = api.query(self.cluster.peers[0], f"witness/{i}", timeout=10.0,
                                       pool=pool)
            if value != i:
                self.failures.append(f"witness/{i} reads {value!r}")
                break


def _framed(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def _req_id(body: bytes) -> int | None:
    with contextlib.suppress(Exception):
        raw = msgpack.unpackb(body, raw=False, strict_map_key=False)
        if isinstance(raw, list) and len(raw) > 1 and type(raw[1]) is int:
            return raw[1]
    return None


def _read(sock: AuthedSocket, wanted: int | None,
          deadline: float) -> tuple[dict[int, Any], bool]:
    """Replies by req_id until the probe's (and the wanted one's) arrived, EOF, or the
    deadline; returns them and whether the node closed the connection."""
    replies: dict[int, Any] = {}
    end = time.monotonic() + deadline
    while True:
        if PROBE_ID in replies and (wanted is None or wanted in replies):
            return replies, False
        left = end - time.monotonic()
        if left <= 0:
            return replies, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return replies, False
        except OSError:
            return replies, True
        if not chunk:
            return replies, True
        try:
            bodies = sock.feed(chunk)
        except (TransportError, ValueError):
            return replies, True  # a node never sends a bad frame: as if it closed
        for body in bodies:
            frame = msgpack.unpackb(body, raw=False, strict_map_key=False)
            if isinstance(frame, list) and len(frame) == 4 and frame[0] == 3:
                replies[frame[1]] = frame[2]


def start_cluster(workdir: Path, env: dict[str, str] | None = None
                  ) -> tuple[LocalCluster, ConnectionPool, ps.Target]:
    cluster = LocalCluster(workdir, 3, election_timeout=300,
                           extra_raft={"max_entry_size": MAX_ENTRY_SIZE}, env=env)
    cluster.start()
    pool = ConnectionPool(cluster.cookie.encode())
    api.create(cluster.peers, "dict", timeout=20.0, pool=pool)
    stat = api.stat(cluster.peers[0], timeout=10.0, pool=pool)
    target = ps.Target(cluster.peer_name, tuple(cluster.peers), stat["cluster_id"],
                       MAX_ENTRY_SIZE)
    return cluster, pool, target


def campaign(cases: int, seed: int, workdir: Path, stop_on_failure: bool = False,
             env: dict[str, str] | None = None) -> dict[str, Any]:
    """``cases`` cases against a fresh 3-node cluster (``env``: extra environment of the
    node processes, e.g. a test mutation); the failures and what ran."""
    cluster, pool, target = start_cluster(workdir, env)
    witness = Witness(cluster.peers, cluster.cookie.encode())
    witness.start()
    fuzzer = FrameFuzzer(cluster, witness, target)
    started = time.monotonic()
    try:
        @hypothesis_seed(seed)
        @settings(max_examples=cases, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(ps.cases(target))
        def one(case: ps.Case) -> None:
            failure = fuzzer.check(case)
            if failure is not None and stop_on_failure:
                raise AssertionError(failure)

        one()
        for op in sorted(R.OPS):  # every op at least twice, whatever the seed drew
            @hypothesis_seed(seed)
            @settings(max_examples=2, database=None, deadline=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(ps.request_cases(target, only_op=op))
            def of_op(case: ps.Case) -> None:
                failure = fuzzer.check(case)
                if failure is not None and stop_on_failure:
                    raise AssertionError(failure)

            of_op()
        witness.stop()
        fuzzer.final_checks(pool)
    finally:
        witness.stop()
        pool.close()
        cluster.stop()
    return {"cases": sum(fuzzer.counts.values()), "seconds": round(time.monotonic() - started),
            "witness_writes": witness.ok, "witness_errors": dict(witness.errors),
            "failures": fuzzer.failures, "by_kind": dict(sorted(fuzzer.counts.items()))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zraft.testing.jepsen.frame_fuzz")
    p.add_argument("--cases", type=int, default=500)
    p.add_argument("--seed", type=int, default=int(time.time()) % 2**31)
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="zraft-frame-fuzz-"))
    result = campaign(args.cases, args.seed, workdir)
    print(json.dumps({"seed": args.seed, **result}, indent=2))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
