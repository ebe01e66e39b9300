"""Errors raised by the pure core.

Rules: ``NotLeader`` is the only error a caller is expected to handle in normal operation
(redirect to ``leader``). ``InvariantViolation`` means the log or a peer broke a Raft safety
invariant (e.g. a truncation at or below the commit index): the peer must stop, never repair.
"""

from __future__ import annotations


class CoreError(Exception):
    """Base class of every error raised by ``zraft.core``."""


class NotLeader(CoreError):
    """The operation needs the leader; ``leader`` is the known leader or ``None``."""

    def __init__(self, leader: str | None) -> None:
        super().__init__(f"not leader (leader hint: {leader})")
        self.leader = leader


class TransferInProgress(NotLeader):
    """The leader is handing leadership to ``target`` and takes no proposal meanwhile: retry
    (on the new leader once it is elected). A NotLeader, so code that only knows that
    treats it as a refusal that changed nothing."""

    def __init__(self, leader: str | None, target: str) -> None:
        super().__init__(leader)
        self.args = (f"leadership transfer to {target} in progress",)
        self.target = target


class InvariantViolation(CoreError):
    """A Raft safety invariant would be broken (zraft_lib's ``commit_collision``)."""


class ConfigError(CoreError, ValueError):
    """A ``CoreConfig`` value is out of range."""
