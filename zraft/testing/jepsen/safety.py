"""Crash-safety checks after a run: nothing acknowledged is lost, replicas agree, restarts work.

Rules:
- Run only on a healed cluster with the clients stopped. ``converge`` writes a barrier key
  through the leader, waits until every member applied at least the barrier's index, and
  reads every member's whole state with ``query_local`` (no leadership check: each node
  answers from its OWN state machine).
- Replicas agree when every member reports the same applied index before and after its
  state was read and the states are equal; equal applied index with different states means
  two nodes applied different entries at the same index (``diverged``).
- Every acknowledged insert must be in every member's state (``lost`` lists those that are
  not). Register keys are checked by adding each member's final value as a read at the end
  of the history, so the linearizability checker judges them with everything else.
- ``compare_logs`` (after the nodes stopped) opens every member's log on disk: an index
  applied everywhere must hold the very same entry on every node that still has it.
- ``restart_all`` kills -9 every node, restarts each from its own directory, converges again
  and demands the same state as before (barrier keys aside).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster.local import LocalCluster, wait_until
from zraft.core.entries import Entry
from zraft.errors import ZRaftError
from zraft.fsm.codec import NOT_FOUND
from zraft.storage import DiskLogStorage
from zraft.storage.errors import DiskStorageError
from zraft.testing.jepsen.history import OK, READ, REGISTER_KINDS, Op, acknowledged_inserts
from zraft.testing.jepsen.nemesis import Nemesis

BARRIER_PREFIX = "barrier."


@dataclass
class SafetyReport:
    members: list[str] = field(default_factory=list)
    applied: dict[str, int] = field(default_factory=dict)
    diverged: list[str] = field(default_factory=list)  # human-readable disagreements
    lost: dict[str, list[str]] = field(default_factory=dict)  # peer -> acked inserts missing
    acked_inserts: int = 0
    restarted: bool | None = None
    restart_problems: list[str] = field(default_factory=list)
    final_applied: int = 0  # every member applied at least this at the last convergence

    @property
    def lost_count(self) -> int:
        return len({k for keys in self.lost.values() for k in keys})

    @property
    def ok(self) -> bool:
        return not self.diverged and not self.lost and self.restarted is not False \
            and not self.restart_problems


def read_state(peer: str, pool: ConnectionPool) -> dict[str, Any]:
    rows = api.query_local(peer, ["list", ""], timeout=10.0, pool=pool)
    return {k: v for k, v in rows}


def strip_barriers(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if not k.startswith(BARRIER_PREFIX)}


@dataclass(frozen=True)
class StateView:
    """How the checks see a backend's whole state: the barrier write, one member's state
    read from its own replica, whether a state holds a barrier, the state without them."""

    barrier: Callable[[str], Any]
    read: Callable[[str, ConnectionPool], dict[str, Any]]
    has_barrier: Callable[[dict[str, Any], str], bool]
    strip: Callable[[dict[str, Any]], dict[str, Any]]


DICT_VIEW = StateView(lambda name: ["put", name, 1], read_state,
                      lambda state, name: name in state, strip_barriers)


def converge(nemesis: Nemesis, pool: ConnectionPool, timeout: float = 60.0,
             view: StateView = DICT_VIEW,
             ) -> tuple[dict[str, dict[str, Any]], dict[str, int], list[str]]:
    """(state per member, applied index per member, disagreements)."""
    members = nemesis.topo.member_peers()
    barrier = f"{BARRIER_PREFIX}{time.monotonic_ns()}"

    def put_barrier() -> bool:
        session = api.light_session(members)
        api.write(session, view.barrier(barrier), timeout=5.0, pool=pool)
        return True
    wait_until(put_barrier, timeout, "the barrier write")  # peers may still be starting
    leader = nemesis.leader(timeout)
    target = int(nemesis.stat(leader, timeout=5.0)["applied"])

    def settled() -> tuple[dict[str, dict[str, Any]], dict[str, int]] | None:
        states, applied = {}, {}
        for peer in members:
            before = int(nemesis.stat(peer, timeout=3.0)["applied"])
            if before < target:
                return None
            state = view.read(peer, pool)
            after = int(nemesis.stat(peer, timeout=3.0)["applied"])
            if before != after or not view.has_barrier(state, barrier):
                return None  # still applying: read again
            states[peer], applied[peer] = state, after
        if len(set(applied.values())) != 1:
            return None
        return states, applied

    deadline = time.monotonic() + timeout
    last: tuple[dict[str, dict[str, Any]], dict[str, int]] | None = None
    while time.monotonic() < deadline:
        try:
            last = settled()
        except ZRaftError:
            last = None
        if last is not None:
            break
        time.sleep(0.1)  # polling replicas until they settle, bounded by the deadline
    if last is None:
        raise TimeoutError(f"members {members} did not settle on one applied index "
                           f"within {timeout}s")
    states, applied = last
    problems = []
    reference_peer = members[0]
    for peer in members[1:]:
        if states[peer] != states[reference_peer]:
            diff = sorted(k for k in set(states[peer]) | set(states[reference_peer])
                          if states[peer].get(k, NOT_FOUND) != states[reference_peer].get(
                              k, NOT_FOUND))
            problems.append(f"{peer} and {reference_peer} both applied index "
                            f"{applied[peer]} but differ on {len(diff)} keys, e.g. {diff[:5]}")
    return states, applied, problems


def check_after_run(nemesis: Nemesis, pool: ConnectionPool, ops: list[Op],
                    restart: bool = True) -> tuple[SafetyReport, list[Op]]:
    """The crash-safety report, plus final reads to append to the history."""
    report = SafetyReport(members=nemesis.topo.member_peers())
    states, report.applied, report.diverged = converge(nemesis, pool)
    report.final_applied = min(report.applied.values())
    acked = acknowledged_inserts(ops)
    report.acked_inserts = len(acked)
    for peer, state in states.items():
        missing = [k for k, v in acked.items() if state.get(k) != v]
        if missing:
            report.lost[peer] = sorted(missing)
    finals = final_reads(states, ops)
    if restart:
        restart_all(nemesis, pool, states, report)
    return report, finals


def final_reads(states: dict[str, dict[str, Any]], ops: list[Op]) -> list[Op]:
    keys = {op.key for op in ops if op.kind in REGISTER_KINDS}
    now = time.monotonic()
    finals = []
    for peer, state in states.items():
        for key in sorted(keys):
            value = state.get(key)
            finals.append(Op(f"final:{peer}", READ, key, invoke=now, complete=now + 1e-6,
                             outcome=OK, result=None if value is NOT_FOUND else value,
                             node=peer))
    return finals


def restart_all(nemesis: Nemesis, pool: ConnectionPool,
                before: dict[str, dict[str, Any]], report: SafetyReport,
                view: StateView = DICT_VIEW) -> None:
    cluster = nemesis.cluster
    for n in cluster.nodes:
        cluster.kill(n)
    for n in cluster.nodes:
        cluster.start_node(n, wait=False)
    try:
        for n in cluster.nodes:
            cluster.wait_listening(n)
        wait_until(lambda: nemesis.leader(timeout=1.0), 30.0, "a leader after restarting all")
        states, applied, problems = converge(nemesis, pool, view=view)
        report.final_applied = min(applied.values())
    except (TimeoutError, ZRaftError) as exc:
        report.restarted = False
        report.restart_problems.append(f"cluster did not come back: {exc}")
        return
    report.restarted = True
    report.restart_problems.extend(problems)
    reference = view.strip(next(iter(before.values())))
    for peer, state in states.items():
        if view.strip(state) != reference:
            missing = sorted(set(reference) - set(state))[:5]
            report.restart_problems.append(
                f"{peer} restarted with a different state (missing e.g. {missing})")


def compare_logs(cluster: LocalCluster, members: list[str], upto: int
                 ) -> tuple[list[str], int]:
    """Open each member's log on disk (the nodes must be stopped) and demand that every
    index up to ``upto`` (applied everywhere) held by two nodes holds the same entry.
    Returns (problems, number of entries compared with another node's)."""
    seen: dict[int, tuple[str, Entry]] = {}
    problems: list[str] = []
    compared = 0
    for peer in members:
        node = cluster.node(peer)
        try:
            storage = DiskLogStorage.open(node.directory / "data", peer)
        except (DiskStorageError, OSError) as exc:
            problems.append(f"{peer}: log does not open after the run: {exc}")
            continue
        try:
            lo, hi = storage.first_index(), min(storage.last_index(), upto)
            for entry in storage.entries(lo, hi + 1) if lo <= hi else []:
                other = seen.get(entry.index)
                if other is None:
                    seen[entry.index] = (peer, entry)
                    continue
                compared += 1
                if other[1] != entry:
                    problems.append(f"index {entry.index}: {other[0]} has {other[1]}, "
                                    f"{peer} has {entry}")
        finally:
            storage.close()
    return problems, compared


__all__ = ["DICT_VIEW", "SafetyReport", "StateView", "check_after_run", "compare_logs",
           "converge", "final_reads", "read_state", "restart_all", "strip_barriers"]
