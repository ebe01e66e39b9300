"""Workloads W1..W6 of issue 7, run against any ``bench.sides.Side``.

Rules (3 nodes, keys k0..k9999, 100-byte random values unless stated):
- W1 sequential durable writes: 1 connection, 1 outstanding -> p50/p99/max.
- W2 pipelined writes: 1 connection, 1,000 and 10,000 outstanding -> committed ops/s, p50/p99.
- W3 64 connections x 1 outstanding -> ops/s, p99.
- W4 leader kill -9 under light load (an open-loop writer, about 200 writes/s), repeated:
  time from the kill to the first acknowledged write sent after it; then every acknowledged
  key is read back (linearizable) and must hold its value: ``acked_lost`` must be 0.
- W5 4 KiB values, 1,000 outstanding -> MB/s (10^6 bytes), RSS per node (right after the
  writes, and again ``RSS_SETTLE_S`` later, once the nodes are idle); then a follower is
  stopped, more writes make the others compact past its log, it is restarted and timed
  until it has applied the leader's commit index (zraft: through a snapshot). Raw loopback
  sendfile is measured in the same run for reference.
- W6 linearizable reads, 1,000 outstanding -> ops/s.
- Every phase is bounded by ``Sizes.time_limit``; a phase cut short says ``completed: False``.
"""

from __future__ import annotations

import statistics
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.engine import Ops, RunResult, open_pools, pipelined
from bench.loopback import sendfile_throughput
from bench.sides import Side


@dataclass
class Sizes:
    w1_ops: int = 2_000
    w2_ops: int = 50_000
    w2_windows: tuple[int, ...] = (1_000, 10_000)
    w3_conns: int = 64
    w3_ops: int = 10_000
    w4_repeats: int = 5
    w5_ops: int = 20_000
    w5_extra: int = 8_000  # writes while the follower is down: > 3 log segments of 10 MB
    w6_ops: int = 50_000
    time_limit: float = 30.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(w1_ops=200, w2_ops=3_000, w2_windows=(1_000,), w3_conns=8, w3_ops=800,
                   w4_repeats=1, w5_ops=600, w5_extra=400, w6_ops=3_000, time_limit=20.0)


def _summary(res: RunResult) -> dict[str, Any]:
    lat = res.latency_ms()
    return {"ops_per_s": round(res.ops_per_s, 1), "p50_ms": lat["p50"], "p99_ms": lat["p99"],
            "max_ms": lat["max"], "ok": res.ok, "errors": dict(res.errors),
            "completed": res.completed, "client_cpu": round(res.client_cpu, 2)}


def _run(side: Side, make: Any, n: int, outstanding: int, conns: int, limit: float,
         warm: Any) -> RunResult:
    # ``warm`` (the first request of the phase) is not sent: connections open with ``stat``,
    # answered at once by both sides, so a backlog cannot stall the opening.
    del warm
    target = side.peers[side.leader()]
    pools = open_pools(side.cookie, target, ("stat", [side.peer_name]), conns)
    try:
        return pipelined(pools, target, make, n, outstanding, limit)
    finally:
        for pool in pools:
            pool.close()


def w1_sequential(side: Side, sizes: Sizes, ops: Ops) -> dict[str, Any]:
    return _summary(_run(side, ops.put, sizes.w1_ops, 1, 1, sizes.time_limit, ops.put(0)))


def w2_pipelined(side: Side, sizes: Sizes, ops: Ops) -> dict[str, Any]:
    return {str(w): _summary(_run(side, ops.put, sizes.w2_ops, w, 1, sizes.time_limit,
                                  ops.put(0)))
            for w in sizes.w2_windows}


def w3_connections(side: Side, sizes: Sizes, ops: Ops) -> dict[str, Any]:
    return _summary(_run(side, ops.put, sizes.w3_ops, 1, sizes.w3_conns, sizes.time_limit,
                         ops.put(0)))


