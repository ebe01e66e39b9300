"""What a peer does while it cannot write its log (disk full, read-only, I/O error).

Rules:
- A write or fsync that fails poisons the log (memory and disk are out of step): the peer
  drops its core, state machine and log writer, and waits. It does not crash: a crash loop
  (restart, fail, restart) would only burn the supervisor's restart budget and take the
  node's other groups down with it.
- While it waits it answers every client request at once with ``storage_failed`` and a
  message naming the error ("peer X cannot write its log: [Errno 28] No space left on
  device; retrying in 4 s"), so clients learn the cluster cannot write instead of timing
  out; the last leader it knew rides along, for a redirect. Raft messages are dropped (it
  cannot persist a vote or an entry): the others elect a leader without it.
- It retries on the node's ticks with exponential backoff (0.5 s doubling to 30 s): a retry
  reopens (recovers) the log as a restart would, cutting whatever the failed write left
  after the last durable index, since a failed fsync may leave pages in the cache that
  never reached the disk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

FIRST_RETRY_S = 0.5
MAX_RETRY_S = 30.0


@dataclass
class StorageFailure:
    reason: str
    durable: int  # last index known durable when the write failed: later entries go
    since: float
    retry_s: float = FIRST_RETRY_S
    next_retry: float = 0.0
    attempts: int = 0
    code: str = "storage_failed"

    @classmethod
    def begin(cls, reason: str, durable: int) -> StorageFailure:
        now = time.monotonic()
        return cls(reason, durable, now, next_retry=now + FIRST_RETRY_S)

    def due(self) -> bool:
        return time.monotonic() >= self.next_retry

    def failed_again(self, reason: str) -> None:
        self.reason = reason
        self.attempts += 1
        self.retry_s = min(self.retry_s * 2, MAX_RETRY_S)
        self.next_retry = time.monotonic() + self.retry_s

    def message(self, peer_id: str) -> str:
        left = max(0.0, self.next_retry - time.monotonic())
        return f"peer {peer_id} cannot write its log: {self.reason}; retrying in {left:.1f}s"

    def stat(self) -> dict[str, object]:
        return {"error": self.reason, "since_s": round(time.monotonic() - self.since, 1),
                "retries": self.attempts, "next_retry_s": round(
                    max(0.0, self.next_retry - time.monotonic()), 1)}
