"""``zraft cluster status``: one row per node, from psutil and each peer's ``stat``; then,
when the nodes host more groups than the cluster's own, those groups by state
(``group_status``: one line per group when few, counts per node when many).

Rules: a node's state comes first from its process (``down`` when it does not run,
``paused`` when SIGSTOPped: a paused node is never asked anything, so status never waits on
it), then from its peer's stat (``leader``/``follower``/``candidate``; a pre-candidate shows
as ``candidate``; a member the leader replicates to as a learner, or a peer that is not in
its own configuration, shows as ``learner``; ``unreachable`` if a running node does not
answer in time; ``failed`` when the peer stopped because its backend cannot run, with the
reason in ``failure`` and in the NOTE column). Lag is the leader's last log index minus the
node's. Probes run in parallel, each bounded by ``timeout``.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from zraft.client.connection import ConnectionPool
from zraft.cluster import admin, group_status
from zraft.cluster.local import LocalCluster, NodeProcess

STATES = ("leader", "follower", "candidate", "learner", "down", "paused", "unreachable",
          "failed")
COLUMNS = ("node", "peer", "pid", "state", "term", "commit", "applied", "last_index",
           "snapshot_index", "lag", "rss_mb", "blocked")


def collect(cluster: LocalCluster, pool: ConnectionPool, timeout: float = 1.0,
            groups_timeout: float = 10.0) -> dict[str, Any]:
    """The status document: ``{"time", "leader", "term", "nodes": [row, ...], "groups"}``
    (``groups``: ``group_status.collect``, None when the nodes host only this group)."""
    def probe(n: NodeProcess) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        if not n.alive() or n.paused():
            return None, None
        return (admin.stat(pool, cluster, n, timeout),
                admin.node_status(pool, cluster, n, timeout))

    with ThreadPoolExecutor(max_workers=max(1, len(cluster.nodes))) as ex:
        probes = list(ex.map(probe, cluster.nodes))
    stats = {n.index: p[0] for n, p in zip(cluster.nodes, probes, strict=True)}
    statuses = {n.index: p[1] for n, p in zip(cluster.nodes, probes, strict=True)}
    leader_stat = _leader_stat(stats)
    rows = [_row(cluster, n, stats[n.index], statuses[n.index], leader_stat)
            for n in cluster.nodes]
    return {"time": round(time.time(), 3), "dir": str(cluster.directory),
            "leader": leader_stat.get("id") if leader_stat else None,
            "term": leader_stat.get("term") if leader_stat else None,
            "partition": (admin.current_partition(cluster) or {}).get("groups"),
            "nodes": rows, "groups": group_status.collect(cluster, pool, groups_timeout,
                                                          timeout)}


def _leader_stat(stats: dict[int, dict[str, Any] | None]) -> dict[str, Any] | None:
    leaders = [s for s in stats.values() if s and s.get("role") == "leader"]
    # two leaders can coexist briefly (an old one in a minority): the newest term wins
    return max(leaders, key=lambda s: s.get("term", 0)) if leaders else None


def _row(cluster: LocalCluster, n: NodeProcess, info: dict[str, Any] | None,
         node_info: dict[str, Any] | None, leader: dict[str, Any] | None) -> dict[str, Any]:
    alive, paused = n.alive(), n.paused()
    row: dict[str, Any] = {
        "node": n.index, "peer": cluster.peer_id(n), "address": n.address,
        "pid": n.pid if alive else None, "state": "down", "term": None, "commit": None,
        "applied": None, "last_index": None, "snapshot_index": None, "lag": None,
        "rss_mb": None, "blocked": [], "leader": None, "snapshots": None, "failure": None,
    }
    if not alive:
        return row
    rss = n.rss()
    row["rss_mb"] = round(rss / 2**20, 1) if rss is not None else None
    if paused:
        row["state"] = "paused"
        return row
    if info is None:
        row["state"] = "unreachable"
        return row
    row.update(term=info.get("term"), commit=info.get("commit"), applied=info.get("applied"),
               last_index=info.get("last_index"), snapshot_index=info.get("snapshot_index"),
               leader=info.get("leader"), config_state=info.get("config_state"))
    row["state"] = _state(cluster.peer_id(n), info, leader)
    failed = info.get("backend_failed")
    if isinstance(failed, dict):
        row["state"], row["failure"] = "failed", str(failed.get("error"))
    # an old leader cut off in a minority still says "leader" until it hears a newer term
    row["stale_leader"] = bool(row["state"] == "leader" and leader is not None
                               and info.get("term", 0) < leader.get("term", 0))
    if leader is not None and info.get("last_index") is not None:
        row["lag"] = max(0, int(leader.get("last_index", 0)) - int(info["last_index"]))
    if node_info is not None:
        transport = node_info.get("transport") or {}
        row["blocked"] = sorted(transport.get("blocked") or [])
        row["snapshots"] = node_info.get("snapshots")
    return row


def _state(peer: str, info: dict[str, Any], leader: dict[str, Any] | None) -> str:
    role = str(info.get("role"))
    if role == "leader":
        return "leader"
    if role in ("candidate", "precandidate"):
        return "candidate"
    progress = (leader or {}).get("progress") or {}
    if progress.get(peer, {}).get("learner"):
        return "learner"
    config = info.get("config") or {}
    members = set(config.get("old") or []) | set(config.get("new") or [])
    if members and peer not in members:
        return "learner"
    return "follower"


# ---------------------------------------------------------------- rendering


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, default=str)


def render(doc: dict[str, Any]) -> str:
    """A fixed-width table, one line per node, then the leader line."""
    headers = ["NODE", "PEER", "PID", "STATE", "TERM", "COMMIT", "APPLIED", "LAST", "SNAP",
               "LAG", "RSS MB", "NOTE"]
    lines = []
    for row in doc["nodes"]:
        note = []
        if row.get("blocked"):
            note.append("partitioned from " + ",".join(row["blocked"]))
        snaps = row.get("snapshots") or {}
        stream = snaps.get("stream") or {}
        if stream.get("sends_started", 0) > stream.get("sends_ok", 0) + stream.get(
                "sends_failed", 0):
            note.append("sending snapshot")
        if row.get("failure"):
            note.append(f"backend failed: {row['failure']}")
        if row.get("stale_leader"):
            note.append("stale leader (older term)")
        if row.get("config_state") not in (None, "stable"):
            note.append(f"config {row['config_state']}")
        lines.append([str(row["node"]), row["peer"], _cell(row["pid"]), row["state"],
                      _cell(row["term"]), _cell(row["commit"]), _cell(row["applied"]),
                      _cell(row["last_index"]), _cell(row["snapshot_index"]),
                      _cell(row["lag"]), _cell(row["rss_mb"]), "; ".join(note)])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
              for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    leader = doc.get("leader")
    out.append(f"leader: {leader} (term {doc.get('term')})" if leader else "leader: none")
    if doc.get("partition"):
        groups = " | ".join(",".join(str(i) for i in g) for g in doc["partition"])
        out.append(f"partition in force: {groups}  (zraft cluster heal)")
    if doc.get("groups"):
        out += group_status.render(doc["groups"])
    return "\n".join(out)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)
