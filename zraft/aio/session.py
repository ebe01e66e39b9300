"""asyncio sessions: exactly-once writes, temporary data, watches as async iterators.

    async with zraft.aio.Session.start(peers, 10.0, cookie_file=path) as s:
        await s.write(["lock", s.sid], temporary=True)   # deleted when the session ends
        async for value, event in s.watch("config"):      # now, then after every change
            ...
        async for state in s.states():                     # CONNECTED / SUSPENDED / EXPIRED
            ...

Rules: a session is the blocking client's ``SessionCore`` (every protocol rule: connect,
pings, message ids and ``acc_upto``, re-sends on a leader change, the suspended wait that
follows the cluster's election timeout, expiry) run on the event loop: replies, pushes and
timers reach it through ``loop.call_soon``, so it never runs inside another handler, and
no thread is started. User callbacks (watch targets, listeners) run on the loop, in order,
after the core's step; one that returns an awaitable is run as a task; one that raises is
logged. Cancelling a ``write`` or ``query`` forgets it (never re-sent, the session and the
other calls go on); a cancelled write that was already sent may still apply, at most once.
Timeouts are checked like the blocking Session's (``ValueError`` naming the argument).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from typing import Any, NamedTuple

from zraft.aio import api
from zraft.aio.calls import new_future
from zraft.aio.connection import ConnectionPool
from zraft.client.api import DEFAULT_TIMEOUT
from zraft.client.checks import check_optional_timeout, check_timeout
from zraft.client.session_core import (
    CancelRequest,
    ListenerChange,
    QueryRequest,
    SessionCore,
    SessionInfo,
    StopRequest,
    WriteRequest,
)
from zraft.client.watcher import Deliver, SessionState, WatchEvent
from zraft.errors import NoPeers, SessionExpired, Timeout
from zraft.ids import PeerId, peer_str

log = logging.getLogger("zraft.aio.session")

Peer = PeerId | str
Listener = Callable[[SessionState], Any]


class WatchUpdate(NamedTuple):
    """One step of ``Session.watch``: the value read (which re-armed the watch) and the
    event that made us read it (None for the first read)."""

    value: Any
    event: WatchEvent | None


class _LoopWatcher:
    """The watcher of a session on the loop: delivers in order, after the core's step."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._tasks: set[asyncio.Task[Any]] = set()

    def tell(self, message: Any) -> None:
        if isinstance(message, Deliver):
            self._loop.call_soon(self._deliver, message.target, message.event)

    def _deliver(self, target: Callable[[Any], Any], event: Any) -> None:
        try:
            result = target(event)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._task_done)
        except Exception:
            log.exception("watch/listener callback failed")

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("watch/listener coroutine failed", exc_info=task.exception())


class _LoopSessionCore(SessionCore):
    """``SessionCore`` hosted by the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, scheduler=loop, **kwargs)
        self._loop = loop
        self.alive = True

    def post(self, message: Any) -> None:
        if self.alive:
            self._loop.call_soon(self._receive, message)

    def _receive(self, message: Any) -> None:
        if self.alive:
            self.run(message)

    def run(self, message: Any) -> None:
        """Handle ``message`` now (on the loop); a handler that raises ends the session."""
        try:
            self.handle(message)
        except Exception as exc:  # a bug: the session ends, the loop and the app go on
            log.exception("session %s failed", self.sid)
            self._expire(f"the session failed: {type(exc).__name__}")
            self.stop_self()

    def stop_self(self) -> None:
        if self.alive:
            self.alive = False
            self.stop_core()


class _FutureTarget:
    """A watch target that completes an asyncio future with the event."""

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future

    def __call__(self, event: WatchEvent) -> None:
        if not self.future.done():
            self.future.set_result(event)


class _TaggedQueue:
    """A tag watch: its event goes to ``session.events`` with ``ref`` = the caller's tag."""

    def __init__(self, events: asyncio.Queue[WatchEvent], tag: Any) -> None:
        self.events = events
        self.tag = tag

    def __call__(self, event: WatchEvent) -> None:
        self.events.put_nowait(event._replace(ref=self.tag))


