"""Client-side operations on a LocalCluster: create, find the leader, partition, membership.

Rules: every call is bounded by a timeout and goes over one ``ConnectionPool`` holding the
cluster's cookie (admin messages are authenticated like everything else). ``ask`` is a single
attempt with no retry, for status probes that must not wait on a dead or paused node;
membership changes go through ``zraft.client.api`` (get_conf / set_new_conf), so the core
makes a new peer a learner that catches up before it votes. The partition in force is kept
in ``DIR/partition.json`` so a node restarted during it gets its filter back.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from typing import Any

from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.cluster.local import LocalCluster, NodeProcess, wait_until
from zraft.errors import ZRaftError

PARTITION_FILE = "partition.json"


def pool_for(cluster: LocalCluster) -> ConnectionPool:
    return ConnectionPool(cluster.cookie.encode(), connect_timeout=1.0,
                          tls=cluster.client_tls())


def ask(pool: ConnectionPool, peer: str, op: str, args: Any, timeout: float) -> tuple[str, Any]:
    """One request, one attempt: ``(status, payload)``, or ``("timeout", None)``."""
    done = threading.Event()
    answer: list[tuple[str, Any]] = []

    def on_reply(status: str, payload: Any) -> None:
        answer.append((status, payload))
        done.set()

    cancel = pool.request(peer, op, args, on_reply)
    if not done.wait(timeout):
        cancel()
        return "timeout", None
    return answer[0]


def stat(pool: ConnectionPool, cluster: LocalCluster, n: NodeProcess,
         timeout: float = 1.0) -> dict[str, Any] | None:
    """The peer's stat dict, or None if the node does not answer in time."""
    status, payload = ask(pool, cluster.peer_id(n), "stat", [cluster.peer_name], timeout)
    return payload if status == "ok" and isinstance(payload, dict) else None


def node_status(pool: ConnectionPool, cluster: LocalCluster, n: NodeProcess,
                timeout: float = 1.0) -> dict[str, Any] | None:
    status, payload = ask(pool, cluster.peer_id(n), "node_status", [], timeout)
    return payload if status == "ok" and isinstance(payload, dict) else None


def live_nodes(cluster: LocalCluster) -> list[NodeProcess]:
    """Nodes whose process runs (not paused): the ones that can answer."""
    return [n for n in cluster.nodes if n.alive() and not n.paused()]


def find_leader(pool: ConnectionPool, cluster: LocalCluster,
                exclude: Iterable[str] = ()) -> NodeProcess | None:
    """The node whose peer says it is leader (one probe round, no waiting). If two say so
    (an old leader cut off in a minority has not heard of the new term yet), the newer
    term wins."""
    skip = set(exclude)
    best: tuple[int, NodeProcess] | None = None
    for n in live_nodes(cluster):
        if cluster.peer_id(n) in skip:
            continue
        info = stat(pool, cluster, n, 0.5)
        if info is not None and info.get("role") == "leader":
            term = int(info.get("term") or 0)
            if best is None or term > best[0]:
                best = (term, n)
    return best[1] if best is not None else None


def wait_leader(pool: ConnectionPool, cluster: LocalCluster, timeout: float = 20.0,
                exclude: Iterable[str] = ()) -> NodeProcess:
    skip = list(exclude)
    return wait_until(lambda: find_leader(pool, cluster, skip), timeout, "a leader")


def create(pool: ConnectionPool, cluster: LocalCluster, backend: str | None = None,
           timeout: float = 20.0) -> NodeProcess:
    """Create the Raft cluster over every node's peer and wait for its leader."""
    api.create(cluster.peers, backend or cluster.backend, timeout=timeout, pool=pool)
    return wait_leader(pool, cluster, timeout)


