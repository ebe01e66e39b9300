"""A session's protocol rules (zraft_lib's ``zraft_session`` process), with no thread of its
own: ``session_actor.SessionActor`` runs it as a Pykka actor (``session.Session`` wraps it),
``zraft.aio.session`` on an asyncio event loop.

Rules (SPEC 8, bugs 19 fixed):
- Connect sends ``[2, sid, timeout_ms]`` (``sid`` is a fresh random string); the session is
  usable once it is acknowledged. An "already exists" answer to a re-sent connect means our
  own first connect was applied, so it counts as connected.
- Keepalive: a ping ``[3, sid, acc_upto]`` every ``session_timeout / 2`` unless something
  else was sent in that period.
- Writes get message ids 1, 2, 3, ...; ``[4, sid, msg_id, acc_upto, temporary, data]``;
  ``acc_upto`` = lowest outstanding id - 1 (next id - 1 when none), starting at 0, so the
  cluster keeps the cached reply of every write we may still re-send: exactly once.
- Every request records the epoch it was sent in. A leader change (redirect, unreachable
  leader, ``[6, "leader", ...]`` push, end of the pending state) moves the ring, bumps the
  epoch, fires every armed watch with ``leader_changed`` (once: the cluster's own trigger for
  it is then ignored) and re-sends everything outstanding; the caller only sees latency.
  Failure replies from an older epoch are stale and ignored.
- Ring says "no leader yet": SUSPENDED, nothing is sent for the ring's election timeout, then
  ``reset``. The ring's timeouts follow the cluster's election timeout ET (zraft_lib's
  session ring: election timeout 2 ET, fail timeout 4 ET): ET is the ``election_timeout``
  given, else what the cluster's answer to CONNECT says (``{"election_timeout_ms": ...}``),
  else 0.5 s until that answer arrives. Every peer unreachable: SUSPENDED, retried with a
  pause; after ``session_timeout`` without any answer the session is EXPIRED locally (the
  cluster will have expired it too).
- ``[6, "disconnected", ...]`` or a ``session_expired`` reply: EXPIRED; every pending and
  later call fails with ``SessionExpired``.
- All state lives in the ``SessionCore``, touched by one thread at a time: replies, pushes
  and timers are handed to it through its host's ``post`` (an actor's mailbox, or the
  loop's ``call_soon``), never run inside another handler. User callbacks go to the
  ``watcher`` (``tell(Deliver(...))``: the watcher actor, or the loop), never run here.
- A caller that gives up on a write or read (``CancelRequest``) has it forgotten: it is
  never re-sent and ``acc_upto`` moves past it (a write already sent may still apply, once).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from zraft.client.calls import backoff, error_from_reply, name_of
from zraft.client.connection import PoolBase
from zraft.client.light_session import (
    DEFAULT_ELECTION_TIMEOUT,
    LightSession,
    NoLeaderYet,
)
from zraft.client.timers import Cancellable, Timers, default_scheduler
from zraft.client.watcher import Deliver, SessionState, WatchEvent
from zraft.errors import (
    AllFailed,
    SessionExpired,
    Timeout,
    ZRaftError,
)
from zraft.ids import PeerId
from zraft.transport.codec import pack

Peer = PeerId | str
_EXISTS = frozenset({"exists", "already_present", "session_exists"})
_RETRY_SAME = frozenset({"loading", "retry"})
# the peer cannot serve (backend_failed: its backend cannot run): try another one
_FAILED = frozenset({"noproc", "timeout", "local_timeout", "backend_failed"})


class Completion(Protocol):
    """A future the core completes: a pykka future, or ``zraft.aio``'s loop future."""

    def set(self, value: Any = None) -> None: ...

    def set_exception(self, exc_info: Any = None) -> None: ...


class Teller(Protocol):
    """Where user callbacks go (``tell(Deliver(target, event))``): the watcher actor's ref."""

    def tell(self, message: Any) -> None: ...


