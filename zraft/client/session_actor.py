"""The session actor: ``SessionCore`` (all of a session's protocol rules) run as a Pykka
actor; ``session.Session`` wraps it.

Rules: replies (connection reader thread), pushes and timers (timer thread) reach the core
as messages in the actor's mailbox, so the core runs on the actor's thread only. The actor's
stop is the core's end (``stop_core``). A message for a stopped actor is dropped.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pykka

from zraft.client.session_core import (  # re-exported: session.py and tests import them here
    CancelRequest,
    ListenerChange,
    QueryRequest,
    SessionCore,
    SessionInfo,
    StopRequest,
    WriteRequest,
    fail_future,
    is_tag,
)

__all__ = [
    "CancelRequest",
    "ListenerChange",
    "QueryRequest",
    "SessionActor",
    "SessionInfo",
    "StopRequest",
    "WriteRequest",
    "fail_future",
    "is_tag",
]


class SessionActor(SessionCore, pykka.ThreadingActor):
    use_daemon_thread = True  # a forgotten session must not keep a script alive

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pykka.ThreadingActor.__init__(self)
        SessionCore.__init__(self, *args, **kwargs)

    def post(self, message: Any) -> None:  # from any thread: the mailbox orders them
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(message)

    def stop_self(self) -> None:
        self.actor_ref.stop(block=False)

    def on_start(self) -> None:
        self.start_core()

    def on_stop(self) -> None:
        self.stop_core()

    def on_receive(self, message: Any) -> Any:
        if not self.handle(message):
            return super().on_receive(message)
        return None