def w6_reads(side: Side, sizes: Sizes, ops: Ops) -> dict[str, Any]:
    return _summary(_run(side, ops.get, sizes.w6_ops, 1_000, 1, sizes.time_limit, ops.get(0)))


class LightLoad:
    """Open-loop writer: one unique key every ``interval`` s to the current target; an
    error moves the target (to the hinted leader, else the next node)."""

    def __init__(self, side: Side, ops: Ops, prefix: str, interval: float = 0.005,
                 max_outstanding: int = 200) -> None:
        self.side, self.ops, self.prefix = side, ops, prefix
        self.interval, self.max_outstanding = interval, max_outstanding
        self.pool = side.new_pool()
        self.lock = threading.Lock()
        self.target = side.leader()
        self.outstanding = 0
        self.acked: list[tuple[str, bytes, float, float]] = []
        self.errors: Counter[str] = Counter()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="bench-light")

    def start(self) -> LightLoad:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5.0)
        self.pool.close()

    def _loop(self) -> None:
        n = 0
        while not self.stopping.wait(self.interval):
            with self.lock:
                if self.outstanding >= self.max_outstanding:
                    continue
                self.outstanding += 1
                target = self.target
            key, value = f"{self.prefix}{n}", self.ops.values[n % len(self.ops.values)]
            n += 1
            op, args = self.ops.put_kv(key, value)
            sent = time.monotonic()
            self.pool.request(self.side.peers[target], op, args,
                              lambda s, p, k=key, v=value, t=target, at=sent:
                              self._reply(k, v, t, at, s, p))

    def _reply(self, key: str, value: bytes, target: int, sent: float, status: str,
               payload: Any) -> None:
        now = time.monotonic()
        with self.lock:
            self.outstanding -= 1
            if status == "ok":
                self.acked.append((key, value, sent, now))
                return
            self.errors[status] += 1
            if self.target == target:
                hint = payload.get("leader") if isinstance(payload, dict) else None
                peers = self.side.peers
                self.target = peers.index(hint) if hint in peers and hint != peers[target] \
                    else (target + 1) % len(peers)

    def first_ack_after(self, t: float) -> float | None:
        with self.lock:
            acks = [ack for _k, _v, sent, ack in self.acked if sent >= t]
        return min(acks) if acks else None


