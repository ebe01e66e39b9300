"""A tiny synchronous network of RaftCores for the core tests (etcd's raft_test network).

Each peer has a MemoryStorage; ``drive()`` runs Ready -> persist -> send -> advance until
quiet. Messages travel through one FIFO queue; ``cut``/``isolate`` drop traffic.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Any

from zraft.core.config import CoreConfig
from zraft.core.entries import ClusterConfig, Entry, HardState
from zraft.core.raft import RaftCore
from zraft.core.ready import Ready
from zraft.core.storage import MemoryStorage

CONFIG_TYPE = 1


def make_core(
    peer: str, storage: MemoryStorage | None = None, seed: int = 1, **cfg: Any
) -> RaftCore:
    cfg.setdefault("election_ticks", 10)
    cfg.setdefault("heartbeat_ticks", 2)
    return RaftCore(peer, storage or MemoryStorage(), CoreConfig(**cfg), random.Random(seed))


def seeded_storage(peers: list[str], term: int = 1) -> MemoryStorage:
    """A storage whose log holds CONFIG{old=peers} at index 1 (a formed cluster)."""
    st = MemoryStorage()
    st.append([Entry(1, term, CONFIG_TYPE, ClusterConfig.stable(peers), 0)])
    st.set_hard_state(HardState(term, None))
    return st


class Net:
    def __init__(self, peers: list[str], seed: int = 1, seeded: bool = True, **cfg: Any):
        self.peers = list(peers)
        self.cfg = cfg
        self.storages: dict[str, MemoryStorage] = {}
        self.cores: dict[str, RaftCore] = {}
        for i, p in enumerate(peers):
            st = seeded_storage(peers) if seeded else MemoryStorage()
            self.storages[p] = st
            self.cores[p] = make_core(p, st, seed=seed + i, **cfg)
        self.queue: deque[Any] = deque()
        self.dropped: set[tuple[str, str]] = set()
        self.applied: dict[str, list[Entry]] = {p: [] for p in peers}
        self.reads: dict[str, list[Any]] = {p: [] for p in peers}
        self.events: dict[str, list[Any]] = {p: [] for p in peers}
        self.readies: dict[str, list[Ready]] = {p: [] for p in peers}
        self.filter: Callable[[Any], bool] | None = None
        self.auto_persist = True
        self.sent: list[Any] = []
        self.held: list[tuple[str, Ready]] = []

    # -- topology --------------------------------------------------------------------------

    def add(self, peer: str, storage: MemoryStorage | None = None, seed: int = 99) -> RaftCore:
        st = storage or MemoryStorage()
        self.storages[peer] = st
        self.cores[peer] = make_core(peer, st, seed=seed, **self.cfg)
        self.peers.append(peer)
        for d in (self.applied, self.reads, self.events, self.readies):
            d.setdefault(peer, [])
        return self.cores[peer]

    def restart(self, peer: str, seed: int = 7) -> RaftCore:
        self.cores[peer] = make_core(peer, self.storages[peer], seed=seed, **self.cfg)
        self.applied[peer] = []
        return self.cores[peer]

    def cut(self, a: str, b: str) -> None:
        self.dropped |= {(a, b), (b, a)}

    def isolate(self, peer: str) -> None:
        for p in self.peers:
            if p != peer:
                self.cut(peer, p)

    def heal(self) -> None:
        self.dropped.clear()

    # -- driving ---------------------------------------------------------------------------

    def process(self, peer: str) -> bool:
        core = self.cores[peer]
        if not core.has_ready():
            return False
        rd = core.ready()
        self.readies[peer].append(rd)
        st = self.storages[peer]
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot)
        if rd.entries:
            st.append(rd.entries)
        if rd.compact_to:
            st.compact(rd.compact_to)
        self._send(rd.messages)
        if self.auto_persist:
            self._send(rd.persisted_messages)
            core.persisted(rd.number)
        else:
            self.held.append((peer, rd))
        self.applied[peer].extend(rd.committed)
        self.reads[peer].extend(rd.reads)
        self.events[peer].extend(rd.events)
        core.advance(rd)
        return True

    def release(self, peer: str | None = None) -> None:
        """Make held Readies durable (auto_persist=False mode), in order."""
        keep = []
        for p, rd in self.held:
            if peer is None or p == peer:
                self._send(rd.persisted_messages)
                self.cores[p].persisted(rd.number)
            else:
                keep.append((p, rd))
        self.held = keep

    def _send(self, msgs: list[Any]) -> None:
        for m in msgs:
            self.sent.append(m)
            if (m.src, m.dst) in self.dropped:
                continue
            if self.filter is not None and not self.filter(m):
                continue
            self.queue.append(m)

    def drive(self, limit: int = 100000) -> None:
        for _ in range(limit):
            busy = False
            for p in self.peers:
                busy |= self.process(p)
            if self.queue:
                m = self.queue.popleft()
                if m.dst in self.cores:
                    self.cores[m.dst].step(m)
                busy = True
            if not busy:
                return
        raise AssertionError("network did not settle")

    def tick(self, peer: str | None = None, n: int = 1) -> None:
        for _ in range(n):
            for p in [peer] if peer else self.peers:
                self.cores[p].tick()
            self.drive()

    def spread_commit(self, peer: str) -> None:
        """One tick of leader ``peer``: followers learn its commit index (commit news
        waits for a tick or the next append)."""
        self.tick(peer)

    def elect(self, peer: str) -> RaftCore:
        self.cores[peer].campaign()
        self.drive()
        assert self.cores[peer].role == "leader", self.cores[peer].status()
        return self.cores[peer]

    def leader(self) -> RaftCore | None:
        leaders = [c for c in self.cores.values() if c.role == "leader"]
        return max(leaders, key=lambda c: c.term) if leaders else None

    def data(self, peer: str) -> list[bytes]:
        return [e.data for e in self.applied[peer] if e.type == 2]


def flush(core: RaftCore, storage: MemoryStorage | None = None, persist: bool = True) -> Ready:
    """Take one Ready from a lone core, write it to ``storage`` and mark it durable."""
    rd = core.ready()
    st = storage if storage is not None else core.log.storage
    if rd.hard_state is not None:
        st.set_hard_state(rd.hard_state)
    if rd.snapshot is not None:
        st.apply_snapshot(rd.snapshot)
    if rd.entries:
        st.append(rd.entries)
    if rd.compact_to:
        st.compact(rd.compact_to)
    if persist:
        core.persisted(rd.number)
    core.advance(rd)
    return rd


def all_msgs(rd: Ready) -> list[Any]:
    return list(rd.messages) + list(rd.persisted_messages)


def E(index: int, term: int, data: Any = b"x", typ: int = 2) -> Entry:
    return Entry(index, term, typ, data, 0)
