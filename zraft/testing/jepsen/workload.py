"""Concurrent register clients against real node processes (threads and separate processes).

Rules:
- One operation is ONE request to ONE node, never retried: a retried plain write may apply
  twice (zraft's documented at-least-once), which would be the client's doing, not Raft's.
  The next operation goes to the leader named in the last redirect, else the next peer.
- Outcome of a write/cas/insert: ``ok``; ``fail`` only when the cluster certainly did not
  apply it (``not_leader``: refused before proposing; ``leader_changed``: its log entry was
  replaced by a committed one; ``loading``/``bad_request``; ``noproc`` when the connection
  could not even be made or the node has no such peer; ``cas_failed`` is an ok cas);
  ``unknown`` for everything else (timeouts, lost connections, ``timeout``).
  A read that did not answer ``ok`` is ``fail`` (reads change nothing).
- Keys roll: every ``key_period`` seconds (from an epoch shared by every client, thread or
  process) the active key set is replaced, so each key's history stays small enough for the
  exhaustive checker even with open unknown ops, while all clients contend on the same keys.
- A share of reads goes to a random node: a correct follower redirects (``not_leader``),
  a broken one that answers from its own state shows up as a stale read.
- Write values are unique per run (``worker * 10**9 + seq``), so reads identify the write.
- Process clients run ``client_process_main`` (multiprocessing, spawn) and hand their ops
  back as JSON lines in a file the parent merges.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zraft.client.api import write_command
from zraft.client.connection import ConnectionPool
from zraft.fsm.codec import NOT_FOUND
from zraft.testing.jepsen.history import (
    CAS,
    FAIL,
    INSERT,
    OK,
    READ,
    UNKNOWN,
    WRITE,
    History,
    Op,
    load_ops,
    save_ops,
)

CERTAIN_FAILURES = frozenset({"not_leader", "leader_changed", "loading", "bad_request"})
LOCAL_TIMEOUT = "local_timeout"
NOT_CONNECTED = "cannot reach node"  # zraft.client.connection: the connect/handshake failed
NO_PEER = "no running peer"  # zraft.node.server: no such peer on that node


@dataclass
class WorkloadConfig:
    keys: int = 8  # active register keys at a time
    key_period: float = 2.0  # seconds before the active key set is replaced
    read_ratio: float = 0.4
    write_ratio: float = 0.3
    cas_ratio: float = 0.2  # the rest: inserts of write-once keys
    any_node_reads: float = 0.2  # share of reads sent to a random node, not the leader
    op_timeout: float = 2.0
    pause_between: float = 0.0  # seconds a client idles between ops (0: back to back)


def to_wire(value: Any) -> Any:
    return NOT_FOUND if value is None else value


def from_wire(value: Any) -> Any:
    return None if value is NOT_FOUND else value


class KeySpace:
    """The active key set, a function of time since a shared monotonic ``epoch``."""

    def __init__(self, cfg: WorkloadConfig, epoch: float | None = None,
                 prefix: str = "r") -> None:
        self.cfg = cfg
        self.epoch = time.monotonic() if epoch is None else epoch
        self.prefix = prefix

    def pick(self, rng: random.Random) -> str:
        generation = int((time.monotonic() - self.epoch) / self.cfg.key_period)
        return f"{self.prefix}{generation}.{rng.randrange(self.cfg.keys)}"


def call(pool: ConnectionPool, peer: str, op: str, args: Any, timeout: float) -> tuple[str, Any]:
    """One request, one answer: ``(status, payload)`` or ``("local_timeout", None)``."""
    done = threading.Event()
    box: list[tuple[str, Any]] = []

    def on_reply(status: str, payload: Any) -> None:
        box.append((status, payload))
        done.set()

    cancel = pool.request(peer, op, args, on_reply)
    if not done.wait(timeout):
        cancel()
        return LOCAL_TIMEOUT, None
    return box[0]


def never_sent(status: str, payload: Any) -> bool:
    """The request certainly reached no Raft peer: the connection could not be made, or
    the node hosts no running peer of that name."""
    if status != "noproc" or not isinstance(payload, dict):
        return False
    message = str(payload.get("message", ""))
    return message.startswith(NOT_CONNECTED) or NO_PEER in message


def classify(kind: str, status: str, payload: Any) -> tuple[str, Any]:
    """(outcome, result) of one answered request."""
    if status == "ok":
        if kind == READ:
            return OK, from_wire(payload)
        if kind == CAS:
            if payload == "ok":
                return OK, True
            if isinstance(payload, (list, tuple)) and payload and payload[0] == "cas_failed":
                return OK, False
            return UNKNOWN, None  # an answer we do not understand proves nothing
        return OK, payload
    if kind == READ or status in CERTAIN_FAILURES or never_sent(status, payload):
        return FAIL, None
    return UNKNOWN, None


class Client:
    """One logical client: a loop of single-attempt operations on one thread."""

    def __init__(self, name: str, pool: ConnectionPool, peers: Callable[[], Sequence[str]],
                 history: History, keys: KeySpace, cfg: WorkloadConfig, seed: int,
                 worker_number: int) -> None:
        self.name = name
        self.pool = pool
        self.peers = peers
        self.history = history
        self.keys = keys
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.base = worker_number * 10**9
        self.seq = 0
        self.leader: str | None = None
        self.turn = 0
        self.seen: dict[str, Any] = {}  # last value this client saw per key (cas guesses)

    def target(self) -> str:
        peers = list(self.peers())
        if self.leader in peers:
            return self.leader  # type: ignore[return-value]
        self.turn += 1
        return peers[self.turn % len(peers)]

    def next_value(self) -> int:
        self.seq += 1
        return self.base + self.seq

    def step(self) -> Op:
        cfg, rng = self.cfg, self.rng
        roll = rng.random()
        if roll < cfg.read_ratio:
            kind = READ
        elif roll < cfg.read_ratio + cfg.write_ratio:
            kind = WRITE
        elif roll < cfg.read_ratio + cfg.write_ratio + cfg.cas_ratio:
            kind = CAS
        else:
            kind = INSERT
        peer = self.target()
        if kind == READ and rng.random() < cfg.any_node_reads:
            peer = rng.choice(list(self.peers()))  # a follower must not answer on its own
        name = peer.partition("@")[0]
        if kind == INSERT:
            value = self.next_value()
            key = f"u.{self.name}.{value}"
            op = self.history.invoke(self.name, kind, key, value, node=peer)
            args: Any = [name, write_command(["put", key, value]), None]
            wire_op = "propose"
        elif kind == READ:
            key = self.keys.pick(rng)
            op = self.history.invoke(self.name, kind, key, node=peer)
            args, wire_op = [name, ["get", key], None, None], "query"
        elif kind == WRITE:
            key = self.keys.pick(rng)
            value = self.next_value()
            op = self.history.invoke(self.name, kind, key, value, node=peer)
            args, wire_op = [name, write_command(["put", key, value]), None], "propose"
        else:
            key = self.keys.pick(rng)
            value = self.next_value()
            expected = self.seen.get(key) if rng.random() < 0.8 else None
            op = self.history.invoke(self.name, kind, key, value, expected, node=peer)
            command = ["cas", key, to_wire(expected), value]
            args, wire_op = [name, write_command(command), None], "propose"
        status, payload = call(self.pool, peer, wire_op, args, cfg.op_timeout)
        outcome, result = classify(kind, status, payload)
        History.complete(op, outcome, result, "" if status == "ok" else status)
        self.learn(peer, kind, op, status, payload)
        return op

    def learn(self, peer: str, kind: str, op: Op, status: str, payload: Any) -> None:
        if status == "not_leader":
            hint = payload.get("leader") if isinstance(payload, dict) else None
            self.leader = hint if isinstance(hint, str) and hint != peer else None
        elif status != "ok":
            self.leader = None  # try the next peer
        else:
            self.leader = peer
        if op.outcome == OK:
            if kind == READ:
                self.seen[op.key] = op.result
            elif kind == WRITE or (kind == CAS and op.result):
                self.seen[op.key] = op.value

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if self.step().outcome != OK:
                stop.wait(self.rng.uniform(0.005, 0.05))  # no busy loop on a dead node
            elif self.cfg.pause_between:
                stop.wait(self.cfg.pause_between)


def client_tls(files: dict[str, str] | None) -> Any:
    """A client ``ssl.SSLContext`` from a cluster's TLS files (``ca``, ``cert``, ``key``),
    or None for a plaintext cluster."""
    if not files:
        return None
    from zraft.client.connection import tls_client

    return tls_client(files["ca"], files.get("cert"), files.get("key"))


class ThreadClients:
    """``n`` clients on threads sharing one connection pool."""

    def __init__(self, n: int, cookie: bytes, peers: Callable[[], Sequence[str]],
                 history: History, cfg: WorkloadConfig, seed: int, first_worker: int = 1,
                 keys: KeySpace | None = None, tls: dict[str, str] | None = None) -> None:
        """``tls``: the cluster's client TLS files (``LocalCluster.tls_files()``), or None."""
        self.pool = ConnectionPool(cookie, client_id=f"jepsen-threads-{seed}",
                                   tls=client_tls(tls))
        self.keys = keys or KeySpace(cfg)
        self.stop_event = threading.Event()
        self.clients = [Client(f"t{first_worker + i}", self.pool, peers, history, self.keys, cfg,
                               seed * 1000 + i, first_worker + i) for i in range(n)]
        self.threads = [threading.Thread(target=c.run, args=(self.stop_event,), daemon=True,
                                         name=f"jepsen-{c.name}") for c in self.clients]

    def start(self) -> ThreadClients:
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self.pool.close()