def _wait_for(pred: Any, timeout: float, poll: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value is not None or time.monotonic() >= deadline:
            return value
        time.sleep(poll)


def w4_failover(side: Side, sizes: Sizes, ops: Ops) -> dict[str, Any]:
    times: list[float] = []
    acked: list[tuple[str, bytes]] = []
    errors: Counter[str] = Counter()
    for rep in range(sizes.w4_repeats):
        leader = side.leader(30.0)
        load = LightLoad(side, ops, f"w4/{rep}/").start()
        _wait_for(lambda ld=load: True if len(ld.acked) >= 50 else None, 5.0)
        t_kill = time.monotonic()
        side.kill(leader)
        first = _wait_for(lambda ld=load, t=t_kill: ld.first_ack_after(t), 30.0)
        if first is not None:
            times.append(first - t_kill)
            _wait_for(lambda ld=load, f=first: True if len(ld.acked) and
                      time.monotonic() > f + 0.3 else None, 2.0)
        load.stop()
        acked += [(k, v) for k, v, _s, _a in load.acked]
        errors.update(load.errors)
        side.start_node(leader)
        side.leader(30.0)
    lost, unverified = verify_acked(side, ops, acked, sizes.time_limit)
    return {"first_commit_s": statistics.median(times) if times else None,
            "first_commit_all_s": [round(t, 3) for t in times],
            "no_commit_runs": sizes.w4_repeats - len(times),
            "acked": len(acked), "acked_lost": lost, "unverified": unverified,
            "write_errors": dict(errors)}


def verify_acked(side: Side, ops: Ops, acked: list[tuple[str, bytes]],
                 limit: float) -> tuple[int, int]:
    """Read every acknowledged key back through the leader: (lost, could not read)."""
    if not acked:
        return 0, 0
    leader = side.leader(30.0)
    target = side.peers[leader]
    pools = open_pools(side.cookie, target, ops.get(0), 1)
    try:
        res = pipelined(pools, target, lambda i: ops.get_key(acked[i][0]), len(acked),
                        200, limit, keep_payloads=True)
    finally:
        pools[0].close()
    payloads = res.payloads or {}
    lost = sum(1 for i, (_k, v) in enumerate(acked) if i in payloads and payloads[i] != v)
    return lost, len(acked) - len(payloads)


RSS_SETTLE_S = 2.0


def w5_large_values(side: Side, sizes: Sizes, ops4k: Ops) -> dict[str, Any]:
    term0 = side.max_term()
    res = _run(side, ops4k.put, sizes.w5_ops, 1_000, 1, sizes.time_limit, ops4k.put(0))
    out = _summary(res)
    out["mb_per_s"] = res.ok * ops4k.value_size / res.elapsed / 1e6 if res.elapsed else 0.0
    out["unplanned_elections"] = side.max_term() - term0
    out["rss_mb"] = [round(x, 1) for x in side.rss_mb()]
    # and once the nodes are idle again (snapshots finished, freed heap given back)
    time.sleep(RSS_SETTLE_S)
    out["rss_settled_mb"] = [round(x, 1) for x in side.rss_mb()]
    try:
        out.update(catch_up(side, sizes, ops4k))
    except Exception as exc:
        traceback.print_exc()
        out["catch_up_error"] = f"{type(exc).__name__}: {exc}"
        side.heal()
    return out


def catch_up(side: Side, sizes: Sizes, ops4k: Ops) -> dict[str, Any]:
    """Stop a follower, write past its log, restart it, time until it has caught up."""
    leader = side.leader(30.0)
    follower = next(i for i in range(len(side.peers)) if i != leader)
    before = side.stat(follower) or {}
    behind = int(before.get("applied") or 0)
    side.stop_node(follower)
    side.isolate(follower)
    compacted: bool | None = None
    for round_ in range(4):  # write until the others' logs start after the follower's
        _run(side, lambda i, r=round_: ops4k.put(i + 7 * (r + 1)), sizes.w5_extra, 1_000, 1,
             sizes.time_limit, ops4k.put(0))
        leader = side.leader(30.0)
        compacted = _wait_for(lambda ld=leader: _compacted_past(side, ld, behind), 2.0, 0.05)
        if compacted is not None:
            break
    lead = side.stat(leader) or {}
    goal = int(lead.get("commit") or 0)
    sent_before = _snapshot_bytes(side, leader)
    stream_before = _stream_stats(side, leader)
    side.heal()
    t0 = time.monotonic()
    side.start_node(follower)
    t_up = time.monotonic()

    def caught_up() -> float | None:
        st = side.stat(follower, 0.5)
        return time.monotonic() if st and int(st.get("applied") or 0) >= goal else None

    t_done = _wait_for(caught_up, 120.0, 0.02)
    sent = _snapshot_bytes(side, leader) - sent_before if sent_before is not None else None
    transfer = _transfer_rates(stream_before, _stream_stats(side, leader),
                               _stream_stats(side, follower))
    size = max(sent or 0, 16 * 2**20)
    out: dict[str, Any] = {
        "catch_up_compacted": compacted, "catch_up_snapshot_bytes": sent,
        "catch_up_path": "snapshot" if sent else ("log" if sent == 0 else "unknown"),
        "catch_up_entries": goal - behind,
        "sendfile_mb_per_s": max(sendfile_throughput(size) for _ in range(3)) / 1e6,
        **transfer}
    if t_done is None:
        out["catch_up_s"] = None
        return out
    out["catch_up_s"] = t_done - t0
    out["catch_up_after_listen_s"] = t_done - t_up
    if sent:
        out["catch_up_mb_per_s"] = sent / max(1e-9, t_done - t_up) / 1e6
    return out


def _compacted_past(side: Side, leader: int, index: int) -> bool | None:
    st = side.stat(leader) or {}
    if "first_index" not in st:
        return False  # PySyncObj does not report its compaction point
    return True if int(st["first_index"]) > index + 1 else None


def _stream_stats(side: Side, i: int) -> dict[str, Any] | None:
    """zraft's snapshot stream counters of node i (None on sides without them)."""
    fn = getattr(side, "node_status", None)
    st = fn(i) if fn is not None else None
    return ((st or {}).get("snapshots") or {}).get("stream") if fn is not None else None


def _transfer_rates(before: dict[str, Any] | None, after: dict[str, Any] | None,
                    receiver: dict[str, Any] | None) -> dict[str, Any]:
    """The transfer's own rates, apart from the end-to-end catch-up: the leader's sendfile
    bytes over its seconds in sendfile, and over its whole sends (connect to the
    receiver's "ok"); the restarted follower's received bytes over its whole receives
    (verifying and fsyncing included; its counters start with the restart)."""
    out: dict[str, Any] = {}
    if before is None or after is None:
        return out

    def delta(name: str) -> float:
        return float(after.get(name) or 0) - float(before.get(name) or 0)

    sent, sendfile_s, send_s = delta("sendfile_bytes"), delta("sendfile_seconds"), \
        delta("send_seconds")
    out["catch_up_sends"] = int(delta("sends_started"))
    if sent and sendfile_s > 0:
        out["transfer_sendfile_mb_per_s"] = sent / sendfile_s / 1e6
        out["transfer_sendfile_s"] = sendfile_s
    if sent and send_s > 0:
        out["transfer_send_mb_per_s"] = sent / send_s / 1e6
    if receiver:
        got, recv_s = float(receiver.get("bytes_received") or 0), \
            float(receiver.get("receive_seconds") or 0)
        if got and recv_s > 0:
            out["transfer_receive_mb_per_s"] = got / recv_s / 1e6
            out["transfer_receive_s"] = recv_s
            out["transfer_receive_sync_s"] = float(receiver.get("receive_sync_seconds") or 0)
    return out


def _snapshot_bytes(side: Side, leader: int) -> int | None:
    fn = getattr(side, "snapshot_bytes_sent", None)
    return fn(leader) if fn is not None else None


def run_all(side: Side, sizes: Sizes, only: set[str] | None = None) -> dict[str, Any]:
    """Every workload in an order that keeps faults last; terms and RSS around them."""
    want = only or {"W1", "W2", "W3", "W4", "W5", "W6"}
    ops = Ops(side.peer_name, 100)
    out: dict[str, Any] = {"label": side.label, "system": side.system,
                           "durability": side.durability}
    term0 = side.max_term()
    steps = [("W1", w1_sequential), ("W2", w2_pipelined), ("W3", w3_connections),
             ("W6", w6_reads)]
    for name, fn in steps:
        if name in want:
            out[name] = _guarded(name, fn, side, sizes, ops)
    out["unplanned_elections"] = side.max_term() - term0
    out["rss_mb"] = [round(x, 1) for x in side.rss_mb()]
    out["leader"] = side.leader_stats()
    if "W4" in want:
        out["W4"] = _guarded("W4", w4_failover, side, sizes, ops)
    if "W5" in want:
        out["W5"] = _guarded("W5", w5_large_values, side, sizes,
                             Ops(side.peer_name, 4096, 256))
    errors = {k: v["error"] for k, v in out.items() if isinstance(v, dict) and "error" in v}
    if errors:
        out["workload_errors"] = errors
    return out


def _guarded(name: str, fn: Any, *args: Any) -> dict[str, Any]:
    """One workload; a failure is recorded in its result and the next workload still runs
    (after the cluster has a leader again)."""
    try:
        return fn(*args)
    except Exception as exc:
        traceback.print_exc()
        return {"error": f"{name}: {type(exc).__name__}: {exc}"}
