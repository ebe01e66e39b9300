"""Which client connection currently speaks for each session, for pushes (watches, expiry).

Written from transport reader threads and peer actors, read from state machine actors:
a lock guards the map. Connections are the transport's objects (``conn.send``).
"""

from __future__ import annotations

import threading
from typing import Any


class SessionRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: dict[tuple[str, str], Any] = {}

    def register(self, peer_name: str, sid: str, conn: Any) -> None:
        with self._lock:
            self._conns[(peer_name, sid)] = conn

    def forget(self, peer_name: str, sid: str) -> None:
        with self._lock:
            self._conns.pop((peer_name, sid), None)

    def conn(self, peer_name: str, sid: str) -> Any | None:
        with self._lock:
            return self._conns.get((peer_name, sid))

    def count(self, peer_name: str) -> int:
        with self._lock:
            return sum(1 for (p, _) in self._conns if p == peer_name)
