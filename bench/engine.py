"""The one client engine that drives both sides: pipelined requests over zraft client
connections (``zraft.client.connection``), the same msgpack frames for zraft and PySyncObj.

Rules:
- ``pipelined`` keeps ``outstanding`` requests in flight on each of ``conns`` connections
  (one ``ConnectionPool`` each, so one socket each) until ``n_ops`` replies arrived or
  ``time_limit`` passed. Each reply (on the connection's reader thread) records the
  request's latency and sends that connection's next request: a closed loop, no retries.
  Errors are counted by status and never counted as committed.
- Requests are built by ``Ops``: ``propose [name, packb([1, ["put", k, v]]), None]`` and
  ``query [name, ["get", k], None, None]``, keys ``k0..k9999``, random values.
- Connections are opened (handshake included) before the clock starts.
"""

from __future__ import annotations

import os
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from zraft.client.connection import ConnectionPool

KEYS = 10_000
Request = tuple[str, list[Any]]


class Ops:
    """Request builders for one side (its peer name) and one value size."""

    def __init__(self, peer_name: str, value_size: int = 100, values: int = 1024) -> None:
        self.peer_name = peer_name
        self.values = [os.urandom(value_size) for _ in range(values)]
        self.value_size = value_size

    def put(self, i: int) -> Request:
        key = f"k{i % KEYS}"
        value = self.values[i % len(self.values)]
        return "propose", [self.peer_name, msgpack.packb([1, ["put", key, value]]), None]

    def put_kv(self, key: str, value: bytes) -> Request:
        return "propose", [self.peer_name, msgpack.packb([1, ["put", key, value]]), None]

    def get(self, i: int) -> Request:
        return self.get_key(f"k{i % KEYS}")

    def get_key(self, key: str) -> Request:
        return "query", [self.peer_name, ["get", key], None, None]


def percentile(sorted_values: Any, p: float) -> float:
    if not len(sorted_values):
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return float(sorted_values[k])


@dataclass
class RunResult:
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    latencies: array = field(default_factory=lambda: array("d"))
    completed: bool = True
    payloads: dict[int, Any] | None = None
    client_cpu: float = 0.0  # CPU seconds of this (client) process per wall second

    @property
    def ops_per_s(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def latency_ms(self) -> dict[str, float]:
        lat = sorted(self.latencies)
        return {"p50": percentile(lat, 50) * 1e3, "p99": percentile(lat, 99) * 1e3,
                "max": (lat[-1] * 1e3) if lat else float("nan")}


def open_pools(cookie: bytes, target: str, op: Request, conns: int,
               timeout: float = 30.0, tls: Any = None) -> list[ConnectionPool]:
    """``conns`` pools, each with its connection to ``target`` up (one request answered);
    ``tls``: a client ``ssl.SSLContext`` (None: plaintext)."""
    pools = [ConnectionPool(cookie, connect_timeout=2.0, tls=tls) for _ in range(conns)]
    left = threading.Semaphore(0)
    for pool in pools:
        pool.request(target, op[0], op[1], lambda _s, _p: left.release())
    deadline = time.monotonic() + timeout
    for _ in pools:
        if not left.acquire(timeout=max(0.0, deadline - time.monotonic())):
            for pool in pools:
                pool.close()
            raise TimeoutError(f"connections to {target} did not open")
    return pools


def pipelined(pools: list[ConnectionPool], target: str, make: Callable[[int], Request],
              n_ops: int, outstanding: int, time_limit: float,
              keep_payloads: bool = False) -> RunResult:
    """Closed loop: ``outstanding`` requests in flight per pool, ``n_ops`` in total."""
    result = RunResult(latencies=array("d", bytes(8 * n_ops)))
    if keep_payloads:
        result.payloads = {}
    lock = threading.Lock()
    finished = threading.Event()
    counters = {"issued": 0, "done": 0}
    sent_at = array("d", bytes(8 * n_ops))
    perf = time.perf_counter
    deadline = time.monotonic() + time_limit

    def next_op() -> int | None:
        with lock:
            i = counters["issued"]
            if i >= n_ops or time.monotonic() > deadline:
                return None
            counters["issued"] = i + 1
            return i

    def send(pool: ConnectionPool, i: int) -> None:
        op, args = make(i)
        sent_at[i] = perf()
        pool.request(target, op, args, lambda s, p: on_reply(pool, i, s, p))

    def on_reply(pool: ConnectionPool, i: int, status: str, payload: Any) -> None:
        now = perf()
        with lock:
            if status == "ok":
                result.latencies[result.ok] = now - sent_at[i]
                result.ok += 1
                if result.payloads is not None:
                    result.payloads[i] = payload
            else:
                result.errors[status] += 1
            counters["done"] += 1
            done = counters["done"]
        nxt = next_op()
        if nxt is not None:
            send(pool, nxt)
        elif done >= counters["issued"]:
            finished.set()

    start = perf()
    cpu_start = time.process_time()
    for pool in pools:
        for _ in range(outstanding):
            i = next_op()
            if i is None:
                break
            send(pool, i)
    if not finished.wait(time_limit + 30.0):
        result.completed = False
    with lock:
        result.elapsed = perf() - start
        result.client_cpu = (time.process_time() - cpu_start) / max(1e-9, result.elapsed)
        del result.latencies[result.ok:]
        if counters["done"] < n_ops:
            result.completed = False
    return result


def call(pool: ConnectionPool, target: str, req: Request, timeout: float) -> tuple[str, Any]:
    """One request and its reply, or ``("timeout", None)``."""
    done = threading.Event()
    answer: list[tuple[str, Any]] = []

    def on_reply(status: str, payload: Any) -> None:
        answer.append((status, payload))
        done.set()

    cancel = pool.request(target, req[0], req[1], on_reply)
    if not done.wait(timeout):
        cancel()
        return "timeout", None
    return answer[0]
