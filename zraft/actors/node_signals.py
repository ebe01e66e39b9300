"""Failure signals about a node, given to one peer's core (quiescence, docs/internals.md).

Kept out of peer.py so that file only dispatches: the core decides what a signal means
(a follower whose leader is on that node campaigns soon, a quiesced leader wakes).
"""

from __future__ import annotations

from typing import Any

from zraft.core.raft import RaftCore
from zraft.ids import node_of

RESTARTED = "restarted"
REACHABLE = "reachable"


def apply_node_signal(core: RaftCore, kind: str, node: str) -> int:
    """Tell ``core`` about every member of its group on ``node``; returns how many."""
    cfg = core.log.config()[1]
    members: set[Any] = set(cfg.old) | set(cfg.new) | set(core.progress)
    if core.leader is not None:
        members.add(core.leader)
    told = 0
    for peer in sorted(members):
        if peer == core.id or node_of(peer) != node:
            continue
        if kind == RESTARTED:
            core.peer_restarted(peer)
        elif kind == REACHABLE:
            core.peer_reachable(peer)
        else:
            core.peer_unreachable(peer)
        told += 1
    return told

