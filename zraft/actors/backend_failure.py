"""What a peer does when its backend cannot run: it stops, loudly, alone.

Rules:
- Causes: the backend cannot be loaded when the peer starts (import, class, constructor),
  or its ``init`` or ``install_snapshot`` raised (the state machine actor says so with
  ``BackendFailed``). Then the replica's state is unknown or absent, so applying more
  entries would answer from a state no other replica has: the peer drops its core, log
  writer and state machine (its log and snapshots stay on disk, untouched) and takes no
  part in Raft until the node restarts. (An ``apply`` that raises is not such a failure:
  it is an error *result*, the same on every replica; see zraft/fsm/machine.py.)
- It never crashes: a crash loop would restart it for nothing (the cause is in the code or
  the environment, not in the peer) and, before the supervisor's Backoff, took the node's
  other groups down with it.
- It answers every client request at once with ``backend_failed`` and a one-line message
  naming the cause (``stat`` still answers, with ``role: down`` and ``backend_failed``),
  with the last leader it knew, so a client can go there; the node prints the same line
  on stderr and lists it in ``node_status``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

RESTART_HINT = "fix the backend, then restart the node"


@dataclass
class BackendFailure:
    reason: str  # one line: what failed and the exception
    since: float = field(default_factory=time.monotonic)
    code: str = "backend_failed"

    @staticmethod
    def due() -> bool:
        return False  # nothing to retry: the cause is outside the peer

    def message(self, peer_id: str) -> str:
        return f"peer {peer_id} is stopped: {self.reason}; {RESTART_HINT}"

    def stat(self) -> dict[str, object]:
        return {"error": self.reason, "since_s": round(time.monotonic() - self.since, 1)}