def watch_target(watch: Any, events: asyncio.Queue[WatchEvent]) -> Callable[[Any], Any] | None:
    """A ``watch=`` argument as the callable the watcher calls with the event (so the core
    always names the event by the session's watch number, except for tags)."""
    if watch is None or callable(watch):
        return watch
    if isinstance(watch, asyncio.Future):
        return _FutureTarget(watch)
    for method in ("put_nowait", "put"):
        if callable(getattr(watch, method, None)):
            return getattr(watch, method)  # type: ignore[no-any-return]
    return _TaggedQueue(events, watch)


_END = object()  # wakes watch and state iterators when the session ends


class Session:
    """A started session on the running event loop (see ``Session.start``)."""

    def __init__(self, core: _LoopSessionCore, info: SessionInfo, pool: ConnectionPool,
                 own_pool: bool) -> None:
        self._core = core
        self.info = info
        self.pool = pool
        self._own_pool = own_pool
        self.events: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self._state_queues: list[asyncio.Queue[Any]] = []
        self._watches: weakref.WeakSet[DataWatch] = weakref.WeakSet()

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
        listeners: Sequence[Listener] = (),
        wait: bool = True,
    ) -> _Starting:
        """Start a session: ``s = await Session.start(...)`` or ``async with
        Session.start(...) as s``. With ``wait``, until the cluster acknowledged it
        (``Timeout`` if not within ``session_timeout``). ``listeners`` are added before
        connecting, so they see the first CONNECTED. Arguments are checked at once."""
        session_timeout = check_timeout(session_timeout, "session_timeout")
        fail_timeout = check_optional_timeout(fail_timeout, "fail_timeout")
        election_timeout = check_optional_timeout(election_timeout, "election_timeout")
        given = ([peer_or_peers] if isinstance(peer_or_peers, (str, PeerId))
                 else list(peer_or_peers))
        peers = [peer_str(p) for p in given]
        if not peers:
            raise NoPeers("a session needs at least one peer")

        async def open_session() -> Session:
            loop = asyncio.get_running_loop()
            owned_pool, own = api.pool_for(pool, cookie, cookie_file)
            info = SessionInfo(f"s-{uuid.uuid4().hex}", peers[0])
            info.settled = asyncio.Event()
            core = _LoopSessionCore(loop, peers, session_timeout, owned_pool,
                                    _LoopWatcher(loop), info, fail_timeout, election_timeout,
                                    listeners=listeners, close_pool=own)
            session = cls(core, info, owned_pool, own)
            core.listeners.insert(0, session._on_state)
            core.start_core()
            if wait:
                await session._wait_connected(session_timeout)
            return session

        return _Starting(open_session)

    async def _wait_connected(self, session_timeout: float) -> None:
        try:
            async with asyncio.timeout(session_timeout + 1.0):
                await self.info.settled.wait()
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            self._core.stop_self()  # ends here; the cluster expires it after its timeout
            raise
        if not self.info.connected:
            reason = self.info.expired_reason or "no answer"
            await self.close()
            raise Timeout(f"session did not connect: {reason}")

    @property
    def sid(self) -> str:
        return self.info.sid

    @property
    def state(self) -> SessionState:
        return self.info.state

    @property
    def leader(self) -> str:
        return self.info.leader

    # -- calls ----------------------------------------------------------------------------

    async def _call(self, make: Callable[[Any], Any]) -> Any:
        if not self._core.alive:
            raise SessionExpired(self.info.expired_reason or "session stopped")
        future, completion = new_future()
        self._core.run(make(completion))
        try:
            return await future
        except asyncio.CancelledError:
            if self._core.alive:
                self._core.run(CancelRequest(completion))
            raise

    async def write(self, data: Any, temporary: bool = False,
                    timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Exactly-once write; ``temporary`` data is deleted when the session ends."""
        timeout = check_timeout(timeout)
        return await self._call(lambda c: WriteRequest(c, data, bool(temporary), timeout))

    async def query(self, query: Any, watch: Any = None,
                    timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Linearizable read. ``watch`` arms a one-shot watch: a callable gets the
        ``WatchEvent`` (on the loop; a coroutine function's result is run as a task), an
        ``asyncio.Queue`` (or anything with ``put_nowait``/``put``) gets it put, an
        ``asyncio.Future`` gets it as its result, any other value is a tag whose event goes
        to ``session.events`` with ``ref`` = the tag."""
        timeout = check_timeout(timeout)
        target = watch_target(watch, self.events)
        return await self._call(lambda c: QueryRequest(c, query, target, timeout))

    def watch(self, query: Any, timeout: float = DEFAULT_TIMEOUT) -> DataWatch:
        """An async iterator of ``WatchUpdate(value, event)``: the value of ``query`` now
        (event None), then again after every change (``data_changed``) or leader change
        (``leader_changed``); it re-arms itself. It ends with ``SessionExpired`` when the
        session ends. ``timeout`` is each read's; a read that times out is retried."""
        check_timeout(timeout)
        watch = DataWatch(self, query, timeout)
        self._watches.add(watch)
        return watch

    # -- listener states ------------------------------------------------------------------

    def add_listener(self, fn: Listener) -> None:
        """``fn(state)`` on every state change, on the loop (an awaitable result is run
        as a task)."""
        if self._core.alive:
            self._core.run(ListenerChange(fn, True))

    def remove_listener(self, fn: Listener) -> None:
        if self._core.alive:
            self._core.run(ListenerChange(fn, False))

    async def states(self) -> AsyncIterator[SessionState]:
        """The current state, then every change; ends after EXPIRED."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._state_queues.append(queue)
        try:
            state = self.state
            while True:
                yield state
                if state == SessionState.EXPIRED:
                    return
                last = state
                while state == last:  # a change already seen in ``self.state`` (the
                    state = await queue.get()  # core's) reaches the listeners after it
        finally:
            self._state_queues.remove(queue)

    def _on_state(self, state: SessionState) -> None:
        for queue in self._state_queues:
            queue.put_nowait(state)
        if state == SessionState.EXPIRED:
            for watch in list(self._watches):
                watch._events.put_nowait(_END)

    # -- the end --------------------------------------------------------------------------

    async def close(self, timeout: float = 5.0) -> None:
        """Close the session now (``[5, sid]``: its temporary data goes at once), waiting
        at most ``timeout`` for the cluster's answer; it ends locally in any case."""
        timeout = check_timeout(timeout)
        try:
            if self._core.alive:
                future, completion = new_future()
                self._core.run(StopRequest(completion))
                try:
                    async with asyncio.timeout(timeout):
                        await future
                except TimeoutError:
                    pass
        finally:
            self._core.stop_self()
        if self._own_pool:
            await self.pool.wait_closed()

    stop = close  # the blocking Session's name

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class DataWatch:
    """``async for value, event in session.watch(query)`` (see ``Session.watch``)."""

    def __init__(self, session: Session, query: Any, timeout: float) -> None:
        self._session = session
        self.query = query
        self._timeout = timeout
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._started = False
        self._closed = False

    def __aiter__(self) -> DataWatch:
        return self

    async def __anext__(self) -> WatchUpdate:
        if self._closed:
            raise StopAsyncIteration
        event = None
        if self._started:
            event = await self._events.get()
            if event is _END:
                self._closed = True
                raise SessionExpired(self._session.info.expired_reason or "session ended")
        self._started = True
        try:
            return WatchUpdate(await self._read(), event)
        except SessionExpired:
            self._closed = True
            raise

    async def _read(self) -> Any:
        while True:
            try:
                return await self._session.query(self.query, watch=self._events,
                                                 timeout=self._timeout)
            except Timeout:
                if self._session.state == SessionState.EXPIRED:
                    raise SessionExpired(self._session.info.expired_reason
                                         or "session ended") from None

    async def aclose(self) -> None:
        """Stop watching (an armed watch may still fire once, unseen)."""
        self._closed = True
        self._session._watches.discard(self)


class _Starting:
    """``Session.start``'s result: await it, or use it as an async context manager."""

    def __init__(self, open_session: Callable[[], Awaitable[Session]]) -> None:
        self._open = open_session
        self._session: Session | None = None

    def __await__(self) -> Generator[Any, None, Session]:
        return self._start().__await__()

    async def _start(self) -> Session:
        if self._session is None:
            self._session = await self._open()
        return self._session

    async def __aenter__(self) -> Session:
        return await self._start()

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
