"""Sessions (zraft_lib's ``zraft_session``): exactly-once writes, temporary data, watches.

    s = Session.start(["a@h:7001", "b@h:7002", "c@h:7003"], session_timeout=10, cookie="c")
    s.add_listener(print)                         # CONNECTED / SUSPENDED / EXPIRED
    s.write_sync(["lock", "me"], temporary=True)  # deleted when the session expires
    s.query_sync("k", watch=lambda ev: ...)       # one-shot: WatchEvent(ref, reason, query)
    s.stop()                                      # [5, sid]: expire now

Rules: ``Session`` only sends messages to its ``SessionActor`` (all protocol rules are in
``zraft.client.session_actor``) and returns pykka futures; user callbacks run on the
session's ``Watcher`` actor; ``start`` blocks (bounded) until the cluster acknowledged the
session unless ``wait=False``. Without ``pool``, ``cookie`` or ``cookie_file`` the session
uses the default pool (``zraft.configure``). Every timeout argument is checked before
anything is sent (``checks.check_timeout``: ``ValueError`` naming it).
"""

from __future__ import annotations

import queue
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pykka

from zraft.client import api
from zraft.client.checks import check_optional_timeout, check_timeout
from zraft.client.connection import ConnectionPool
from zraft.client.session_actor import (
    ListenerChange,
    QueryRequest,
    SessionActor,
    SessionInfo,
    StopRequest,
    WriteRequest,
    fail_future,
    is_tag,
)
from zraft.client.watcher import SessionState, Watcher, WatchEvent, in_watcher_thread
from zraft.errors import NoPeers, SessionExpired, Timeout, ZRaftError
from zraft.ids import PeerId, peer_str

Peer = PeerId | str


