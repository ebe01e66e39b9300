"""The groups part of ``zraft cluster status``: every group the nodes host, by state.

Rules: the groups are the peer names each running node lists (``list_peers``); each
group's peer on each node is asked ``stat`` (all at once through ``fan_out``, bounded by
one deadline). A group is led if one of its peers says it is leader (the newest term wins),
leaderless otherwise. Per node, its peers are counted as ``leader`` (led here),
``follower``, ``candidate`` (pre-candidates too) or ``no_answer``. With at most
``GROUP_LINES`` groups the text shows one line per group; beyond, only the counts (and
the first leaderless groups' names). Nothing is added when the nodes host only the
cluster's own group (the output of a one-group cluster does not change).
"""

from __future__ import annotations

from typing import Any

from zraft.client.connection import ConnectionPool
from zraft.cluster import admin
from zraft.cluster.fanout import fan_out
from zraft.cluster.local import LocalCluster

GROUP_LINES = 10  # groups shown one per line; more are summarised
SHOWN_LEADERLESS = 10


def collect(cluster: LocalCluster, pool: ConnectionPool, timeout: float = 10.0,
            list_timeout: float = 1.0) -> dict[str, Any] | None:
    """``{"count", "led", "leaderless", "leaderless_names", "per_node", "groups"}``, or
    None when the nodes host no group but the cluster's own."""
    nodes = admin.live_nodes(cluster)
    # listing is bounded like every status probe: a node that does not answer costs
    # ``list_timeout``, and only the stats of many groups may take up to ``timeout``
    listed = fan_out(pool, [(cluster.peer_id(n), "list_peers", []) for n in nodes],
                     list_timeout)
    names: set[str] = set()
    for status, payload in listed:
        if status == "ok" and isinstance(payload, list):
            names.update(p for p in payload if isinstance(p, str))
    if not names or names == {cluster.peer_name}:
        return None
    order = sorted(names)
    reqs = [(f"{name}@{n.address}", "stat", [name]) for name in order for n in nodes]
    answers = iter(fan_out(pool, reqs, timeout))
    per_node = {n.index: {"groups": 0, "leader": 0, "follower": 0, "candidate": 0,
                          "no_answer": 0} for n in nodes}
    groups = []
    for name in order:
        roles: dict[int, str] = {}
        leader: tuple[int, int] | None = None  # (term, node index)
        for n in nodes:
            status, info = next(answers)
            if status != "ok" or not isinstance(info, dict):
                if status != "noproc":  # noproc: this node has no peer of the group
                    roles[n.index] = "no_answer"
                continue
            role = str(info.get("role"))
            role = "candidate" if role in ("candidate", "precandidate") else role
            roles[n.index] = role if role in ("leader", "follower", "candidate") else "other"
            if role == "leader":
                term = int(info.get("term") or 0)
                if leader is None or term > leader[0]:
                    leader = (term, n.index)
        for index, role in roles.items():
            counts = per_node[index]
            counts["groups"] += 1
            if role in counts:
                counts[role] += 1
        groups.append({"name": name, "leader": leader[1] if leader else None,
                       "term": leader[0] if leader else None, "roles": roles})
    leaderless = [g["name"] for g in groups if g["leader"] is None]
    return {"count": len(groups), "led": len(groups) - len(leaderless),
            "leaderless": len(leaderless), "leaderless_names": leaderless[:SHOWN_LEADERLESS],
            "per_node": per_node, "groups": groups if len(groups) <= GROUP_LINES else None}


def render(doc: dict[str, Any]) -> list[str]:
    """The text lines of the groups part."""
    head = f"groups: {doc['count']}, {doc['led']} led"
    if doc["leaderless"]:
        names = ", ".join(doc["leaderless_names"])
        more = ", ..." if doc["leaderless"] > len(doc["leaderless_names"]) else ""
        head += f", {doc['leaderless']} leaderless ({names}{more})"
    lines = [head]
    if doc.get("groups") is not None:
        rows = [[g["name"], f"node {g['leader']}" if g["leader"] else "none",
                 "-" if g["term"] is None else str(g["term"]),
                 " ".join(f"{i}:{r}" for i, r in sorted(g["roles"].items()))]
                for g in doc["groups"]]
        return lines + _table(["GROUP", "LEADER", "TERM", "ROLES (node:role)"], rows)
    rows = [[str(i), str(c["groups"]), str(c["leader"]), str(c["follower"]),
             str(c["candidate"]), str(c["no_answer"])]
            for i, c in sorted(doc["per_node"].items())]
    return lines + _table(["NODE", "GROUPS", "LED HERE", "FOLLOWER", "CANDIDATE",
                           "NO ANSWER"], rows)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]
    return out