def partition(pool: ConnectionPool, cluster: LocalCluster,
              groups: list[list[NodeProcess]], timeout: float = 2.0) -> dict[str, list[str]]:
    """Split the nodes into ``groups`` (nodes in no group form one more group together):
    every node drops peer traffic to and from the nodes outside its group. Returns what
    each node blocks. Raises if a running node refuses (fault injection disabled)."""
    listed = {n.index for g in groups for n in g}
    rest = [n for n in cluster.nodes if n.index not in listed]
    all_groups = [g for g in [*groups, rest] if g]
    blocked: dict[str, list[str]] = {}
    for group in all_groups:
        inside = {n.index for n in group}
        outside = sorted(n.address for n in cluster.nodes if n.index not in inside)
        for n in group:
            blocked[n.address] = outside
    groups_by_index = [[n.index for n in g] for g in all_groups]
    cluster.record_fault("partition", groups=groups_by_index)
    _write_partition(cluster, {"groups": groups_by_index, "blocked": blocked})
    _each_node(pool, cluster, lambda n: ("partition", [blocked[n.address]]), timeout)
    return blocked


def heal(pool: ConnectionPool, cluster: LocalCluster, timeout: float = 2.0) -> None:
    cluster.record_fault("heal")
    _write_partition(cluster, None)
    _each_node(pool, cluster, lambda n: ("heal", []), timeout)


def current_partition(cluster: LocalCluster) -> dict[str, Any] | None:
    """The partition in force (``{"groups", "blocked"}``), or None when healed."""
    try:
        doc = json.loads((cluster.directory / PARTITION_FILE).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def reapply_partition(pool: ConnectionPool, cluster: LocalCluster, n: NodeProcess,
                      timeout: float = 2.0) -> bool:
    """A node started during a partition gets its filter back (filters live in memory)."""
    doc = current_partition(cluster)
    blocks = (doc or {}).get("blocked", {}).get(n.address)
    if not blocks:
        return False
    status, payload = ask(pool, cluster.peer_id(n), "partition", [blocks], timeout)
    if status != "ok":
        raise ZRaftError(f"node {n.index}: partition not re-applied: {status} {payload}")
    return True


def _write_partition(cluster: LocalCluster, doc: dict[str, Any] | None) -> None:
    path = cluster.directory / PARTITION_FILE
    if doc is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(json.dumps(doc, sort_keys=True) + "\n")


def _each_node(pool: ConnectionPool, cluster: LocalCluster, request: Any, timeout: float) -> None:
    failures = []
    for n in live_nodes(cluster):
        op, args = request(n)
        status, payload = ask(pool, cluster.peer_id(n), op, args, timeout)
        if status != "ok":
            message = payload.get("message") if isinstance(payload, dict) else payload
            failures.append(f"node {n.index}: {status} {message or ''}".strip())
    if failures:
        raise ZRaftError("; ".join(failures))


def add_node(pool: ConnectionPool, cluster: LocalCluster, timeout: float = 30.0) -> NodeProcess:
    """Start a new node, create a blank peer on it, then ``set_new_conf`` with it: the core
    makes it a learner until it has caught up, then a voter."""
    deadline = time.monotonic() + timeout
    leader, old = api.get_conf(_any_peer(cluster), timeout, pool=pool)
    n = cluster.add_node()
    new_peer = cluster.peer_id(n)
    cluster_id = api.stat(leader, _left(deadline), pool=pool).get("cluster_id") or None
    api.create_peer(new_peer, cluster.backend, timeout=_left(deadline), pool=pool,
                    cluster_id=cluster_id)
    api.set_new_conf(leader, [*old, new_peer], old, _left(deadline), pool=pool)
    return n


def remove_node(pool: ConnectionPool, cluster: LocalCluster, node: NodeProcess,
                timeout: float = 30.0) -> list[str]:
    """``set_new_conf`` without the node's peer, then stop its process (data stays)."""
    deadline = time.monotonic() + timeout
    gone = cluster.peer_id(node)
    others = [n for n in cluster.nodes if n is not node]
    ask_peer = next((cluster.peer_id(n) for n in others if n.alive()), gone)
    leader, old = api.get_conf(ask_peer, timeout, pool=pool)
    new = [p for p in old if p != gone]
    if gone in old:
        if not new:
            raise ZRaftError("cannot remove the last peer")
        api.set_new_conf(leader, new, old, _left(deadline), pool=pool)
    cluster.forget_node(node)
    return new


def _any_peer(cluster: LocalCluster) -> str:
    nodes = live_nodes(cluster)
    if not nodes:
        raise ZRaftError("no node of the cluster is running")
    return cluster.peer_id(nodes[0])


def _left(deadline: float) -> float:
    return max(0.5, deadline - time.monotonic())
