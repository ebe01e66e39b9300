"""The bench workload: C clients x K requests in flight over one ConnectionPool.

Rules:
- Each slot (a client's in-flight request) sends one operation, and on its reply at once the
  next: the pool pipelines every slot's requests over one connection per node. Writes are
  plain ``propose`` of ``["put", key, value]`` (at-least-once, as zraft_lib's plain writes);
  reads are linearizable ``query`` of ``["get", key]``.
- With ``groups``, each operation goes to the next group in turn (their peers: each name on
  the nodes of ``peers``), else to the peers' own group.
- Requests go to the group's leader guess, shared by all slots; ``not_leader`` with a hint moves the
  guess and resends at once; an unreachable, timed-out or busy peer clears the guess and the
  slot retries on the next peer after a short pause. An operation's latency runs from its
  first attempt to its success, so faults show up as latency, not as lost samples.
- Connection callbacks run on reader threads: they only update slot state under one lock
  and queue sends; no callback waits. Sends happen outside the lock (a dead connection calls
  back synchronously). Stale replies (a slot moved on: timeout, stop) are ignored by
  generation number.
- Ctrl-C (KeyboardInterrupt in ``run``) ends the run early, not the program: ``interrupted``
  is set, ``measured`` is the time actually run, in-flight requests get a short drain (none
  after a second Ctrl-C), and what was recorded is returned as for a full run.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zraft.client.connection import ConnectionPool
from zraft.ids import node_of
from zraft.loadgen.recorder import Recorder
from zraft.transport.codec import pack

_RETRY_PAUSE = 0.05
_SWEEP_EVERY = 0.05


@dataclass
class BenchConfig:
    clients: int = 4
    inflight: int = 8
    duration: float = 10.0
    value_size: int = 100
    read_ratio: float = 0.0  # 0..1
    request_timeout: float = 2.0
    keys_per_client: int = 1000
    bucket: float = 0.0  # timeline resolution; 0 = duration / 60, at least 0.2 s
    groups: list[str] | None = None  # group names to spread over (None: the peers' group)

    def bucket_seconds(self) -> float:
        return self.bucket or max(0.2, self.duration / 60)


@dataclass
class _Slot:
    client: int
    number: int
    gen: int = 0
    busy: bool = False
    kind: str = "write"
    key: str = ""
    started: float = 0.0
    deadline: float = 0.0
    target: str = ""
    group: str = ""
    cancel: Callable[[], None] | None = None


class Workload:
    """Run ``config`` against ``peers`` (peer ids) and fill ``recorder``."""

    def __init__(self, pool: ConnectionPool, peers: list[str], config: BenchConfig,
                 seed: int | None = None) -> None:
        if not peers:
            raise ValueError("no peers to bench")
        self.pool = pool
        self.peers = list(peers)
        self.peer_name = peers[0].partition("@")[0]
        self.config = config
        self.rng = random.Random(seed)
        self.value = bytes(self.rng.getrandbits(8) for _ in range(config.value_size))
        self.lock = threading.Lock()
        # one leader guess per group; each group's peers are its name on the peers' nodes
        self.groups = list(config.groups or [self.peer_name])
        self.members = ({g: [f"{g}@{node_of(p)}" for p in self.peers] for g in self.groups}
                        if config.groups else {self.peer_name: self.peers})
        self.leaders: dict[str, str | None] = {}
        self._next_group = itertools.count()
        self._rr = itertools.count()
        self.running = False
        self.redirects = 0
        self.retries = 0
        self.start_wall = 0.0
        self.start = 0.0
        self.interrupted = False
        self.measured = 0.0  # seconds actually run (less than the duration if interrupted)
        self.recorder = Recorder(time.monotonic(), config.bucket_seconds())
        self.slots = [_Slot(c, k) for c in range(config.clients) for k in range(config.inflight)]
        self._timers: list[tuple[float, int, _Slot, int]] = []
        self._timer_ids = itertools.count()
        self._wake = threading.Condition(self.lock)

    # ---------------------------------------------------------------- running

    def run(self, on_tick: Callable[[float], None] | None = None) -> Recorder:
        """Run for ``config.duration`` seconds; ``on_tick(elapsed)`` about twice a second."""
        self.start_wall = time.time()
        self.start = time.monotonic()
        self.recorder = Recorder(self.start, self.config.bucket_seconds())
        self.running = True
        timer_thread = threading.Thread(target=self._timer_loop, name="zraft-bench-timers",
                                        daemon=True)
        timer_thread.start()
        end = self.start + self.config.duration
        try:
            for slot in self.slots:
                self._begin(slot)
            while (now := time.monotonic()) < end:
                time.sleep(min(0.5, end - now))
                if on_tick is not None:
                    on_tick(time.monotonic() - self.start)
        except KeyboardInterrupt:
            self.interrupted = True
        self.measured = min(time.monotonic() - self.start, self.config.duration)
        try:
            self.stop(drain=0.5 if self.interrupted else 2.0)
        except KeyboardInterrupt:  # a second Ctrl-C: stop without waiting for the drain
            self.interrupted = True
            self.stop(drain=0.0)
        timer_thread.join(timeout=2.0)
        return self.recorder

    def stop(self, drain: float = 2.0) -> None:
        """Stop issuing; let in-flight requests finish for up to ``drain`` seconds."""
        with self.lock:
            self.running = False
            for _, _, slot, gen in self._timers:  # waiting to retry: nothing in flight
                if slot.gen == gen:
                    slot.busy = False
            self._timers.clear()
            self._wake.notify_all()
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline:
            with self.lock:
                if not any(s.busy for s in self.slots):
                    break
            time.sleep(0.01)
        with self.lock:
            cancels = [s.cancel for s in self.slots if s.busy and s.cancel is not None]
            for s in self.slots:
                s.gen += 1
                s.busy = False
        for cancel in cancels:
            cancel()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    # ---------------------------------------------------------------- one slot

    def _begin(self, slot: _Slot) -> None:
        """Pick the slot's next operation and send it."""
        with self.lock:
            if not self.running:
                slot.busy = False
                return
            slot.kind = "read" if self.rng.random() < self.config.read_ratio else "write"
            slot.key = f"bench/{slot.client}/{self.rng.randrange(self.config.keys_per_client)}"
            slot.group = self.groups[next(self._next_group) % len(self.groups)]
            slot.started = time.monotonic()
            slot.busy = True
        self._send(slot)

    def _send(self, slot: _Slot) -> None:
        with self.lock:
            if not self.running:
                slot.busy = False
                return
            members = self.members[slot.group]
            target = self.leaders.get(slot.group) or members[next(self._rr) % len(members)]
            slot.gen += 1
            gen = slot.gen
            slot.target = target
            slot.deadline = time.monotonic() + self.config.request_timeout
            slot.cancel = None
        if slot.kind == "write":
            op, args = "propose", [slot.group, pack([1, ["put", slot.key, self.value]]), None]
        else:
            op, args = "query", [slot.group, ["get", slot.key], None, None]
        cancel = self.pool.request(target, op, args,
                                   lambda status, payload: self._reply(slot, gen, status, payload))
        with self.lock:
            if slot.gen == gen:
                slot.cancel = cancel

    def _reply(self, slot: _Slot, gen: int, status: str, payload: Any) -> None:
        now = time.monotonic()
        with self.lock:
            if slot.gen != gen or not slot.busy:
                return  # stale: the slot timed out, or the run stopped
            slot.gen += 1
            target = slot.target
        if status == "ok":
            self.recorder.done(slot.kind, slot.started, now)
            self._begin(slot)
            return
        hint = payload.get("leader") if isinstance(payload, dict) else None
        if status == "not_leader" and isinstance(hint, str) and hint != target:
            with self.lock:
                self.leaders[slot.group] = hint
                self.redirects += 1
            self._send(slot)
            return
        self.recorder.error(status)
        self._retry_later(slot, target)

    def _retry_later(self, slot: _Slot, failed_target: str) -> None:
        with self.lock:
            if self.leaders.get(slot.group) == failed_target:
                self.leaders[slot.group] = None
            self.retries += 1
            gen = slot.gen
            heapq.heappush(self._timers, (time.monotonic() + _RETRY_PAUSE,
                                          next(self._timer_ids), slot, gen))
            self._wake.notify()

    # ---------------------------------------------------------------- timers

    def _timer_loop(self) -> None:
        next_sweep = time.monotonic()
        while True:
            due: list[_Slot] = []
            expired: list[tuple[_Slot, str, Callable[[], None] | None]] = []
            with self.lock:
                if not self.running:
                    return
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, slot, gen = heapq.heappop(self._timers)
                    if slot.gen == gen and slot.busy:
                        due.append(slot)
                if now >= next_sweep:
                    next_sweep = now + _SWEEP_EVERY
                    for slot in self.slots:
                        if slot.busy and slot.cancel is not None and slot.deadline < now:
                            slot.gen += 1
                            expired.append((slot, slot.target, slot.cancel))
                            slot.cancel = None
                wait = min(_SWEEP_EVERY, (self._timers[0][0] - now) if self._timers else 1.0)
                if not due and not expired:
                    self._wake.wait(max(0.001, wait))
            for slot in due:
                self._send(slot)
            for slot, target, cancel in expired:
                if cancel is not None:
                    cancel()
                self.recorder.error("local_timeout")
                self._retry_later(slot, target)