# -- messages to the session core ---------------------------------------------------------


class WriteRequest(NamedTuple):
    future: Completion
    data: Any
    temporary: bool
    timeout: float


class QueryRequest(NamedTuple):
    future: Completion
    query: Any
    watch: Any
    timeout: float


class _Reply(NamedTuple):
    kind: str  # connect | ping | write | read | close
    key: int
    epoch: int
    peer: str
    status: str
    payload: Any


class _Timer(NamedTuple):
    kind: str
    key: Any = None


class _Push(NamedTuple):
    push: list[Any]


class ListenerChange(NamedTuple):
    fn: Callable[[SessionState], Any]
    add: bool


class StopRequest(NamedTuple):
    future: Completion


class CancelRequest(NamedTuple):
    """The caller of the write or read completing ``future`` gave up on it."""

    future: Completion


@dataclass
class _Pending:
    future: Completion
    payload: Any  # write data, or the query
    deadline: Cancellable
    temporary: bool = False
    watch: Any = None
    watch_ref: int | None = None
    sent_epoch: int = -1
    attempt: Cancellable | None = None


class SessionInfo:
    """What the wrapper may read without asking the core (atomic attribute reads).
    ``settled`` is set once connected or expired: a ``threading.Event``, or anything with
    ``set()`` (``zraft.aio`` puts an ``asyncio.Event`` there)."""

    def __init__(self, sid: str, leader: str) -> None:
        self.sid = sid
        self.state: SessionState = SessionState.SUSPENDED
        self.leader = leader
        self.connected = False
        self.expired_reason: str | None = None
        self.settled: Any = threading.Event()  # connected or expired: start may return