# -- separate client processes ----------------------------------------------------------


def client_process_main(spec_json: str) -> None:
    """Entry point of a client process: run clients until ``stop_file`` exists or the
    deadline passes, then write the ops to ``out``."""
    spec = json.loads(spec_json)
    if spec.get("hosts"):  # node host names only the test's own mapping knows (netns runs)
        from zraft.testing.jepsen.names import NameMap
        NameMap(spec["hosts"]).install()
    cfg = WorkloadConfig(**spec["cfg"])
    history = History()
    peers = list(spec["peers"])
    clients = ThreadClients(spec["clients"], spec["cookie"].encode(), lambda: peers, history,
                            cfg, spec["seed"], spec["first_worker"],
                            KeySpace(cfg, spec["epoch"]), tls=spec.get("tls"))
    clients.start()
    stop_file = Path(spec["stop_file"])
    deadline = time.monotonic() + spec["max_seconds"]
    while not stop_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    clients.stop()
    save_ops(history.snapshot(), spec["out"])


class ProcessClients:
    """Client processes (spawned, not forked: no inherited threads or sockets), on the same
    keys as the thread clients that share ``epoch``."""

    def __init__(self, processes: int, clients_each: int, cookie: bytes, peers: Sequence[str],
                 cfg: WorkloadConfig, seed: int, workdir: Path, epoch: float,
                 first_worker: int = 1000, max_seconds: float = 3600.0,
                 hosts: dict[str, str] | None = None,
                 tls: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.stop_file = workdir / "clients.stop"
        self.outputs: list[Path] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        ctx = multiprocessing.get_context("spawn")
        for p in range(processes):
            out = workdir / f"client-proc-{p}.jsonl"
            self.outputs.append(out)
            spec = {"cfg": asdict(cfg), "peers": list(peers), "cookie": cookie.decode(),
                    "clients": clients_each, "seed": seed * 7919 + p,
                    "first_worker": first_worker + p * 100, "epoch": epoch,
                    "stop_file": str(self.stop_file), "max_seconds": max_seconds,
                    "out": str(out), "hosts": dict(hosts or {}), "tls": tls}
            self.procs.append(ctx.Process(target=client_process_main, args=(json.dumps(spec),),
                                          daemon=True, name=f"jepsen-client-{p}"))

    def start(self) -> ProcessClients:
        self.stop_file.unlink(missing_ok=True)
        for proc in self.procs:
            proc.start()
        return self

    def stop(self, timeout: float = 30.0) -> list[Op]:
        """Stop every process (by pid, SIGKILL if it does not finish) and merge their ops.
        A process killed before writing its file loses its ops: reported, not hidden."""
        self.stop_file.touch()
        deadline = time.monotonic() + timeout
        ops: list[Op] = []
        for proc in self.procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for out in self.outputs:
            if not out.exists():
                raise RuntimeError(f"client process output {out} missing")
            ops.extend(load_ops(out))
        return ops


__all__ = ["CERTAIN_FAILURES", "Client", "KeySpace", "ProcessClients", "ThreadClients",
           "WorkloadConfig", "call", "classify", "client_process_main", "client_tls"]