class Session:
    """A started session: a SessionActor plus its Watcher, behind blocking-friendly methods."""

    def __init__(self, actor: pykka.ActorRef[SessionActor], watcher: pykka.ActorRef[Watcher],
                 info: SessionInfo) -> None:
        self.actor_ref = actor
        self.watcher_ref = watcher
        self.info = info
        self.events: queue.Queue[WatchEvent] = queue.Queue()

    @classmethod
    def start(
        cls,
        peer_or_peers: Peer | Sequence[Peer],
        session_timeout: float = 10.0,
        *,
        cookie: str | bytes | None = None,
        cookie_file: str | None = None,
        pool: ConnectionPool | None = None,
        fail_timeout: float | None = None,
        election_timeout: float | None = None,
        listeners: Sequence[Callable[[SessionState], Any]] = (),
        wait: bool = True,
    ) -> Session:
        """Start a session; with ``wait`` block until it is connected (``Timeout`` if the
        cluster did not acknowledge it within ``session_timeout``). ``listeners`` are added
        before connecting, so they see the first CONNECTED."""
        session_timeout = check_timeout(session_timeout, "session_timeout")
        fail_timeout = check_optional_timeout(fail_timeout, "fail_timeout")
        election_timeout = check_optional_timeout(election_timeout, "election_timeout")
        given = ([peer_or_peers] if isinstance(peer_or_peers, (str, PeerId))
                 else list(peer_or_peers))
        peers = [peer_str(p) for p in given]
        if not peers:
            raise NoPeers("a session needs at least one peer")
        pool, own_pool = api.pool_for(pool, cookie, cookie_file)
        info = SessionInfo(f"s-{uuid.uuid4().hex}", peers[0])
        watcher = Watcher.start()
        actor = SessionActor.start(peers, session_timeout, pool, watcher, info,
                                   fail_timeout, election_timeout, listeners=listeners,
                                   close_pool=own_pool)
        session = cls(actor, watcher, info)
        if wait:
            info.settled.wait(session_timeout + 1.0)
            if not info.connected:
                reason = info.expired_reason or "no answer"
                session.stop()
                raise Timeout(f"session did not connect: {reason}")
        return session

    @property
    def sid(self) -> str:
        return self.info.sid

    @property
    def state(self) -> SessionState:
        return self.info.state

    @property
    def leader(self) -> str:
        return self.info.leader

    def write(self, data: Any, temporary: bool = False,
              timeout: float = api.DEFAULT_TIMEOUT) -> pykka.Future[Any]:
        """Exactly-once write; ``temporary`` data is deleted when the session ends."""
        timeout = check_timeout(timeout)
        future: pykka.Future[Any] = pykka.ThreadingFuture()
        self._tell(WriteRequest(future, data, temporary, timeout), future)
        return future

    def query(self, query: Any, watch: Any = None,
              timeout: float = api.DEFAULT_TIMEOUT) -> pykka.Future[Any]:
        """Linearizable read. ``watch`` arms a one-shot watch: a callable gets the
        ``WatchEvent``, a queue gets it put, any other value is a tag whose event goes to
        ``session.events``."""
        timeout = check_timeout(timeout)
        future: pykka.Future[Any] = pykka.ThreadingFuture()
        if watch is not None and is_tag(watch):
            watch = _TaggedQueue(self.events, watch)
        self._tell(QueryRequest(future, query, watch, timeout), future)
        return future

    def write_sync(self, data: Any, temporary: bool = False,
                   timeout: float = api.DEFAULT_TIMEOUT) -> Any:
        return self.write(data, temporary, timeout).get(timeout=timeout + 5)

    def query_sync(self, query: Any, watch: Any = None,
                   timeout: float = api.DEFAULT_TIMEOUT) -> Any:
        return self.query(query, watch, timeout).get(timeout=timeout + 5)

    def data_watch(self, query: Any, timeout: float = api.DEFAULT_TIMEOUT
                   ) -> Callable[[Callable[[Any, WatchEvent | None], Any]], Any]:
        """kazoo-style re-arming watch: ``fn(value, event)`` now (event None), then after
        every trigger, until ``fn`` returns False or the session ends.

            @session.data_watch("config")
            def on_config(value, event): ...

        Later calls run on the watcher thread (they query again there, which re-arms)."""
        check_timeout(timeout)

        def decorator(fn: Callable[[Any, WatchEvent | None], Any]) -> Any:
            stopped = False

            def arm(event: WatchEvent | None) -> None:
                nonlocal stopped
                if stopped or self.state == SessionState.EXPIRED:
                    return
                try:
                    value = self.query_sync(query, watch=arm, timeout=timeout)
                except (ZRaftError, pykka.ActorDeadError):
                    return
                if fn(value, event) is False:
                    stopped = True  # the watch armed above fires once more, unanswered

            arm(None)
            return fn

        return decorator

    def add_listener(self, fn: Callable[[SessionState], Any]) -> None:
        """``fn(state)`` on every state change, called from the watcher actor's thread."""
        self._tell(ListenerChange(fn, True), None)

    def remove_listener(self, fn: Callable[[SessionState], Any]) -> None:
        self._tell(ListenerChange(fn, False), None)

    def _tell(self, message: Any, future: pykka.Future[Any] | None) -> None:
        try:
            self.actor_ref.tell(message)
        except pykka.ActorDeadError:
            if future is not None:
                fail_future(future, SessionExpired(self.info.expired_reason or "session stopped"))

    def stop(self, timeout: float = 5.0) -> None:
        """Close the session now (``[5, sid]``: its temporary data goes at once). From a
        watch or listener callback it does not wait (the watcher cannot wait for itself)."""
        timeout = check_timeout(timeout)
        future: pykka.Future[Any] = pykka.ThreadingFuture()
        inside = in_watcher_thread()
        try:
            self.actor_ref.tell(StopRequest(future))
            if not inside:
                future.get(timeout=timeout)
        except (pykka.ActorDeadError, pykka.Timeout):
            pass
        if inside:  # the actor stops itself once the close is answered (or after 1 s)
            self.watcher_ref.stop(block=False)
            return
        self.actor_ref.stop(timeout=timeout)
        self.watcher_ref.stop(timeout=timeout)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _TaggedQueue:
    """A tag watch: its event goes to ``session.events`` with ``ref`` = the caller's tag."""

    def __init__(self, events: queue.Queue[WatchEvent], tag: Any) -> None:
        self.events = events
        self.tag = tag

    def put(self, event: WatchEvent) -> None:
        self.events.put(event._replace(ref=self.tag))
