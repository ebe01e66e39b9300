"""Random scenarios for the simulator: client calls mixed with faults, one action per step.

Rules:
- Every choice comes from the cluster's seeded ``random.Random``; a scenario's *profile*
  (fault rate, client rate, network weather, cluster size) is itself drawn from the seed, so a
  sweep covers calm and hostile runs alike.
- The fault mix is aimed at the mutations the sweep must catch: crashes land preferably on
  nodes with unpersisted writes (lost writes), a leader whose commit index runs ahead of its
  own disk is often restarted right then, a leader that committed entries some follower
  lacks is sometimes cut off right then (the next election must still choose well), leaders
  get isolated while clients keep reading from every node that still believes it leads
  (stale reads), and membership changes add, remove and remove the leader.
- At most a minority of the current members is crashed at once, so runs keep making progress.
- Profiles with ``disk_damage`` also crash a node and lose the tail of its durable log (what
  a flipped bit, a zero-filled or deleted segment does), marking it recovering as the disk
  log's recovery does; only while no other node is recovering, since losing synced data on
  two nodes at once can lose a committed entry whatever the protocol does. The
  ``vote_while_recovering`` mutation (a node that lost acknowledged entries votes anyway)
  must then lose acknowledged writes.
- Half the seeds (chosen by a generator of their own, so the other half run exactly as
  before transfers existed) also hand leadership over now and then, to a named member or
  to the most up-to-date one (leadership transfer, TimeoutNow): clients then meet
  ``TransferInProgress`` (a refusal: the op fails, nothing was appended).
- Half the seeds (again by a generator of their own) run with quiescence: idle groups stop
  their timers (``quiesce_ticks`` 1, 3 or 10), crashes, restarts and cuts produce failure
  signals (``zraft.testing.sim.signals``: delays and loss drawn per seed), and an "idle"
  fault stops the clients for a while so that the group goes quiet while faults go on.
- Clients behave like real ones: each has at most one call outstanding; one that gives up
  (timeout) is replaced by a fresh client (a new process in the history), as in Jepsen.
  This bounds concurrency, which keeps the linearizability search small.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from zraft.core.config import CoreConfig
from zraft.core.entries import ClusterConfig
from zraft.testing.linearizability import CAS, OK, READ, UNKNOWN, WRITE, Operation
from zraft.testing.sim.cluster import SimCluster

KEYS = ("a", "b", "c")
CLIENT_TIMEOUT = 400  # steps a client waits before giving up (its op stays unknown)


@dataclass(frozen=True)
class Profile:
    nodes: int
    snapshot_every: int
    client_rate: float
    fault_rate: float
    membership: bool
    clients: int
    drop: float
    duplicate: float
    reorder: float
    replay: float
    election_ticks: int
    max_inflight: int
    max_batch_bytes: int
    slow_disks: int  # how many nodes persist five times slower than the others
    slow_clocks: int  # how many nodes tick three times slower (clock drift, GC pauses)
    bootstrap: bool  # start as zraft_lib's create(): one node, then add the others
    prevote: bool
    check_quorum: bool
    disk_damage: bool  # a node's durable log tail is lost now and then (see module rules)

    @staticmethod
    def draw(rng: random.Random) -> Profile:
        return Profile(
            nodes=rng.choice((3, 3, 5)),
            snapshot_every=rng.choice((5, 8, 13, 20)),
            client_rate=rng.choice((0.05, 0.1, 0.2, 0.3)),
            fault_rate=rng.choice((0.004, 0.01, 0.02, 0.03)),
            membership=rng.random() < 0.5,
            clients=rng.choice((2, 3, 5, 8)),
            drop=rng.choice((0.0, 0.0, 0.02, 0.1)),
            duplicate=rng.choice((0.0, 0.05, 0.2, 0.4)),
            reorder=rng.choice((0.0, 0.1, 0.3, 0.6)),
            replay=rng.choice((0.0, 0.0, 0.02, 0.1)),
            election_ticks=rng.choice((5, 10)),
            max_inflight=rng.choice((1, 4, 8)),
            max_batch_bytes=rng.choice((100, 4096)),
            slow_disks=rng.choice((0, 0, 1, 2)),
            slow_clocks=rng.choice((0, 0, 1)),
            bootstrap=rng.random() < 0.2,
            prevote=rng.random() < 0.75,
            check_quorum=rng.random() < 0.75,
            disk_damage=rng.random() < 0.5,
        )


class Scenario:
    def __init__(self, seed: int, mutations: frozenset[str] = frozenset(),
                 transcript: bool = False, transfers: bool | None = None,
                 quiesce: bool | None = None) -> None:
        profile_rng = random.Random(seed ^ 0x5EED)
        self.profile = profile = Profile.draw(profile_rng)
        quiet_rng = random.Random(seed ^ 0x9013C)
        self.quiesce = quiet_rng.random() < 0.5 if quiesce is None else quiesce
        quiesce_ticks = quiet_rng.choice((1, 3, 10)) if self.quiesce else 0
        config = CoreConfig(election_ticks=profile.election_ticks, heartbeat_ticks=2,
                            max_inflight=profile.max_inflight,
                            max_batch_bytes=profile.max_batch_bytes, prevote=profile.prevote,
                            check_quorum=profile.check_quorum, mutations=mutations,
                            quiesce_ticks=quiesce_ticks)
        self.cluster = SimCluster(seed, nodes=profile.nodes, core_config=config,
                                  snapshot_every=profile.snapshot_every, transcript=transcript,
                                  bootstrap=profile.bootstrap)
        self.growing = profile.bootstrap
        if self.quiesce:
            signals = self.cluster.signals
            signals.max_delay = quiet_rng.choice((20, 150, 400))
            signals.loss = quiet_rng.choice((0.0, 0.0, 0.3, 0.7))
        self.idle_until = 0  # clients pause until this step ("idle" fault)
        self._grow_ctx: int | None = None
        net = self.cluster.network
        net.drop, net.duplicate, net.reorder = profile.drop, profile.duplicate, profile.reorder
        net.replay = profile.replay
        self.rng = self.cluster.rng
        peers = sorted(self.cluster.nodes)
        slow = set(profile_rng.sample(peers, profile.slow_disks))
        self.disk_speed = {p: (0.2 if p in slow else 1.0) for p in peers}
        slow = set(profile_rng.sample(peers, profile.slow_clocks))
        self.clock_speed = {p: (0.3 if p in slow else 1.0) for p in peers}
        self.steps = 0
        # client slot -> (process id, outstanding op or None)
        self.clients: list[tuple[int, Operation | None]] = [
            (i, None) for i in range(profile.clients)
        ]
        self._next_process = profile.clients
        self._healing: tuple[str, str] | None = None  # (damaged peer, leader) see _after_heal
        drawn = random.Random(seed ^ 0x7EA5F).random() < 0.5
        self.transfers = drawn if transfers is None else transfers  # None: by the seed

    # -- the step -------------------------------------------------------------------------

    def step(self) -> None:
        cluster = self.cluster
        rng = self.rng
        self.steps += 1
        roll = rng.random()
        profile = self.profile
        if self._healing is not None:
            self._after_heal()
        if self.growing and roll < 0.01:
            self._grow()
        elif self._leader_commit_ahead_of_disk() and rng.random() < 0.1:
            self._bounce_leader()
        elif roll < 0.003 and self._leader_ahead_of_a_follower():
            # Cut the leader off right after it committed entries some follower lacks:
            # the election that follows must still pick a log holding them.
            self.cluster.isolate(self.cluster.leader_hint)
        elif roll < profile.fault_rate:
            self.fault()
        elif roll < profile.fault_rate + profile.client_rate:
            if self.steps >= self.idle_until:
                self.client()
        else:
            roll = rng.random()
            if roll < 0.6 and cluster.network.in_flight:
                cluster.deliver()
            elif roll < 0.85 and any(n.writes for n in cluster.nodes.values()):
                self.persist()
            else:
                up = cluster.up_nodes()
                if up:
                    speed = self.clock_speed
                    cluster.tick(rng.choices(up, [speed.get(p, 1.0) for p in up])[0])
        cluster.after_step()

    def _leader_ahead_of_a_follower(self) -> bool:
        peer = self.cluster.leader_hint
        if peer is None:
            return False
        node = self.cluster.nodes[peer]
        if not node.up or node.role != "leader":
            return False
        status = node.core.status()
        commit = status["commit"]
        return any(pr["match"] < commit for pr in status["progress"].values())

    def _grow(self) -> None:
        """Bootstrapped runs: ask for the full initial membership until it is in place."""
        cluster = self.cluster
        if cluster.leader() is None:
            return
        if cluster.members() == sorted(cluster.initial):
            self.growing = False
            return
        ctx = self._grow_ctx
        if ctx is None or cluster.config_result_for(ctx) is not None:
            self._grow_ctx = cluster.change_config(cluster.initial)

    def _leader_commit_ahead_of_disk(self) -> bool:
        """The leader committed entries its own disk does not hold yet: the moment a crash
        tests that commit never counted the leader's unpersisted copy."""
        peer = self.cluster.leader_hint
        if peer is None:
            return False
        node = self.cluster.nodes[peer]
        return (node.up and node.role == "leader" and bool(node.writes)
                and node.core.commit > node.storage.last_index())

    def _bounce_leader(self) -> None:
        peer = self.cluster.leader_hint
        assert peer is not None
        self.cluster.crash(peer)
        self.cluster.restart(peer)

    def _damage(self, members: list[str], down_members: list[str]) -> None:
        """Lose the durable tail of one member's log (see the module rules), preferring one
        that holds entries some others lack: the loss then matters."""
        cluster = self.cluster
        if self.growing or any(cluster.recovering(p) for p in cluster.nodes):
            return
        if len(down_members) >= (len(members) - 1) // 2 + 1:
            return
        # The healthy members must still form a quorum in every configuration any node
        # holds (else what a majority lost is lost, and the cluster rightly waits for an
        # operator): one stable config of >= 3 voters everywhere, no change under way.
        configs = {cluster.nodes[p].latest_config() for p in cluster.nodes
                   if not cluster.nodes[p].removed}
        configs.discard(ClusterConfig())
        if len(configs) != 1:
            return
        (config,) = configs
        if config.new or len(config.old) < 3:
            return
        if any(n.up and n.core.change is not None for n in cluster.nodes.values()):
            return  # a leader about to propose a change (it could shrink the majority)
        pool = [p for p in members if not cluster.nodes[p].removed]
        if not pool:
            return
        leader = cluster.leader()
        followers = [p for p in pool if p != leader]
        followers.sort(key=lambda p: -cluster.nodes[p].storage.last_index())
        if followers and self.rng.random() < 0.7:
            peer = followers[0]  # ahead of the other followers: its loss matters
        else:
            peer = self.rng.choice(pool)
        node = cluster.nodes[peer]
        storage = node.storage
        # never below the newest state-machine image: it stands for applied entries the
        # node's snapshot covers
        floor = max(storage.snapshot.index, max(node.durable_images, default=0))
        last = storage.last_index()
        if last <= floor:
            return
        first_lost = self.rng.randint(max(floor + 1, last - 5), last)
        cluster.damage(peer, first_lost)
        if self.rng.random() < 0.7:
            cluster.restart(peer)
            if leader is not None and leader != peer and self.rng.random() < 0.5:
                self._healing = (peer, leader)  # see _after_heal
                # the others lag behind meanwhile: the damaged peer's repair is then all
                # that stands between its lost entries and the next election
                others = [p for p in sorted(cluster.nodes) if p not in (peer, leader)]
                cluster.partition([peer, leader], others)

    def _after_heal(self) -> None:
        """Crash the leader right after a damaged follower it repaired says it is whole:
        the election that follows is where a wrong 'whole' would lose a committed entry."""
        peer, leader = self._healing
        node = self.cluster.nodes[peer]
        if not node.up or self.cluster.leader() != leader:
            self._healing = None
        elif not node.core.recovering:
            self._healing = None
            self.cluster.crash(leader)
            self.cluster.heal()

    def persist(self) -> None:
        """Complete one write, on a node chosen by disk speed (slow disks lag behind)."""
        cluster = self.cluster
        busy = [p for p in sorted(cluster.nodes) if cluster.nodes[p].writes]
        speed = self.disk_speed
        weights = [speed.get(p, 1.0) for p in busy]
        cluster.persist(self.rng.choices(busy, weights)[0])

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()

    # -- clients --------------------------------------------------------------------------

    def _target(self) -> str | None:
        cluster = self.cluster
        up = cluster.up_nodes()
        if not up:
            return None
        leaders = [p for p in up if cluster.nodes[p].role == "leader"]
        if leaders and self.rng.random() < 0.8:
            return self.rng.choice(leaders)
        return self.rng.choice(up)

    def _idle_client(self) -> int | None:
        """A client slot free to call: its last op finished, or it gave up waiting."""
        idle = []
        for slot, (_process, op) in enumerate(self.clients):
            if op is None or op.outcome != UNKNOWN:
                idle.append(slot)
            elif self.cluster.now - op.invoke_time > CLIENT_TIMEOUT:
                self.clients[slot] = (self._next_process, None)  # a fresh client
                self._next_process += 1
                idle.append(slot)
        return self.rng.choice(idle) if idle else None

    def client(self) -> None:
        cluster = self.cluster
        rng = self.rng
        slot = self._idle_client()
        peer = self._target()
        if peer is None or slot is None:
            return
        process = self.clients[slot][0]
        key = rng.choice(KEYS)
        kind = rng.choices((READ, WRITE, CAS), (4, 4, 2))[0]
        value = len(cluster.history)
        if kind == READ:
            op = cluster.read(peer, key, process)
        elif kind == WRITE:
            op = cluster.write(peer, key, value, process)
        else:
            op = cluster.cas(peer, key, self._guess(key), value, process)
        self.clients[slot] = (process, op)

    def _guess(self, key: str) -> int | None:
        """A cas 'expected' that is often right: the last value a client saw for ``key``."""
        for op in reversed(self.cluster.history[-30:]):
            if op.key == key and op.outcome == OK:
                return op.result if op.kind == READ else op.value
        return None

    # -- faults ---------------------------------------------------------------------------

    def fault(self) -> None:
        cluster = self.cluster
        rng = self.rng
        kinds = ["crash", "crash_busy", "bounce", "bounce_leader", "restart", "restart",
                 "partition", "isolate_leader", "isolate_slow_leader", "one_way", "heal",
                 "heal", "weather", "snapshot_failures", "slow_disk_leader", "snapshot"]
        if self.profile.disk_damage:
            kinds += ["damage", "damage"]
        if self.transfers:
            kinds += ["transfer", "transfer", "transfer", "transfer_any"]
        if self.quiesce:
            kinds += ["idle", "idle"]
        if (self.profile.membership and not self.growing
                and not any(cluster.recovering(p) for p in cluster.nodes)):
            # (never while a bootstrapped cluster still grows: growing re-adds the initial
            # ids, and a removed id must never come back)
            kinds += ["add", "add", "remove", "remove", "remove_leader", "remove_leader"]
        kind = rng.choice(kinds)
        up = cluster.up_nodes()
        members = cluster.members()
        down_members = [p for p in cluster.down_nodes() if p in members]
        leader = cluster.leader()
        if kind in ("crash", "crash_busy"):
            if len(down_members) >= (len(members) - 1) // 2 + (1 if rng.random() < 0.2 else 0):
                return
            pool = up
            if kind == "crash_busy":
                pool = [p for p in up if cluster.nodes[p].writes] or pool
            if pool:
                cluster.crash(rng.choice(pool))
        elif kind in ("bounce", "bounce_leader"):
            # A process restart: whatever was not yet durable is lost.
            pool = [p for p in up if cluster.nodes[p].writes] or up
            victim = leader if kind == "bounce_leader" and leader is not None else None
            if victim is None and pool:
                victim = rng.choice(pool)
            if victim is not None:
                cluster.crash(victim)
                cluster.restart(victim)
        elif kind == "damage":
            self._damage(members, down_members)
        elif kind == "restart":
            down = cluster.down_nodes()
            if down:
                cluster.restart(rng.choice(down))
        elif kind == "partition":
            peers = sorted(cluster.nodes)
            rng.shuffle(peers)
            cut = rng.randrange(1, len(peers))
            cluster.partition(sorted(peers[:cut]), sorted(peers[cut:]))
        elif kind == "isolate_leader":
            if leader is not None:
                cluster.isolate(leader)
        elif kind == "isolate_slow_leader":
            # The leader is cut off and its clock crawls (a VM hiccup): it keeps believing it
            # leads for a long while, which only timing (check-quorum) can end; clients keep
            # reading from it while the majority elects and writes.
            if leader is not None:
                cluster.isolate(leader)
                self.clock_speed[leader] = 0.05
        elif kind == "snapshot":
            if up:
                cluster.snapshot(rng.choice(up))
        elif kind == "slow_disk_leader":
            # The leader's disk stalls: its own entries stay unpersisted for long, so a
            # bounce loses entries the followers already have.
            if leader is not None:
                self.disk_speed[leader] = 0.05
        elif kind == "one_way":
            peers = sorted(cluster.nodes)
            src, dst = rng.sample(peers, 2)
            cluster.cut_one_way(src, dst)
        elif kind == "heal":
            cluster.heal()
        elif kind == "weather":
            net = cluster.network
            net.drop = rng.choice((0.0, 0.0, 0.05, 0.2))
            net.duplicate = rng.choice((0.0, 0.05, 0.2, 0.4))
            net.reorder = rng.choice((0.0, 0.1, 0.3, 0.6))
            net.replay = rng.choice((0.0, 0.0, 0.02, 0.1))
            cluster.log(f"weather drop={net.drop} dup={net.duplicate} reorder={net.reorder}")
            self.clock_speed = dict.fromkeys(self.clock_speed, 1.0)
            self.disk_speed = {p: min(v * 4, 1.0) for p, v in self.disk_speed.items()}
        elif kind in ("transfer", "transfer_any"):
            to = None
            if kind == "transfer" and members:
                to = rng.choice(members)
            cluster.transfer_leader(to, rng.choice((0, 0, 3, 30)))
        elif kind == "idle":
            # clients pause: the group goes quiet while the faults go on
            self.idle_until = self.steps + rng.randint(100, 1500)
            cluster.log(f"idle until step {self.idle_until}")
        elif kind == "snapshot_failures":
            cluster.snapshot_failure_rate = rng.choice((0.0, 0.3, 1.0))
        elif kind == "add":
            if leader is not None and len(members) < 6:
                peer = cluster.add_node()
                cluster.change_config([*members, peer])
        elif kind in ("remove", "remove_leader") and leader is not None and len(members) > 2:
            victim = leader if kind == "remove_leader" else rng.choice(members)
            cluster.change_config([p for p in members if p != victim])
