"""Quorum arithmetic for single and joint configurations (zraft_quorum_counter's job).

Rules:
- The committed index of a group is the highest index that a majority has reached: sort the
  values ascending and take position ``(n - 1) // 2`` (SPEC 2.8).
- A joint configuration needs a majority in ``old`` AND in ``new``: the joint index is the
  minimum of both, and a vote is won only when both halves won (Raft thesis 4.3).
- An empty half does not constrain (it answers "infinitely high" / "won"), so a stable
  configuration is simply the joint case with an empty ``new``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from zraft.core.entries import ClusterConfig

UNBOUNDED = 1 << 62

WON = "won"
LOST = "lost"
PENDING = "pending"


def majority_index(group: Iterable[str], value: Callable[[str], int]) -> int:
    """Highest value that a majority of ``group`` has reached (UNBOUNDED if empty)."""
    values = sorted(value(p) for p in group)
    if not values:
        return UNBOUNDED
    return values[(len(values) - 1) // 2]


def committed_index(config: ClusterConfig, value: Callable[[str], int]) -> int:
    """Joint-aware quorum index of ``value`` over the voters of ``config`` (0 if blank)."""
    if config.is_blank:
        return 0
    idx = majority_index(config.old, value)
    if config.new:
        idx = min(idx, majority_index(config.new, value))
    return 0 if idx == UNBOUNDED else idx


def _group_vote(group: tuple[str, ...], votes: Mapping[str, bool]) -> str:
    if not group:
        return WON
    need = len(group) // 2 + 1
    granted = rejected = 0
    for p in group:
        v = votes.get(p)
        if v is True:
            granted += 1
        elif v is False:
            rejected += 1
    if granted >= need:
        return WON
    if len(group) - rejected < need:
        return LOST
    return PENDING


def vote_result(config: ClusterConfig, votes: Mapping[str, bool]) -> str:
    """``won``, ``lost`` or ``pending`` for the votes collected so far."""
    if config.is_blank:
        return LOST
    a = _group_vote(config.old, votes)
    b = _group_vote(config.new, votes)
    if a == WON and b == WON:
        return WON
    if LOST in (a, b):
        return LOST
    return PENDING


def has_quorum(config: ClusterConfig, members: set[str] | frozenset[str]) -> bool:
    """True when ``members`` holds a majority of every half of ``config``."""
    return vote_result(config, {p: True for p in members}) == WON
