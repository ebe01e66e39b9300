"""SimCluster: a deterministic in-memory cluster of RaftCores for tests and seed sweeps.

Rules:
- One ``random.Random(seed)`` drives everything (each core gets its own Random derived from
  it); peers are iterated in sorted order; so a seed always produces the same run, and the
  optional transcript is byte-stable.
- A *step* is one scheduler action: deliver one message, complete one write, tick one node,
  one client call or one fault. Safety invariants are checked as each node's Ready is
  handled (``zraft.testing.sim.invariants``), i.e. after every step.
- Nodes start from an identical durable snapshot at index 1 holding the initial
  configuration, so start-up is the restart path; or, with ``bootstrap=True``, as
  zraft_lib's create(): the first node bootstraps alone, the rest are blank until added.
- Clients record ``Operation``s (``zraft.testing.linearizability``): a write/cas is ``ok``
  when the node that proposed it applies it, ``fail`` when NotLeader is raised or another
  entry is applied at its index, and stays ``unknown`` otherwise (crash, lost leadership).
  Reads are ``ok`` when the ReadState's index is applied on the node that confirmed it.
- With quiescence on (``core_config.quiesce_ticks``), crashes, restarts and cuts produce
  node-level failure signals (``zraft.testing.sim.signals``), delivered after each step
  once due; without it no signal is drawn, so such runs replay as before.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

from zraft.core.config import CoreConfig
from zraft.core.entries import ClusterConfig, SnapshotMeta
from zraft.core.errors import NotLeader
from zraft.core.storage import MemoryStorage
from zraft.testing.linearizability import CAS, FAIL, OK, READ, UNKNOWN, WRITE, Operation
from zraft.testing.sim.invariants import SafetyChecker
from zraft.testing.sim.kv import encode
from zraft.testing.sim.network import SimNetwork
from zraft.testing.sim.node import SimNode
from zraft.testing.sim.signals import REACHABLE, RESTARTED, UNREACHABLE, SimSignals

MS_PER_STEP = 10


def _default_core_factory(peer_id: str, storage: Any, config: CoreConfig, rng: random.Random):
    from zraft.core.raft import RaftCore

    return RaftCore(peer_id, storage, config, rng)


class SimCluster:
    def __init__(
        self,
        seed: int,
        nodes: int = 3,
        core_config: CoreConfig | None = None,
        snapshot_every: int = 10,
        transcript: bool = False,
        core_factory: Callable[..., Any] | None = None,
        bootstrap: bool = False,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        config = core_config or CoreConfig()
        # every message carries the cluster's identity: a message built without it would
        # be refused (SafetyAlarm), which the run reports as a violation
        self.core_config = (config if config.cluster_id
                            else dataclasses.replace(config, cluster_id=f"sim-{seed}"))
        self.core_factory = core_factory or _default_core_factory
        self.snapshot_every = snapshot_every
        self.snapshot_failure_rate = 0.0
        self.snapshot_failures: list[tuple[str, str]] = []
        self.network = SimNetwork(self.rng)
        self.signals = SimSignals(self.rng)
        self.quiescent = self.core_config.quiesce_ticks > 0
        self.checker = SafetyChecker()
        self.nodes: dict[str, SimNode] = {}
        self.history: list[Operation] = []
        self.acknowledged: list[tuple[int, int]] = []
        self._positions: dict[int, tuple[int, int]] = {}  # id(op) -> (index, term) proposed
        self.effects: dict[int, tuple[float, Any]] = {}  # op id -> (first applied, result)
        self.config_results: list[tuple[str, Any]] = []
        self.transfer_results: list[tuple[str, Any]] = []
        self.leader_hint: str | None = None
        self.now = 0
        self.transcript: list[str] | None = [] if transcript else None
        self._next_node = nodes + 1
        self._next_ctx = 0
        self.initial = initial = [f"n{i}" for i in range(1, nodes + 1)]
        meta = SnapshotMeta(1, 1, 1, ClusterConfig.stable(initial))
        for peer in initial:
            storage = MemoryStorage()
            if not bootstrap:
                storage.apply_snapshot(meta)
            node = SimNode(peer, self, storage)
            if not bootstrap:
                node.durable_images[1] = {}
            self.nodes[peer] = node
        if bootstrap:
            # zraft_lib's create(): the first peer bootstraps alone, the others are blank
            # and wait to be added with change_config (see grow()).
            first = self.nodes[initial[0]]
            first.start(random.Random(self.rng.getrandbits(64)))
            first.core.bootstrap(0)
            first.drain()
            while first.writes:  # create() returns once the bootstrap entry is durable
                first.complete_write()
            for peer in initial[1:]:
                self._start(peer)
        else:
            for peer in initial:
                self._start(peer)

    # -- bookkeeping ----------------------------------------------------------------------

    def log(self, text: str) -> None:
        if self.transcript is not None:
            self.transcript.append(f"{self.now} {text}")

    def _start(self, peer: str) -> None:
        node = self.nodes[peer]
        node.start(random.Random(self.rng.getrandbits(64)))
        node.drain()

    def up_nodes(self) -> list[str]:
        return [p for p in sorted(self.nodes) if self.nodes[p].up]

    def down_nodes(self) -> list[str]:
        return [p for p in sorted(self.nodes) if not self.nodes[p].up and not self.nodes[p].removed]

    def leader(self) -> str | None:
        """The up node that believes it leads, in the highest term (None if none)."""
        best = None
        for peer in self.up_nodes():
            node = self.nodes[peer]
            if node.role == "leader" and (best is None or node.term > self.nodes[best].term):
                best = peer
        return best

    def status(self, peer: str) -> dict[str, Any]:
        return self.nodes[peer].core.status()

    def epoch_of(self, node: SimNode) -> int:
        return int(node.core.status()["epoch"])

    def members(self) -> list[str]:
        """Voters (both halves when joint) of the configuration the current leader (or else
        the first up node) holds."""
        source = self.leader() or (self.up_nodes() or [None])[0]
        if source is None:
            return []
        config = self.status(source)["config"]
        return sorted(set(config["old"]) | set(config["new"]))

    # -- scheduler actions (each is one step) ---------------------------------------------

    def deliver(self, fifo: bool = False) -> bool:
        """Deliver one in-flight message; False when none was delivered."""
        self.now += 1
        envelope = self.network.take(fifo)
        if envelope is None:
            return False
        node = self.nodes.get(envelope.dst)
        if node is None or not node.up:
            if envelope.payload is not None:  # a snapshot that never arrived
                self.network.lost.append(envelope)
            return False
        self.log(f"deliver {envelope.src}->{envelope.dst} {type(envelope.msg).__name__}")
        node.receive(envelope.msg, envelope.payload)
        return True

    def snapshot_failed(self, leader: str, peer: str) -> None:
        node = self.nodes.get(leader)
        if node is not None and node.up:
            node.core.snapshot_failed(peer)
            node.drain()

    def persist(self, peer: str | None = None) -> bool:
        """Complete the oldest queued write of ``peer`` (a random node with writes if None)."""
        self.now += 1
        if peer is None:
            busy = [p for p in sorted(self.nodes) if self.nodes[p].writes]
            if not busy:
                return False
            peer = self.rng.choice(busy)
        node = self.nodes[peer]
        if not node.up or not node.writes:
            return False
        self.log(f"persist {peer}")
        node.complete_write()
        return True

    def after_step(self) -> None:
        """Report snapshot transfers that failed during the step to their leaders, and
        deliver the failure signals now due."""
        if self.signals.pending:
            self._deliver_signals()
        if self.network.lost:
            lost, self.network.lost = self.network.lost, []
            self.snapshot_failures.extend((e.src, e.dst) for e in lost)
        if self.snapshot_failures:
            failures, self.snapshot_failures = self.snapshot_failures, []
            for leader, peer in failures:
                self.snapshot_failed(leader, peer)

    def tick(self, peer: str) -> None:
        self.now += 1
        node = self.nodes[peer]
        if not node.up:
            return
        self.log(f"tick {peer}")
        node.core.tick()
        node.drain()

    def tick_all(self) -> None:
        for peer in self.up_nodes():
            self.tick(peer)

    # -- failure signals (quiescence) -----------------------------------------------------

    def _signal_others(self, kind: str, about: str) -> None:
        if self.quiescent:
            if kind == UNREACHABLE:  # ``about`` crashed: what its detector had is gone
                self.signals.forget_dst(about)
            for peer in sorted(self.nodes):
                if peer != about and self.nodes[peer].up:  # a down node's detector is gone
                    self.signals.schedule(self.now, peer, kind, about)

    def _signal_cuts(self, before: set[tuple[str, str]]) -> None:
        """Links cut by the last fault: b will hear that a is unreachable; links healed:
        that it is reachable again (if both are up: else a restart tells)."""
        if self.quiescent:
            after = self.network.blocked
            for a, b in sorted(after - before):
                if self.nodes[b].up:  # a down node's detector starts afresh on restart
                    self.signals.schedule(self.now, b, UNREACHABLE, a)
            for a, b in sorted(before - after):
                if self.nodes[a].up and self.nodes[b].up:
                    self.signals.schedule(self.now, b, REACHABLE, a)

    def _deliver_signals(self) -> None:
        for dst, kind, about in self.signals.take_due(self.now):
            node = self.nodes.get(dst)
            if node is None or not node.up:
                continue
            self.log(f"signal {dst}: {about} {kind}")
            if kind == UNREACHABLE:
                node.core.peer_unreachable(about)
            elif kind == REACHABLE:
                node.core.peer_reachable(about)
            else:
                node.core.peer_restarted(about)
            self.signals.delivered += 1
            node.drain()

    # -- clients --------------------------------------------------------------------------

    def _invoke(self, peer: str, kind: str, key: str, value: Any, expected: Any,
                client: Any) -> Operation:
        self.now += 1
        process = peer if client is None else client
        op = Operation(process, kind, key, value, expected, self.now, None, UNKNOWN, None)
        self.history.append(op)
        return op

    def write(self, peer: str, key: str, value: int, client: Any = None) -> Operation:
        """Client ``client`` (default: one per node) asks ``peer`` to write."""
        return self._propose(peer, WRITE, key, value, None, client)

    def cas(self, peer: str, key: str, expected: int | None, value: int,
            client: Any = None) -> Operation:
        return self._propose(peer, CAS, key, value, expected, client)

    def _propose(self, peer: str, kind: str, key: str, value: Any, expected: Any,
                 client: Any) -> Operation:
        op = self._invoke(peer, kind, key, value, expected, client)
        node = self.nodes[peer]
        if not node.up:
            self.complete(op, FAIL, None)
            return op
        op_id = len(self.history) - 1
        data = encode(kind, key, value, expected, op_id)
        self.log(f"propose p{op.process} {peer} {kind} {key}={value} expected={expected}")
        try:
            placed = node.core.propose([data], self.now * MS_PER_STEP)
        except NotLeader:
            self.complete(op, FAIL, None)
            return op
        index, term = placed[0]
        node.proposals[index] = (term, op)
        self._positions[id(op)] = (index, term)
        node.drain()
        return op

    def read(self, peer: str, key: str, client: Any = None) -> Operation:
        op = self._invoke(peer, READ, key, None, None, client)
        node = self.nodes[peer]
        if not node.up:
            self.complete(op, FAIL, None)
            return op
        ctx = len(self.history) - 1
        node.reads_pending[ctx] = op
        self.log(f"read p{op.process} {peer} {key}")
        try:
            node.core.read(ctx)
        except NotLeader:
            node.reads_pending.pop(ctx, None)
            self.complete(op, FAIL, None)
            return op
        node.drain()
        return op

    def complete(self, op: Operation, outcome: str, result: Any) -> None:
        self.log(f"complete p{op.process} {op.kind} {op.key} -> {outcome} {result}")
        op.complete_time = self.now + 0.5  # after any invoke in this step
        op.outcome = outcome
        op.result = result
        if outcome == OK and op.kind != READ:
            position = self._positions.get(id(op))
            if position is not None:
                self.acknowledged.append(position)

    def record_effect(self, op_id: int, result: Any) -> None:
        """Some node applied op ``op_id``: it took effect by now, whoever hears of it."""
        if op_id not in self.effects:
            self.effects[op_id] = (self.now + 0.5, result)

    def resolve_unknown(self) -> None:
        """After ``stabilize``: settle writes nobody heard back about. Applied somewhere
        means it took effect by the first apply (ok); never applied in a converged cluster
        means it never will be (fail). Reads stay unknown (the checker ignores them)."""
        for op_id, op in enumerate(self.history):
            if op.outcome != UNKNOWN or op.kind == READ:
                continue
            effect = self.effects.get(op_id)
            if effect is None:
                op.outcome = FAIL
            else:
                op.complete_time, op.result = effect
                op.outcome = OK

    # -- faults ---------------------------------------------------------------------------

    def crash(self, peer: str) -> None:
        self.now += 1
        node = self.nodes[peer]
        if not node.up:
            return
        self.log(f"crash {peer}")
        node.crash()
        self.network.discard_to(peer)
        self._signal_others(UNREACHABLE, peer)

    def damage(self, peer: str, first_lost: int) -> None:
        """Crash ``peer``, then lose its durable log from ``first_lost`` on (a disk that
        dropped synced data) and record, as the disk log does when its recovery finds
        damage, that it may have lost acknowledged entries: ``recovering`` = its term."""
        self.now += 1
        node = self.nodes[peer]
        if node.up:
            node.crash()
            self.network.discard_to(peer)
            self._signal_others(UNREACHABLE, peer)
        storage = node.storage
        lost = storage.lose_tail(first_lost)
        hs = storage.hard_state
        if lost and hs.term:
            storage.set_hard_state(hs._replace(recovering=max(hs.recovering, hs.term)))
        self.log(f"damage {peer}: lost {lost} entries from {first_lost}")

    def recovering(self, peer: str) -> int:
        """The peer's durable ``recovering`` mark (0 when its log is whole)."""
        return self.nodes[peer].storage.hard_state.recovering

    def restart(self, peer: str) -> None:
        self.now += 1
        node = self.nodes[peer]
        if node.up or node.removed:
            return
        self.log(f"restart {peer}")
        self._start(peer)
        if self.quiescent:
            self.signals.forget_dst(peer)
            self._signal_others(RESTARTED, peer)
            for other in sorted(self.nodes):  # what its own detector finds silent
                if other != peer and (not self.nodes[other].up
                                      or not self.network.can_reach(other, peer)):
                    self.signals.schedule(self.now, peer, UNREACHABLE, other)

    def snapshot(self, peer: str) -> bool:
        """Take a local snapshot on ``peer`` now (an operator's ``snapshot`` command)."""
        self.now += 1
        self.log(f"snapshot {peer}")
        node = self.nodes[peer]
        taken = node.take_snapshot()
        if taken:
            node.drain()
        return taken

    def partition(self, side_a: list[str], side_b: list[str]) -> None:
        self.now += 1
        self.log(f"partition {side_a} | {side_b}")
        before = set(self.network.blocked)
        self.network.partition(side_a, side_b)
        self._signal_cuts(before)

    def isolate(self, peer: str) -> None:
        self.now += 1
        self.log(f"isolate {peer}")
        before = set(self.network.blocked)
        self.network.isolate(peer, sorted(self.nodes))
        self._signal_cuts(before)

    def cut_one_way(self, src: str, dst: str) -> None:
        self.now += 1
        self.log(f"cut {src}->{dst}")
        before = set(self.network.blocked)
        self.network.cut_one_way(src, dst)
        self._signal_cuts(before)

    def heal(self) -> None:
        self.now += 1
        self.log("heal")
        before = set(self.network.blocked)
        self.network.heal()
        self._signal_cuts(before)

    # -- membership -----------------------------------------------------------------------

    def add_node(self) -> str:
        """Create a blank node (no configuration): passive until a leader contacts it."""
        peer = f"n{self._next_node}"
        self._next_node += 1
        self.nodes[peer] = SimNode(peer, self, MemoryStorage())
        self._start(peer)
        return peer

    def change_config(self, new_peers: list[str], timeout_ticks: int = 200) -> int | None:
        """Ask the current leader to move to ``new_peers``. Returns the request's ctx (see
        ``config_result_for``), or None when there is no leader to ask."""
        self.now += 1
        leader = self.leader()
        if leader is None:
            return None
        node = self.nodes[leader]
        prev_index = node.core.status()["config_index"]
        ctx = self._next_ctx
        self._next_ctx += 1
        self.log(f"change_config {leader} -> {sorted(new_peers)}")
        try:
            node.core.change_config(sorted(new_peers), prev_index, ctx, timeout_ticks)
        except NotLeader:
            return None
        node.drain()
        return ctx

    def grow(self, steps: int = 50_000) -> bool:
        """After ``bootstrap=True``: add the blank initial nodes with one config change,
        retrying until it succeeds. True once every initial node is a member."""
        def done() -> bool:
            return self.leader() is not None and self.members() == sorted(self.initial)

        pending: int | None = None
        for _ in range(steps // 500):
            if self.run(500, done):
                return True
            result = None if pending is None else self.config_result_for(pending)
            if pending is None or result is not None:
                pending = self.change_config(self.initial)
        return done()

    def config_result(self, peer: str, result: Any) -> None:
        self.log(f"config result {peer} {result.error}")
        self.config_results.append((peer, result))

    def config_result_for(self, ctx: int) -> Any:
        """The ConfigChangeResult of request ``ctx`` (None while it is pending)."""
        for _, result in self.config_results:
            if result.ctx == ctx:
                return result
        return None

    # -- leadership transfer --------------------------------------------------------------

    def transfer_leader(self, to: str | None, timeout_ticks: int = 0) -> int | None:
        """Ask the current leader to hand leadership to ``to`` (None: the most up-to-date
        voter). Returns the request's ctx (see ``transfer_results``), or None without a
        leader."""
        self.now += 1
        leader = self.leader()
        if leader is None:
            return None
        ctx = self._next_ctx
        self._next_ctx += 1
        self.log(f"transfer_leader {leader} -> {to}")
        node = self.nodes[leader]
        node.core.transfer_leader(to, ctx, timeout_ticks)
        node.drain()
        return ctx

    def transfer_result(self, peer: str, result: Any) -> None:
        self.log(f"transfer result {peer} {result.error} leader={result.leader}")
        self.transfer_results.append((peer, result))

    def node_removed(self, peer: str) -> None:
        self.log(f"removed {peer}")
        node = self.nodes[peer]
        node.removed = True
        node.crash()
        self.network.discard_to(peer)
        self._signal_others(UNREACHABLE, peer)

    # -- running --------------------------------------------------------------------------

    def run(self, steps: int, until: Callable[[], bool] | None = None,
            check_every: int = 1) -> bool:
        """Fault-free progress: deliver, persist and tick at random. True once ``until``
        holds (tested every ``check_every`` steps)."""
        rng = self.rng
        for step in range(steps):
            if until is not None and step % check_every == 0 and until():
                return True
            roll = rng.random()
            if roll < 0.55 and self.network.in_flight:
                self.deliver()
            elif roll < 0.8 and any(self.nodes[p].writes for p in self.nodes):
                self.persist()
            else:
                up = self.up_nodes()
                if up:
                    self.tick(rng.choice(up))
            self.after_step()
        return until is not None and until()

    def elect(self, steps: int = 20_000) -> str:
        """Run until some node leads; returns it (AssertionError if none in ``steps``)."""
        if not self.run(steps, lambda: self.leader() is not None):
            raise AssertionError("no leader elected")
        leader = self.leader()
        assert leader is not None
        return leader

    def converged(self) -> bool:
        """A leader exists, its whole log is committed, and every live member applied it."""
        leader = self.leader()
        if leader is None:
            return False
        lnode = self.nodes[leader]
        status = lnode.core.status()
        commit = status["commit"]
        # Everything the leader holds is committed, so an entry applied nowhere by now is
        # in no log that could ever win an election: it will never commit.
        if lnode.machine.applied < commit or status["last_index"] != commit:
            return False
        for peer in self.members():
            node = self.nodes.get(peer)
            if node is None or not node.up or node.machine.applied < commit:
                return False
        return all(commit >= index for index, _ in self.acknowledged)

    def stabilize(self, steps: int = 50_000) -> bool:
        """Heal, restart crashed members, calm the network, then run until converged."""
        before = set(self.network.blocked)
        self.network.heal()
        self._signal_cuts(before)
        self.network.calm()
        self.snapshot_failure_rate = 0.0
        for peer in self.down_nodes():
            self.restart(peer)
        return self.run(steps, self.converged, check_every=10)

    def describe(self) -> str:
        """One line per node, for failure reports: role, term, applied, commit, last index,
        and the leader's view of each follower."""
        lines = []
        for peer in sorted(self.nodes):
            node = self.nodes[peer]
            if not node.up:
                lines.append(f"{peer}: {'removed' if node.removed else 'down'}")
                continue
            st = node.core.status()
            lines.append(
                f"{peer}: {st['role']} term {st['term']} applied {node.machine.applied} "
                f"commit {st['commit']} last {st['last_index']} snap {st['snapshot_index']} "
                f"config {st['config']}"
            )
            for follower, pr in sorted(st["progress"].items()):
                lines.append(f"    {follower}: {pr}")
        return "\n".join(lines)

    def check_final(self) -> None:
        """After ``stabilize``: every acknowledged write is applied on every live member."""
        live = {p: self.nodes[p].machine.applied for p in self.members() if self.nodes[p].up}
        self.checker.check_acknowledged(self.acknowledged, live)