class SessionCore:
    """The rules; a host supplies ``post`` (hand a message to ``handle`` later, from any
    thread the host allows) and ``stop_self`` (the session is over: call ``stop_core``)."""

    def __init__(
        self,
        peers: Sequence[str],
        session_timeout: float,
        pool: PoolBase,
        watcher: Teller,
        info: SessionInfo,
        fail_timeout: float | None = None,
        election_timeout: float | None = None,
        scheduler: Timers | None = None,
        listeners: Sequence[Callable[[SessionState], Any]] = (),
        close_pool: bool = False,
    ) -> None:
        self.close_pool = close_pool  # the pool is this session's own
        et = DEFAULT_ELECTION_TIMEOUT if election_timeout is None else election_timeout
        self.learn_et = election_timeout is None  # from the cluster's CONNECT answer
        self.fixed_fail_timeout = fail_timeout
        # zraft_lib's session ring: FailTimeout = 4 ET, ElectionTimeout = 2 ET
        self.ring = LightSession.new(
            peers, 4 * et if fail_timeout is None else fail_timeout, 2 * et
        )
        self.timeout = session_timeout
        self.learn_peers = len(self.ring.ring) == 1
        self.pool = pool
        self.watcher = watcher
        self.info = info
        self.sid = info.sid
        self.scheduler = scheduler or default_scheduler()
        self.epoch = 1
        self.next_msg_id = 1
        self.writes: dict[int, _Pending] = {}
        self.write_order: collections.deque[int] = collections.deque()
        self.reads: dict[int, _Pending] = {}
        self.read_ids = itertools.count(1)
        self.watch_refs = itertools.count(1)
        self.watches: dict[int, tuple[Any, WatchEvent]] = {}
        self.listeners: list[Callable[[SessionState], Any]] = list(listeners)
        self.pending: Cancellable | None = None  # no leader known: send nothing until it fires
        self.last_sent = 0.0
        self.last_contact = time.monotonic()
        self._set_ring_timeouts(self.ring)
        self._tries = 0
        self.timers: list[Cancellable] = []  # connect / close timers
        self.ping_timer: Cancellable | None = None
        self.stopping: Completion | None = None

    # -- the host's part ------------------------------------------------------------------

    def post(self, message: Any) -> None:
        """Have ``handle(message)`` run later, on the core's thread (never inside a handler)."""
        raise NotImplementedError

    def stop_self(self) -> None:
        """The session is over (closed): the host stops, calling ``stop_core``."""
        raise NotImplementedError

    def handle(self, message: Any) -> bool:
        """Run the handler of ``message``; False if it is not a session message."""
        handler = self._handlers.get(type(message))
        if handler is None:
            return False
        handler(self, message)
        return True

    # -- plumbing -------------------------------------------------------------------------

    def _set_ring_timeouts(self, ring: LightSession) -> None:
        self.ring = ring
        self.attempt_timeout = max(ring.fail_timeout, 1.0)
        self.retry_wait = backoff(0.02, ring.fail_timeout / 2)

    def _learn_election_timeout(self, payload: Any) -> None:
        """The CONNECT answer names the cluster's election timeout: the ring follows it
        (unless the caller fixed one). A value out of range is ignored."""
        ms = payload.get("election_timeout_ms") if isinstance(payload, dict) else None
        if not self.learn_et or type(ms) is not int or not 10 <= ms <= 600_000:
            return
        et = ms / 1000
        ft = 4 * et if self.fixed_fail_timeout is None else self.fixed_fail_timeout
        self._set_ring_timeouts(
            dataclasses.replace(self.ring, fail_timeout=ft, election_timeout=2 * et))

    def _tell_later(self, delay: float, message: Any) -> Cancellable:
        post = self.post
        return self.scheduler.call_later(delay, lambda: post(message))

    def _send(self, kind: str, key: int, op: str, args_fn: Callable[[str], Any]) -> None:
        peer, epoch, post = self.ring.leader, self.epoch, self.post

        def on_reply(status: str, payload: Any) -> None:
            post(_Reply(kind, key, epoch, peer, status, payload))

        self.last_sent = time.monotonic()
        self.pool.request(peer, op, args_fn(name_of(peer)), on_reply)

    def _propose(self, kind: str, key: int, command: list[Any]) -> None:
        data = pack(command)
        self._send(kind, key, "propose", lambda name: [name, data, self.sid])

    def _acc_upto(self) -> int:
        order = self.write_order  # ids in increasing order; answered ones are dropped lazily
        while order and order[0] not in self.writes:
            order.popleft()
        return order[0] - 1 if order else self.next_msg_id - 1

    def _set_state(self, state: SessionState) -> None:
        if self.info.state == state or self.info.state == SessionState.EXPIRED:
            return
        self.info.state = state
        for fn in self.listeners:
            self.watcher.tell(Deliver(fn, state))

    # -- lifecycle ------------------------------------------------------------------------

    def start_core(self) -> None:
        post = self.post
        self.pool.add_push_handler(self.sid, lambda push: post(_Push(push)))
        self.timers.append(self._tell_later(self.timeout, _Timer("connect_timeout")))
        self._connect()

    def stop_core(self) -> None:
        self.pool.remove_push_handler(self.sid)
        self._cancel_timers()
        self._fail_all(SessionExpired("session stopped"))
        self.info.settled.set()
        if self.close_pool:
            self.pool.close()

    def _cancel_timers(self) -> None:
        for timer in (*self.timers, self.ping_timer, self.pending):
            if timer is not None:
                timer.cancel()

    def _connect(self) -> None:
        self._propose("connect", 0, [2, self.sid, int(self.timeout * 1000)])

    # -- requests from the wrapper --------------------------------------------------------

    def _on_write(self, msg: WriteRequest) -> None:
        if self.info.state == SessionState.EXPIRED:
            fail_future(msg.future, SessionExpired(self.info.expired_reason or "session expired"))
            return
        msg_id = self.next_msg_id
        self.next_msg_id += 1
        deadline = self._tell_later(msg.timeout, _Timer("deadline", ("write", msg_id)))
        self.writes[msg_id] = _Pending(msg.future, msg.data, deadline, temporary=msg.temporary)
        self.write_order.append(msg_id)
        if self._can_send():
            self._send_write(msg_id)

    def _send_write(self, msg_id: int) -> None:
        p = self.writes[msg_id]
        p.sent_epoch = self.epoch
        self._arm_attempt(p, "write", msg_id)
        cmd = [4, self.sid, msg_id, self._acc_upto(), p.temporary, p.payload]
        self._propose("write", msg_id, cmd)

    def _on_query(self, msg: QueryRequest) -> None:
        if self.info.state == SessionState.EXPIRED:
            fail_future(msg.future, SessionExpired(self.info.expired_reason or "session expired"))
            return
        read_id = next(self.read_ids)
        deadline = self._tell_later(msg.timeout, _Timer("deadline", ("read", read_id)))
        p = _Pending(msg.future, msg.query, deadline, watch=msg.watch)
        if msg.watch is not None:
            p.watch_ref = next(self.watch_refs)
        self.reads[read_id] = p
        if self._can_send():
            self._send_read(read_id)

    def _send_read(self, read_id: int) -> None:
        p = self.reads[read_id]
        p.sent_epoch = self.epoch
        self._arm_attempt(p, "read", read_id)
        q, ref, sid = p.payload, p.watch_ref, self.sid
        self._send("read", read_id, "query", lambda name: [name, q, sid, ref])

    def _arm_attempt(self, p: _Pending, kind: str, key: int) -> None:
        if p.attempt is not None:
            p.attempt.cancel()
        p.attempt = self._tell_later(
            self.attempt_timeout, _Timer("attempt", (kind, key, self.epoch))
        )

    def _can_send(self) -> bool:
        return self.info.connected and self.pending is None

    def _on_cancel(self, msg: CancelRequest) -> None:
        for kind, table in (("write", self.writes), ("read", self.reads)):
            for key, p in table.items():
                if p.future is msg.future:
                    self._pop(kind, key)
                    return

    def _on_listener(self, msg: ListenerChange) -> None:
        if msg.add:
            self.listeners.append(msg.fn)
        elif msg.fn in self.listeners:
            self.listeners.remove(msg.fn)

    def _on_stop(self, msg: StopRequest) -> None:
        self.stopping = msg.future
        if self.info.state != SessionState.EXPIRED and self.info.connected:
            self._propose("close", 0, [5, self.sid])
            self.timers.append(self._tell_later(1.0, _Timer("close_timeout")))
        else:
            self._finish_stop()

    def _finish_stop(self) -> None:
        self._expire("session closed by the client")
        stopping, self.stopping = self.stopping, None
        if stopping is not None:  # once: the close reply and its timer may both come
            stopping.set(None)
            self.stop_self()

    # -- replies --------------------------------------------------------------------------

    def _on_reply(self, r: _Reply) -> None:
        if self.info.state == SessionState.EXPIRED:
            if r.kind == "close":
                self._finish_stop()
            return
        if r.status == "ok" or (r.kind == "connect" and r.status in _EXISTS):
            self.last_contact = time.monotonic()
            self._tries = 0
            self._on_ok(r)
            return
        if r.kind == "conf":
            return  # learning the peers is best effort
        if r.status == "session_expired":
            self._expire("the cluster expired the session")
            if self.stopping is not None:
                self._finish_stop()
            return
        if r.kind == "close":
            self._finish_stop()
            return
        pending = self._pending_of(r.kind, r.key)
        if r.kind in ("write", "read") and pending is None:
            return  # answered already, or timed out
        stale = r.epoch != self.epoch or (pending is not None and pending.sent_epoch != r.epoch)
        if r.status in ("not_leader", "leader_changed"):
            if not stale:
                leader = r.payload.get("leader") if isinstance(r.payload, dict) else None
                if not isinstance(leader, str) or leader == r.peer:
                    leader = None  # "ask me again" would be a busy loop: treat as unknown
                self._move(lambda s: s.change_leader(leader) if leader else s.next())
        elif r.status in _FAILED:
            if not stale:
                self._move(LightSession.fail)
        elif r.status in _RETRY_SAME:
            if not stale:
                self._tries += 1
                delay = float(self.retry_wait(_AttemptState(self._tries)))
                self._tell_later(delay, _Timer("resend", (r.kind, r.key)))
        elif pending is not None:
            self._pop(r.kind, r.key)
            fail_future(pending.future, error_from_reply(r.status, r.payload))

    def _on_ok(self, r: _Reply) -> None:
        if r.kind == "connect":
            if not self.info.connected:
                if r.status == "ok":
                    self._learn_election_timeout(r.payload)
                self.info.connected = True
                self.epoch += 1
                self.info.settled.set()
                self._set_state(SessionState.CONNECTED)
                self._resend_all()
                self.ping_timer = self._tell_later(self.timeout / 2, _Timer("ping"))
                if self.learn_peers:  # given one peer: learn the others
                    self._send("conf", 0, "get_conf", lambda name: [name])
            return
        if r.kind == "conf":
            index, peers = r.payload
            if index and peers:
                self.ring = LightSession.new(peers, self.ring.fail_timeout,
                                             self.ring.election_timeout, leader=self.ring.leader)
            return
        if r.kind == "close":
            self._finish_stop()
            return
        if r.kind == "ping":
            if r.epoch == self.epoch:
                self._set_state(SessionState.CONNECTED)
            return
        if r.epoch == self.epoch:
            self._set_state(SessionState.CONNECTED)
        pending = self._pending_of(r.kind, r.key)
        if pending is None:
            return
        if pending.watch is not None:
            if r.epoch != pending.sent_epoch or r.epoch != self.epoch:
                return  # armed at an old leader: wait for the re-sent read's answer
            assert pending.watch_ref is not None
            tag = pending.watch if is_tag(pending.watch) else pending.watch_ref
            self.watches[pending.watch_ref] = (
                pending.watch, WatchEvent(tag, "", pending.payload)
            )
        self._pop(r.kind, r.key)
        pending.future.set(r.payload)

    def _pending_of(self, kind: str, key: int) -> _Pending | None:
        table = self.writes if kind == "write" else self.reads if kind == "read" else None
        return None if table is None else table.get(key)

    def _pop(self, kind: str, key: int) -> None:
        table = self.writes if kind == "write" else self.reads
        p = table.pop(key, None)
        if p is not None:
            p.deadline.cancel()
            if p.attempt is not None:
                p.attempt.cancel()

    # -- leader changes -------------------------------------------------------------------

    def _move(self, step: Callable[[LightSession], LightSession]) -> None:
        try:
            self.ring = step(self.ring)
        except NoLeaderYet:
            self._enter_pending(self.ring.election_timeout, "no leader yet")
            return
        except AllFailed:
            if time.monotonic() - self.last_contact > self.timeout:
                self._expire("no peer answered for longer than the session timeout")
                return
            self._enter_pending(min(self.ring.fail_timeout / 2, 0.5), "every peer failed")
            return
        self._install_leader()

    def _enter_pending(self, delay: float, why: str) -> None:
        self._set_state(SessionState.SUSPENDED)
        if self.pending is None:
            self.pending = self._tell_later(delay, _Timer("pending_end"))

    def _install_leader(self) -> None:
        self.info.leader = self.ring.leader
        self.epoch += 1
        self._fire_watches("leader_changed")
        self._set_state(SessionState.SUSPENDED)
        if not self.info.connected:
            self._connect()
            return
        self._resend_all()
        self._propose("ping", 0, [3, self.sid, self._acc_upto()])  # confirms the new leader

    def _resend_all(self) -> None:
        for msg_id in sorted(self.writes):
            self._send_write(msg_id)
        for read_id in sorted(self.reads):
            self._send_read(read_id)

    def _fire_watches(self, reason: str) -> None:
        watches, self.watches = self.watches, {}
        for target, event in watches.values():
            self.watcher.tell(Deliver(target, event._replace(reason=reason)))

    # -- timers and pushes ----------------------------------------------------------------

    def _on_timer(self, t: _Timer) -> None:
        if self.info.state == SessionState.EXPIRED:
            if t.kind == "close_timeout":
                self._finish_stop()
            return
        if t.kind == "deadline":
            kind, key = t.key
            pending = self._pending_of(kind, key)
            if pending is not None:
                self._pop(kind, key)
                fail_future(pending.future, Timeout(f"session {kind} got no result in time"))
        elif t.kind == "attempt":
            kind, key, epoch = t.key
            pending = self._pending_of(kind, key)
            if pending is not None and epoch == self.epoch == pending.sent_epoch:
                self._move(LightSession.fail)
        elif t.kind == "resend":
            kind, key = t.key
            if kind == "connect" and not self.info.connected and self.pending is None:
                self._connect()
            elif self._pending_of(kind, key) is not None and self._can_send():
                (self._send_write if kind == "write" else self._send_read)(key)
        elif t.kind == "ping":
            self._ping_tick()
        elif t.kind == "pending_end":
            self.pending = None
            self.ring = self.ring.reset()
            self._install_leader()
        elif t.kind == "connect_timeout":
            if not self.info.connected:
                self._expire("could not connect within the session timeout")
        elif t.kind == "close_timeout":
            self._finish_stop()

    def _ping_tick(self) -> None:
        period = self.timeout / 2
        idle = time.monotonic() - self.last_sent
        if idle >= period * 0.98 and self._can_send():
            self._propose("ping", 0, [3, self.sid, self._acc_upto()])
            idle = 0.0
        self.ping_timer = self._tell_later(max(0.01, period - idle), _Timer("ping"))

    def _on_push(self, msg: _Push) -> None:
        push = msg.push
        kind = push[0]
        if kind == "watch" and len(push) >= 5:
            entry = self.watches.pop(push[3], None) if isinstance(push[3], int) else None
            if entry is not None:
                target, event = entry
                self.watcher.tell(Deliver(target, event._replace(reason=str(push[4]))))
        elif kind == "disconnected":
            self._expire("the cluster expired the session")
        elif (kind == "leader" and len(push) >= 4 and isinstance(push[3], str)
              and push[3] != self.ring.leader and self.info.state != SessionState.EXPIRED):
            self.ring = self.ring.set_leader(push[3])
            self._install_leader()

    def _expire(self, reason: str) -> None:
        if self.info.state == SessionState.EXPIRED:
            return
        self.info.expired_reason = reason
        self._set_state(SessionState.EXPIRED)
        self.info.settled.set()
        self.watches.clear()
        self._cancel_timers()
        self._fail_all(SessionExpired(reason))
        self.pool.remove_push_handler(self.sid)

    def _fail_all(self, exc: ZRaftError) -> None:
        for table in (self.writes, self.reads):
            for p in table.values():
                p.deadline.cancel()
                if p.attempt is not None:
                    p.attempt.cancel()
                fail_future(p.future, exc)
            table.clear()

    _handlers: dict[type, Callable[[SessionCore, Any], Any]] = {
        WriteRequest: _on_write,
        QueryRequest: _on_query,
        _Reply: _on_reply,
        _Timer: _on_timer,
        _Push: _on_push,
        ListenerChange: _on_listener,
        StopRequest: _on_stop,
        CancelRequest: _on_cancel,
    }


def fail_future(future: Completion, exc: BaseException) -> None:
    with contextlib.suppress(Exception):  # already completed
        future.set_exception((type(exc), exc, None))


def is_tag(watch: Any) -> bool:
    return not callable(watch) and not hasattr(watch, "put")


class _AttemptState:
    """What tenacity's wait strategies read."""

    def __init__(self, n: int) -> None:
        self.attempt_number = n
