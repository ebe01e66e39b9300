"""A small randomized cluster for the core's own fuzz tests (the full simulator lives in
zraft/testing). Persistence is asynchronous: a Ready's writes and persisted messages happen
at a later random step, and a crash loses everything not yet persisted."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from zraft.core.config import CoreConfig
from zraft.core.entries import CONFIG, ClusterConfig, Entry, HardState
from zraft.core.messages import (
    ConfigChangeResult,
    InstallSnapshot,
    ReadFailed,
    ReadState,
    Removed,
    SnapshotNeeded,
)
from zraft.core.raft import RaftCore
from zraft.core.ready import Ready
from zraft.core.storage import MemoryStorage


class Violation(AssertionError):
    pass


@dataclass
class Node:
    core: RaftCore
    storage: MemoryStorage
    pending: list[Ready] = field(default_factory=list)
    applied: list[tuple[int, int]] = field(default_factory=list)  # (index, term)
    last_applied: int = 0
    alive: bool = True
    removed: bool = False


class Fuzz:
    def __init__(self, seed: int, n: int = 3, pool: int = 5, **cfg: Any) -> None:
        self.rng = random.Random(seed)
        cfg.setdefault("election_ticks", 10)
        cfg.setdefault("heartbeat_ticks", 3)
        self.cfg = CoreConfig(**cfg)
        self.pool = [f"p{i}" for i in range(pool)]
        self.nodes: dict[str, Node] = {}
        first = self.pool[:n]
        for p in self.pool:
            st = MemoryStorage()
            if p in first:
                st.append([Entry(1, 1, CONFIG, ClusterConfig.stable(first), 0)])
                st.set_hard_state(HardState(1, None))
            self.nodes[p] = Node(self._core(p, st), st)
        self.queue: list[Any] = []
        self.cut: set[frozenset[str]] = set()
        self.leaders: dict[int, str] = {}
        self.committed: dict[int, int] = {}  # index -> term, from any applied entry
        self.reads: dict[Any, int] = {}
        self.read_seq = 0
        self.burned: set[str] = set()
        self.clock = 0
        self.stats = {"applied": 0, "reads": 0, "changes": 0, "snapshots": 0, "restarts": 0}

    def _core(self, p: str, st: MemoryStorage) -> RaftCore:
        return RaftCore(p, st, self.cfg, random.Random(self.rng.random()))

    # -- driver -----------------------------------------------------------------------------

    def take_ready(self, node: Node) -> None:
        core = node.core
        if not core.has_ready():
            return
        rd = core.ready()
        node.pending.append(rd)
        if len(node.pending) == 1 and not (rd.must_persist or rd.compact_to):
            self.persist_one(node)  # nothing to write: durable as soon as earlier ones are
        self.send(rd.messages)
        if rd.snapshot is not None:
            # the driver installs the received state machine at meta.index
            node.last_applied = rd.snapshot.index
        for e in rd.committed:
            if e.index != node.last_applied + 1:
                raise Violation(f"{core.id}: applied {e.index} after {node.last_applied}")
            node.last_applied = e.index
            t = self.committed.setdefault(e.index, e.term)
            if t != e.term:
                raise Violation(f"{core.id}: applied ({e.index},{e.term}), committed term {t}")
            self.stats["applied"] += 1
        for r in rd.reads:
            if isinstance(r, ReadState):
                need = self.reads.pop(r.ctx)
                if r.index < need:
                    raise Violation(f"read {r.ctx} at {r.index} misses write {need}")
                self.stats["reads"] += 1
            elif isinstance(r, ReadFailed):
                self.reads.pop(r.ctx, None)
        for ev in rd.events:
            if isinstance(ev, SnapshotNeeded):
                if self.rng.random() < 0.8:
                    self.queue.append(
                        InstallSnapshot(core.term, core.id, ev.peer, ev.meta, core.epoch)
                    )
                else:
                    core.snapshot_failed(ev.peer)
            elif isinstance(ev, Removed):
                node.removed = True
            elif isinstance(ev, ConfigChangeResult) and ev.error is None:
                self.stats["changes"] += 1
        core.advance(rd)

    def persist_one(self, node: Node) -> None:
        if not node.pending:
            return
        rd = node.pending.pop(0)
        st = node.storage
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot)
        if rd.entries:
            st.append(rd.entries)
        if rd.compact_to:
            st.compact(rd.compact_to)
        self.send(rd.persisted_messages)
        node.core.persisted(rd.number)

    def send(self, msgs: list[Any]) -> None:
        for m in msgs:
            if frozenset((m.src, m.dst)) in self.cut:
                continue
            self.queue.append(m)

    def deliver(self) -> None:
        if not self.queue:
            return
        i = self.rng.randrange(len(self.queue)) if self.rng.random() < 0.3 else 0
        m = self.queue.pop(i)
        r = self.rng.random()
        node = self.nodes.get(m.dst)
        if r < 0.05 or node is None or frozenset((m.src, m.dst)) in self.cut:
            if isinstance(m, InstallSnapshot):
                # the out-of-band transfer failed: the driver tells the leader
                self.nodes[m.src].core.snapshot_failed(m.dst)
            return
        if r < 0.08:
            self.queue.append(m)  # duplicated
        node.core.step(m)

    def crash_restart(self, p: str) -> None:
        node = self.nodes[p]
        node.pending = []
        node.core = self._core(p, node.storage)
        # the state machine restarts from the snapshot (a real driver replays from there)
        node.last_applied = node.storage.snapshot.index
        node.core.applied = node.last_applied
        self.stats["restarts"] += 1

    # -- invariants -------------------------------------------------------------------------

    def check(self) -> None:
        for p, node in self.nodes.items():
            c = node.core
            if c.role == "leader":
                prev = self.leaders.setdefault(c.term, p)
                if prev != p:
                    raise Violation(f"two leaders in term {c.term}: {prev}, {p}")
                if getattr(c, "_fuzz_checked", None) != c.term:
                    c._fuzz_checked = c.term
                    log = c.log
                    for i, t in self.committed.items():
                        if i > log.snapshot.index and log.term(i) != t:
                            raise Violation(f"leader {p} t{c.term} lacks committed {i}")

    # -- the random walk --------------------------------------------------------------------

    def run(self, steps: int) -> None:
        rng = self.rng
        peers = self.pool
        for _ in range(steps):
            self.clock += 1
            x = rng.random()
            p = rng.choice(peers)
            node = self.nodes[p]
            if x < 0.25:
                if node.alive:
                    node.core.tick()
            elif x < 0.60:
                self.deliver()
            elif x < 0.75:
                busy = [n for n in self.nodes.values() if n.pending]
                if busy:
                    self.persist_one(rng.choice(busy))
            elif x < 0.82:
                leaders = [n for n in self.nodes.values() if n.core.role == "leader"]
                if leaders:
                    self.client_op(rng.choice(leaders))
            elif x < 0.84:
                if node.core.applied > node.core.log.snapshot.index and rng.random() < 0.5:
                    idx = rng.randint(node.core.log.snapshot.index + 1, node.core.applied)
                    node.core.snapshot_taken(idx)
                    self.stats["snapshots"] += 1
            elif x < 0.842:
                self.crash_restart(p)
            elif x < 0.85:
                a, b = rng.sample(peers, 2)
                self.cut.add(frozenset((a, b)))
            elif x < 0.855:
                self.cut |= {frozenset((p, q)) for q in peers if q != p}  # isolate p
            elif x < 0.86:
                self.cut.clear()
            for n in self.nodes.values():
                self.take_ready(n)
            self.check()

    def settle(self, steps: int = 4000) -> RaftCore:
        """Heal everything and run loss-free until one leader commits a fresh entry
        everywhere in its configuration (liveness)."""
        self.cut.clear()
        for node in self.nodes.values():
            while node.pending:
                self.persist_one(node)
        marker = None
        for i in range(steps):
            for node in self.nodes.values():
                if i % 3 == 0:
                    node.core.tick()
            while self.queue:
                m = self.queue.pop(0)
                node = self.nodes.get(m.dst)
                if node is not None:
                    node.core.step(m)
                for n in self.nodes.values():
                    self.take_ready(n)
                    while n.pending:
                        self.persist_one(n)
            for n in self.nodes.values():
                self.take_ready(n)
                while n.pending:
                    self.persist_one(n)
            self.check()
            lead = next((n.core for n in self.nodes.values() if n.core.role == "leader"), None)
            if lead is None:
                continue
            if marker is None or marker[1] != lead.term:
                ((idx, _),) = lead.propose([b"marker"], self.clock)
                marker = (idx, lead.term)
            cfg = lead.log.config()[1]
            if not cfg.is_joint and all(
                self.nodes[p].last_applied >= marker[0] for p in cfg.old
            ):
                return lead
        raise Violation("no progress after healing: " + repr(
            {p: (n.core.role, n.core.term, n.core.commit, n.core.log.last_index())
             for p, n in self.nodes.items()}))

    def client_op(self, node: Node) -> None:
        c = node.core
        if c.role != "leader":
            return
        r = self.rng.random()
        if r < 0.6:
            c.propose([b"w%d" % self.clock], self.clock)
        elif r < 0.9:
            self.read_seq += 1
            ctx = ("r", self.read_seq)
            # a linearizable read must see every write applied anywhere before it started
            self.reads[ctx] = max(self.committed, default=0)
            c.read(ctx)
        else:
            cidx, cfg = c.log.config()
            if cfg.is_joint:
                return
            members = set(cfg.old)
            cand = self.rng.choice(self.pool)
            if cand in members and len(members) > 1:
                members.discard(cand)
                self.burned.add(cand)  # a removed peer id stops for good: never re-added
            elif cand not in members and cand not in self.burned:
                members.add(cand)
            c.change_config(sorted(members), cidx, ("cc", self.clock), 200)
