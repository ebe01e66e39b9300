"""The nemesis: fault schedules against a LocalCluster's real node processes.

Rules:
- A fault is ``inject -> hold -> heal``; ``heal`` always runs (also when inject failed half
  way), so the next fault starts from a whole cluster: every node running, not paused,
  nothing partitioned. Each fault returns a short description that goes to the run log.
- Kinds (``FAULT_KINDS``): ``kill`` (kill -9 one random node, restart), ``kill_leader``,
  ``kill_majority`` (a majority in turn), ``pause`` (SIGSTOP longer than the election
  timeout, SIGCONT), ``partition_leader`` (leader isolated), ``partition_halves``
  (majority/minority), ``partition_bridge`` (one node sees both sides that do not see each
  other), ``partition_oneway`` (only one side drops: symmetric in effect with the node's
  current admin op, see the module report), ``membership`` (add a node, remove a node,
  remove the leader, during traffic), ``snapshot_install_kill`` (a lagging follower is
  restarted and killed again while it receives a snapshot), ``segment_roll_kill`` (kill -9
  the moment a new log segment file appears), ``disk_damage`` (kill -9 a node, damage its
  newest log segment: one bit flipped in the last record, zero-filled, or deleted, restart
  it; then, half the time, kill the leader while the damaged node recovers: the second
  fault that once lost acknowledged writes), ``mixed`` (any of the above).
- Damage goes to one node at a time, and only once no member reports ``recovering``:
  losing synced data on two nodes at once can lose a committed entry whatever the protocol.
- Membership keeps the config between ``base`` and ``base + 1`` members. A removed node is
  stopped, its data wiped, and restarted blank: it is a spare the next ``add`` can use.
- The nemesis never decides correctness; it only records what it did (``Topology.events``).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zraft.client import api
from zraft.client.calls import PeerCall
from zraft.client.connection import ConnectionPool
from zraft.cluster.local import LocalCluster, NodeProcess, wait_until
from zraft.errors import ZRaftError
from zraft.storage.naming import peer_log_path


def segment_names(log_dir: Path) -> set[str]:
    try:
        return {p.name for p in log_dir.iterdir() if p.suffix == ".seg"}
    except OSError:
        return set()


def damage_segment(path: Path, how: str) -> None:
    """Damage a log segment as a disk might: ``bitflip`` one bit inside its last record,
    ``zero`` every byte, ``delete`` the file."""
    if how == "delete":
        path.unlink(missing_ok=True)
        return
    data = bytearray(path.read_bytes())
    if how == "zero":
        path.write_bytes(bytes(len(data)))
        return
    end = len(data.rstrip(b"\0"))
    if end > 40:
        data[end - 20] ^= 0x04
        path.write_bytes(bytes(data))


FAULT_KINDS = ("kill", "kill_leader", "kill_majority", "pause", "partition_leader",
               "partition_halves", "partition_bridge", "partition_oneway", "membership",
               "snapshot_install_kill", "segment_roll_kill", "disk_damage")


class FaultUnsupported(Exception):
    """This machine cannot inject the fault (e.g. no netem qdisc): reported, not counted."""


@dataclass
class Topology:
    """Which started nodes are Raft members, shared with the clients (thread-safe reads)."""

    cluster: LocalCluster
    members: list[str]  # peer ids in the committed configuration (as far as we know)
    events: list[tuple[float, str]] = field(default_factory=list)
    # monotonic time a fault last began or ended: a leader change may follow either, and a
    # new leader renews every session (a session's clock runs only under a stable leader)
    disturbed_at: float = 0.0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def disturbed(self) -> None:
        with self.lock:
            self.disturbed_at = time.monotonic()

    def last_disturbance(self) -> float:
        with self.lock:
            return self.disturbed_at

    def all_peers(self) -> list[str]:
        """Every node's peer id: clients may send anywhere, members answer."""
        return list(self.cluster.peers)

    def member_peers(self) -> list[str]:
        with self.lock:
            return list(self.members)

    def set_members(self, members: list[str]) -> None:
        with self.lock:
            self.members = sorted(members)

    def record(self, text: str) -> None:
        with self.lock:
            self.events.append((time.monotonic(), text))

    def node_of(self, peer: str) -> NodeProcess:
        return self.cluster.node(peer)


