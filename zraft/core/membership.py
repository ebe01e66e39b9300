"""Membership change bookkeeping on the leader (SPEC section 3, with the staging phase).

Rules:
- A change runs ``staging -> joint -> final``: new members first replicate as non-voting
  learners until each has ``match >= target`` (the leader's commit when staging started);
  then the joint entry ``{old, new}`` is appended; when it commits, the stable ``{new}``
  entry is appended; when that commits the caller gets ``ConfigChangeResult``.
- A configuration takes effect on APPEND; the active one is the last CONFIG entry in the log.
- Only staging can time out: once the joint entry is in the log the change must finish (a
  new leader finishes it too, since any leader finishes a committed joint configuration).
- Change errors, checked in zraft_lib's order: ``not_stable``, ``newer_exists``,
  ``process_prev_change``, ``not_leader``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STAGING = "staging"
JOINT = "joint"
FINAL = "final"

NOT_STABLE = "not_stable"
NEWER_EXISTS = "newer_exists"
PROCESS_PREV_CHANGE = "process_prev_change"
NOT_LEADER = "not_leader"
LEADER_CHANGED = "leader_changed"
TIMEOUT = "timeout"


@dataclass(slots=True)
class PendingChange:
    ctx: Any
    new_peers: tuple[str, ...]
    learners: tuple[str, ...]
    target: int
    ticks_left: int
    phase: str = STAGING
    joint_index: int = 0
    final_index: int = 0


def check_change(
    config_state: str,
    config_index: int,
    commit: int,
    prev_index: int,
    change_pending: bool,
    is_leader: bool,
) -> str | None:
    """The first error that forbids a change right now, or None."""
    if config_state != "stable":
        return NOT_STABLE
    if config_index != prev_index:
        return NEWER_EXISTS
    if change_pending or config_index > commit:
        return PROCESS_PREV_CHANGE
    if not is_leader:
        return NOT_LEADER
    return None
