"""The watcher actor: delivers watch triggers and session state changes to user code.

Rules:
- Every user callback (watch callbacks, listeners) runs on the watcher's own thread, never on
  the session actor's, so a slow or blocking callback delays only later callbacks of the same
  session (which keep their order), never the session's pings, writes or failover.
- A watch target is a callable (called with the ``WatchEvent``) or anything with ``put``
  (a ``queue.Queue``: the event is put). A callback that raises is logged and forgotten.
- Listener states follow kazoo: ``CONNECTED``, ``SUSPENDED`` (leader unknown or changing:
  pause what needs agreement), ``EXPIRED`` (the session is gone with its temporary data;
  kazoo's LOST). Valid moves: CONNECTED<->SUSPENDED, either -> EXPIRED.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import pykka

log = logging.getLogger("zraft.client.watcher")
_local = threading.local()


def in_watcher_thread() -> bool:
    """True inside a watch or listener callback (which must not block on its own watcher)."""
    return bool(getattr(_local, "inside", False))


class SessionState(enum.StrEnum):
    CONNECTED = "CONNECTED"
    SUSPENDED = "SUSPENDED"
    EXPIRED = "EXPIRED"


class WatchEvent(NamedTuple):
    """A one-shot watch fired. ``reason`` is ``data_changed`` or ``leader_changed``; ``ref``
    is the caller's tag (or the session's watch number when the watch was a callback/queue);
    ``query`` is the query that armed it (query again to re-arm)."""

    ref: Any
    reason: str
    query: Any


class Deliver(NamedTuple):
    target: Callable[[Any], Any] | Any
    event: Any


class Watcher(pykka.ThreadingActor):
    """Runs user callbacks in order, off the session actor."""

    use_daemon_thread = True

    def __init__(self) -> None:
        super().__init__()
        self.delivered = 0

    def on_start(self) -> None:
        _local.inside = True

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Deliver):
            deliver(message.target, message.event)
            self.delivered += 1
            return None
        return super().on_receive(message)


def deliver(target: Any, event: Any) -> None:
    try:
        if callable(target):
            target(event)
        elif hasattr(target, "put"):
            target.put(event)
        else:
            log.warning("watch target %r is neither callable nor a queue", target)
    except Exception:
        log.exception("watch/listener callback %r failed", target)