class Nemesis:
    def __init__(self, topo: Topology, pool: ConnectionPool, rng: random.Random,
                 hold: float = 2.0) -> None:
        self.topo = topo
        self.cluster = topo.cluster
        self.pool = pool
        self.rng = rng
        self.hold = hold  # seconds a fault stays in place
        self.et = self.cluster.election_timeout / 1000.0
        self.injected: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()  # faults that could not be injected fully
        self.notes: Counter[str] = Counter()  # finer detail, e.g. where an install was cut
        self.unsupported: Counter[str] = Counter()  # kinds this machine cannot inject

    # -- observation ----------------------------------------------------------------------

    def stat(self, peer: str, timeout: float = 1.0) -> dict[str, Any]:
        return api.stat(peer, timeout=timeout, pool=self.pool)

    def leader(self, timeout: float = 15.0) -> str:
        def find() -> str | None:
            for peer in self.topo.member_peers():
                if not self.topo.node_of(peer).alive():
                    continue
                try:
                    if self.stat(peer).get("role") == "leader":
                        return peer
                except ZRaftError:
                    continue
            return None
        return wait_until(find, timeout, "a leader")

    def admin(self, peer: str, op: str, args: list[Any], timeout: float = 3.0) -> Any:
        return PeerCall(self.pool, peer, op, lambda _name: args, timeout).run()

    # -- primitives -----------------------------------------------------------------------

    def kill(self, peer: str) -> None:
        self.cluster.kill(self.topo.node_of(peer))
        self.note(f"kill -9 {peer}")

    def start(self, peer: str) -> None:
        self.cluster.start_node(self.topo.node_of(peer))
        self.note(f"start {peer}")

    def partition(self, blocks: dict[str, list[str]]) -> None:
        """``blocks[peer]`` = peers whose node that peer's node drops."""
        for peer, others in blocks.items():
            addrs = [self.topo.node_of(o).address for o in others]
            self.admin(peer, "partition", [addrs])
        self.note(f"partition {blocks}")

    def heal_all(self) -> None:
        """Every node running, resumed and unpartitioned (best effort, bounded)."""
        for n in self.cluster.nodes:
            if n.proc is not None and n.alive():
                self.cluster.resume(n)
        for n in self.cluster.nodes:
            if not n.alive():
                self.cluster.start_node(n)
        for peer in self.topo.all_peers():
            with contextlib.suppress(ZRaftError):
                self.admin(peer, "heal", [], timeout=3.0)
        self.note("heal")

    def note(self, text: str) -> None:
        """Record a nemesis action; every action may change the leader."""
        self.topo.record(text)
        self.topo.disturbed()

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        if stop is not None:
            stop.wait(seconds)
        else:
            time.sleep(seconds)  # the nemesis's own pacing, not test synchronisation

    # -- faults ---------------------------------------------------------------------------

    def run_fault(self, kind: str) -> str:
        fn: Callable[[], str] = getattr(self, f"fault_{kind}")
        self.injected[kind] += 1
        self.topo.disturbed()  # before the fault acts
        try:
            return fn()
        except FaultUnsupported as exc:
            self.injected[kind] -= 1
            self.unsupported[kind] += 1
            self.sleep(self.hold)
            return f"{kind} not injected: {exc}"
        except (ZRaftError, TimeoutError) as exc:
            self.failed[kind] += 1
            self.note(f"{kind} incomplete: {exc}")
            return f"{kind} incomplete: {exc}"
        finally:
            self.heal_all()

    def fault_none(self) -> str:
        self.sleep(self.hold)
        return "no fault"

    def fault_kill(self) -> str:
        victim = self.rng.choice(self.topo.member_peers())
        self.kill(victim)
        self.sleep(self.hold * self.rng.random())
        self.start(victim)
        return f"kill -9 {victim}"

    def fault_kill_leader(self) -> str:
        victim = self.leader()
        self.kill(victim)
        self.sleep(self.hold * self.rng.random())
        self.start(victim)
        return f"kill -9 leader {victim}"

    def fault_kill_majority(self) -> str:
        members = self.topo.member_peers()
        victims = self.rng.sample(members, len(members) // 2 + 1)
        for v in victims:  # in turn, not at once
            self.kill(v)
            self.sleep(self.et * self.rng.random())
        self.sleep(self.hold * self.rng.random())
        for v in victims:
            self.start(v)
        return f"kill -9 majority {victims}"

    def fault_pause(self) -> str:
        members = self.topo.member_peers()
        victim = self.leader() if self.rng.random() < 0.5 else self.rng.choice(members)
        node = self.topo.node_of(victim)
        self.cluster.pause(node)
        self.note(f"SIGSTOP {victim}")
        self.sleep(max(3 * self.et, self.hold))  # longer than the election timeout
        self.cluster.resume(node)
        self.note(f"SIGCONT {victim}")
        return f"pause {victim}"

    def fault_partition_leader(self) -> str:
        leader = self.leader()
        others = [p for p in self.topo.member_peers() if p != leader]
        self.partition({leader: others, **{o: [leader] for o in others}})
        self.sleep(self.hold)
        return f"isolate leader {leader}"

    def fault_partition_halves(self) -> str:
        members = self.topo.member_peers()
        self.rng.shuffle(members)
        minority = members[: (len(members) - 1) // 2]
        majority = members[len(minority):]
        blocks = {p: majority for p in minority}
        blocks.update({p: minority for p in majority})
        self.partition(blocks)
        self.sleep(self.hold)
        return f"majority {majority} | minority {minority}"

    def fault_partition_bridge(self) -> str:
        members = self.topo.member_peers()
        self.rng.shuffle(members)
        bridge, rest = members[0], members[1:]
        half = len(rest) // 2
        left, right = rest[:half], rest[half:]
        blocks = {p: right for p in left}
        blocks.update({p: left for p in right})
        self.partition(blocks)
        self.sleep(self.hold)
        return f"bridge {bridge} between {left} and {right}"

    def fault_partition_oneway(self) -> str:
        """``a`` stops hearing ``b`` while ``b`` still hears ``a``: asked of the node as
        ``partition [[b], "in"]``. Today's node ignores the direction and drops both ways
        on ``a`` only; a node refusing the extra argument gets ``partition [[b]]``."""
        members = self.topo.member_peers()
        a, b = self.rng.sample(members, 2)
        if self.rng.random() < 0.5:
            a = self.leader()
            b = self.rng.choice([p for p in members if p != a])
        addrs = [self.topo.node_of(b).address]
        try:
            self.admin(a, "partition", [addrs, "in"])
            how = "one side drops (direction 'in' requested)"
        except ZRaftError as exc:
            if exc.code not in ("bad_request", "error"):
                raise
            self.admin(a, "partition", [addrs])
            how = "one side only (node has no direction: symmetric in effect)"
            self.notes["partition_oneway symmetric fallback"] += 1
        self.note(f"{how}: {a} drops traffic from {b}")
        self.sleep(self.hold)
        return f"{how}: {a} drops {b}"

    def fault_segment_roll_kill(self) -> str:
        """Kill -9 a node the moment a new log segment file appears (tiny segments roll
        every few hundred milliseconds under load), then restart it."""
        victim = self.rng.choice(self.topo.member_peers())
        log_dir = peer_log_path(self.topo.node_of(victim).directory / "data", victim) / "log"
        before = segment_names(log_dir)
        deadline = time.monotonic() + 3.0
        now = before
        while not (now - before) and time.monotonic() < deadline:
            time.sleep(0.002)  # polling the directory for the roll
            now = segment_names(log_dir)
        self.kill(victim)
        moment = "mid-roll" if now - before else "no roll seen"
        self.notes[f"segment_roll_kill {moment}"] += 1
        self.sleep(self.rng.uniform(0.0, self.et))
        self.start(victim)
        return f"kill -9 {victim} ({moment})"

    def fault_disk_damage(self) -> str:
        members = self.topo.member_peers()
        wait_until(lambda: not any(self._recovering(p) for p in members), 15,
                   "every member to be whole before damaging one")
        victim = self.rng.choice(members)
        node = self.topo.node_of(victim)
        log_dir = peer_log_path(node.directory / "data", victim) / "log"
        self.kill(victim)
        segments = sorted(log_dir.glob("*.seg"))
        how = self.rng.choice(("bitflip", "zero", "delete"))
        if segments:
            damage_segment(segments[-1], how)
        self.note(f"{how} newest segment of {victim}")
        self.notes[f"disk_damage {how}"] += 1
        second = ""
        if self.rng.random() < 0.5:
            with contextlib.suppress(ZRaftError, TimeoutError):
                leader = self.leader(timeout=5.0)
                if leader != victim:
                    self.kill(leader)
                    second = f", then kill -9 leader {leader}"
        self.start(victim)
        self.sleep(self.hold * self.rng.random())
        return f"{how} newest segment of {victim}{second}"

    def _recovering(self, peer: str) -> bool:
        try:
            return bool(self.stat(peer).get("recovering"))
        except ZRaftError:
            return False  # down: heal_all restarts it; its mark shows once it is up

    def fault_snapshot_install_kill(self) -> str:
        """Kill a lagging follower as soon as the leader starts streaming it a snapshot."""
        leader = self.leader()
        victim = self.rng.choice([p for p in self.topo.member_peers() if p != leader])
        self.kill(victim)
        self.sleep(self.hold)  # traffic + tiny max_log_count: the leader compacts past it
        before = self.snapshot_counters(leader)
        self.start(victim)
        deadline = time.monotonic() + 5.0
        now = before
        while now["sends_started"] == before["sends_started"] and time.monotonic() < deadline:
            time.sleep(0.005)  # polling the leader for the moment a transfer begins
            now = self.snapshot_counters(leader)
        self.sleep(self.rng.uniform(0.0, 0.02))
        self.kill(victim)
        deadline = time.monotonic() + 3.0
        after = self.snapshot_counters(leader)
        while after["sent"] + after["send_failed"] == now["sent"] + now["send_failed"] \
                and time.monotonic() < deadline:
            time.sleep(0.05)  # polling until the leader has judged the transfer
            after = self.snapshot_counters(leader)
        if now["sends_started"] == before["sends_started"]:
            moment = "no transfer started"
        elif after["send_failed"] > now["send_failed"]:
            moment = "mid-transfer"
        else:
            moment = "after the transfer"
        self.notes[f"snapshot_install_kill {moment}"] += 1
        self.start(victim)
        return f"kill -9 {victim} during snapshot install ({moment})"

    def snapshot_counters(self, peer: str) -> dict[str, int]:
        try:
            stats = self.admin(peer, "node_status", [], timeout=2.0)["snapshots"]
            return {"sent": int(stats.get("sent", 0)),
                    "send_failed": int(stats.get("send_failed", 0)),
                    "sends_started": int(stats.get("stream", {}).get("sends_started", 0))}
        except (ZRaftError, KeyError, TypeError, AttributeError):
            return {"sent": 0, "send_failed": 0, "sends_started": 0}

    def fault_membership(self) -> str:
        members = self.topo.member_peers()
        spares = [p for p in self.topo.all_peers() if p not in members]
        if spares and len(members) <= 3:
            return self.add_member(self.rng.choice(spares), members)
        if self.rng.random() < 0.5:
            return self.remove_member(self.leader(), members, "leader")
        return self.remove_member(self.rng.choice(members), members, "member")

    def add_member(self, peer: str, members: list[str]) -> str:
        try:
            cluster_id = api.stat(members[0], 5.0, pool=self.pool).get("cluster_id") or None
            api.create_peer(peer, self.cluster.backend, timeout=5.0, pool=self.pool,
                            cluster_id=cluster_id)
        except ZRaftError as exc:
            if exc.code != "already_present":
                raise
        try:
            api.set_new_conf(members[0], [*members, peer], members, timeout=15.0, pool=self.pool)
        finally:
            self.refresh_members()
        self.note(f"added {peer}")
        return f"add {peer}"

    def remove_member(self, peer: str, members: list[str], what: str) -> str:
        new = [p for p in members if p != peer]
        try:
            api.set_new_conf(new[0], new, members, timeout=15.0, pool=self.pool)
        finally:
            self.refresh_members()
        if peer not in self.topo.member_peers():
            self.wipe(peer)
        self.note(f"removed {what} {peer}")
        return f"remove {what} {peer}"

    def refresh_members(self) -> None:
        """Learn the committed configuration (a change that timed out may have happened)."""
        def ask() -> list[str] | None:
            for peer in self.topo.member_peers():
                try:
                    return api.get_conf(peer, timeout=2.0, pool=self.pool)[1]
                except ZRaftError:
                    continue
            return None
        self.topo.set_members(wait_until(ask, 30.0, "the committed configuration"))

    def wipe(self, peer: str) -> None:
        """Make a removed node a blank spare: stop it, delete its data, start it again."""
        node = self.topo.node_of(peer)
        self.cluster.stop_node(node)
        shutil.rmtree(node.directory / "data", ignore_errors=True)
        self.cluster.start_node(node)
        self.note(f"wiped {peer}")


__all__ = ["FAULT_KINDS", "FaultUnsupported", "Nemesis", "Topology"]
