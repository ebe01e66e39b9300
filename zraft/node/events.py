"""The node's event timeline: elections, leader changes, config changes, snapshots, faults.

Each event is one log line on the ``zraft.events`` logger with a stable, machine-readable
form (``EVENT {json}``; in JSON logs, the line's ``event`` field), so `zraft cluster events`
can rebuild the timeline from the nodes' console logs, and a bounded in-memory tail for
`node_status`.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from typing import Any

log = logging.getLogger("zraft.events")


class EventLog:
    def __init__(self, node: str, keep: int = 200) -> None:
        self.node = node
        self._lock = threading.Lock()
        self._tail: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)

    def record(self, kind: str, **fields: Any) -> None:
        event = {"t": round(time.time(), 3), "node": self.node, "kind": kind, **fields}
        with self._lock:
            self._tail.append(event)
        # extra: the fields again, as a JSON log line's "event" (``[logging] format = "json"``)
        log.info("EVENT %s", json.dumps(event, sort_keys=True, default=str),
                 extra={"event": event})

    def tail(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._tail)
