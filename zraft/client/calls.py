"""Retrying calls: one request that follows redirects and retries until a fixed deadline.

Rules (SPEC 7.3/7.4 with bug 20 fixed):
- The deadline is fixed when the call starts; a redirect, a retry or a new leader NEVER
  extends it. When it passes, the call fails with ``Timeout`` (never ``noproc``).
- A call is a callback-driven state machine: replies arrive on a connection's reader thread,
  delays run on the shared timer thread, and nobody blocks, so an actor can start thousands
  of calls and return their futures at once. ``run()`` is the blocking form for scripts.
- Waits between attempts come from tenacity's ``wait_exponential_jitter`` (capped by the
  time left); ``loading``/``retry``/"no leader yet" always wait, so there is no busy loop. A
  redirect to a named leader is followed at once, but consecutive redirects back off too (a
  ping-pong between two confused peers must not spin).
- ``PeerCall`` targets one peer id and follows its redirects (zraft_lib's PeerID target).
  ``RingCall`` targets a light session shared through a ``RingCell`` (zraft_lib's session
  object target): unreachable -> ``fail``, not-leader-unknown -> ``next``, redirect ->
  ``change_leader``; ``AllFailed`` from the ring ends the call.
- Plain writes are NOT deduplicated: a write retried after a timeout or a leader change may
  be applied twice (zraft_lib's warning). Sessions are the exactly-once path.
- The driver needs only a pool (``request`` with a reply callback), a scheduler
  (``call_later`` returning something with ``cancel``) and a future (``set`` /
  ``set_exception``): ``zraft.aio`` runs these same calls on an asyncio loop (the loop is the
  scheduler, replies come from its reader tasks). ``cancel()`` is the caller giving up: no
  more retries, the request in flight is forgotten (a write may still apply).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pykka
import tenacity

from zraft.client.connection import PoolBase
from zraft.client.light_session import LightSession, NoLeaderYet, RingCell
from zraft.client.timers import Cancellable, Timers, default_scheduler
from zraft.errors import (
    AllFailed,
    BackendFailed,
    StorageFailed,
    Timeout,
    Unreachable,
    ZRaftError,
    error_from_code,
)
from zraft.ids import PeerId, peer_str

ArgsFn = Callable[[str], Any]  # peer name -> request args
OkFn = Callable[[str, Any], Any]  # (peer id, payload) -> call result

_RETRY_SAME = frozenset({"loading", "retry"})
# the peer itself is down (cannot write its log, or its backend cannot run): another peer,
# the leader it last knew say, may serve the request
_PEER_DOWN = frozenset({"storage_failed", "backend_failed"})
_UNREACHABLE = frozenset({"noproc", "unreachable", "local_timeout"})
_REDIRECTS_BEFORE_BACKOFF = 3


class RetryLater(Exception):
    """Raised by an ``OkFn`` when the answer means "not ready yet, ask again"."""


def backoff(initial: float = 0.01, maximum: float = 0.5) -> tenacity.wait.wait_base:
    return tenacity.wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)


_DEFAULT_WAIT = backoff()  # stateless (it reads the attempt number): shared by every call


class _Tries:
    """The tenacity retry state a wait strategy reads (attempt_number), made on the first
    retry only: most calls never retry, and every call is on the per-request path."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state: tenacity.RetryCallState | None = None

    def next_wait(self, wait: tenacity.wait.wait_base) -> float:
        if self.state is None:
            self.state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        delay = float(wait(self.state))
        self.state.attempt_number += 1
        return delay

    def reset(self) -> None:
        if self.state is not None:
            self.state.attempt_number = 1


def name_of(peer: str) -> str:
    return peer.partition("@")[0]


class RetryingCall:
    """Base: send ``op`` to a peer, let ``decide`` pick the next step, finish once."""

    def __init__(
        self,
        pool: PoolBase,
        op: str,
        args_fn: ArgsFn,
        timeout: float,
        ok_fn: OkFn | None = None,
        scheduler: Timers | None = None,
        attempt_timeout: float | None = None,
        wait: tenacity.wait.wait_base | None = None,
        future: pykka.Future[Any] | None = None,
    ) -> None:
        self.pool = pool
        self.op = op
        self.args_fn = args_fn
        self.ok_fn = ok_fn or (lambda _peer, payload: payload)
        self.scheduler = scheduler or default_scheduler()
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.attempt_timeout = attempt_timeout
        self.wait = wait or _DEFAULT_WAIT
        self.future: pykka.Future[Any] = (
            future if future is not None else pykka.ThreadingFuture()
        )
        self.attempts = 0
        self.last_error: str = ""
        self._tries = _Tries()
        self._lock = threading.Lock()
        self._done = False
        self._current_attempt = 0
        self._timer: Cancellable | None = None
        self._cancel: Callable[[], None] | None = None

    # -- driving ------------------------------------------------------------------------

    def start(self) -> pykka.Future[Any]:
        self._send(self.first_peer())
        return self.future

    def run(self) -> Any:
        """Blocking: start and wait (bounded by the deadline plus a small grace)."""
        self.start()
        try:
            return self.future.get(timeout=max(0.0, self.deadline - time.monotonic()) + 2.0)
        except pykka.Timeout:
            self._finish_error(Timeout(f"{self.op}: no answer within {self.timeout}s"))
            return self.future.get(timeout=0)

    def cancel(self) -> None:
        """The caller gave up: finish without completing the future, stop retrying and
        forget the request in flight (its reply is dropped; a write may still apply)."""
        with self._lock:
            if self._done:
                return
            self._done = True
        if self._timer is not None:
            self._timer.cancel()
        if self._cancel is not None:
            self._cancel()

    def _send(self, peer: str) -> None:
        with self._lock:
            if self._done:
                return
            self.attempts += 1
            attempt = self.attempts
            self._current_attempt = attempt
        left = self.deadline - time.monotonic()
        if left <= 0:
            self._finish_timeout()
            return
        limit = left if self.attempt_timeout is None else min(left, self.attempt_timeout)
        self._timer = self.scheduler.call_later(
            limit, lambda: self._on_reply(attempt, peer, "local_timeout", {"message": "no reply"})
        )
        try:
            args = self.args_fn(name_of(peer))
        except Exception as exc:  # a bad argument is the caller's error, not a retry
            self._finish_error(exc)
            return
        self._cancel = self.pool.request(
            peer, self.op, args,
            lambda status, payload: self._on_reply(attempt, peer, status, payload),
        )

    def _on_reply(self, attempt: int, peer: str, status: str, payload: Any) -> None:
        with self._lock:
            if self._done or attempt != self._current_attempt:
                return
            self._current_attempt = -1  # later callbacks for this attempt are stale
        if self._timer is not None:
            self._timer.cancel()
        if status == "local_timeout" and self._cancel is not None:
            self._cancel()
        if status != "ok" and not (status == "local_timeout" and self.last_error):
            # (an attempt cut by the deadline says less than the failure before it, e.g. a
            # node refusing a plaintext client: keep that one)
            message = payload.get("message") if isinstance(payload, dict) else payload
            self.last_error = f"{status} from {peer}: {message}"
        try:
            step = self.decide(peer, status, payload)
        except RetryLater:
            step = ("retry", peer, self._tries.next_wait(self.wait))
        except Exception as exc:
            self._finish_error(exc)
            return
        if step[0] == "done":
            self._finish(step[1])
            return
        _, next_peer, delay = step
        left = self.deadline - time.monotonic()
        if left <= 0:
            self._finish_timeout()
            return
        delay = min(delay, left)
        if delay <= 0:
            self._send(next_peer)
        else:
            self.scheduler.call_later(delay, lambda: self._send(next_peer))

    def _finish(self, value: Any) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self.future.set(value)

    def _finish_error(self, exc: BaseException) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        if self._timer is not None:
            self._timer.cancel()
        self.future.set_exception((type(exc), exc, exc.__traceback__))

    def _finish_timeout(self) -> None:
        detail = f"; last: {self.last_error}" if self.last_error else ""
        self._finish_error(
            Timeout(f"{self.op}: no result within {self.timeout}s ({self.attempts} tries{detail})")
        )

    # -- policy -------------------------------------------------------------------------

    def first_peer(self) -> str:
        raise NotImplementedError

    def decide(self, peer: str, status: str, payload: Any) -> tuple[Any, ...]:
        """Return ``("done", value)`` or ``("retry", peer, delay)``; raise to fail."""
        raise NotImplementedError

    def _ok(self, peer: str, payload: Any) -> Any:
        return self.ok_fn(peer, payload)


def error_from_reply(status: str, payload: Any) -> ZRaftError:
    """The exception for an error reply. A status like ``"backend_error: KeyError"`` is the
    code ``backend_error`` with the detail appended to the message."""
    details = dict(payload) if isinstance(payload, dict) else {"payload": payload}
    message = str(details.pop("message", "") or "")
    code, _, detail = status.partition(":")
    if detail.strip():
        message = f"{message} ({detail.strip()})" if message else detail.strip()
    return error_from_code(code.strip(), message, **details)


def _leader_hint(payload: Any) -> str | None:
    leader = payload.get("leader") if isinstance(payload, dict) else None
    return leader if isinstance(leader, str) and "@" in leader else None


class PeerCall(RetryingCall):
    """Target one peer id; follow its redirects; fall back to the previous peer if a
    redirect target is unreachable."""

    def __init__(self, pool: PoolBase, peer: PeerId | str, op: str, args_fn: ArgsFn,
                 timeout: float, **kw: Any) -> None:
        super().__init__(pool, op, args_fn, timeout, **kw)
        self.origin = peer_str(peer)
        self.fallback: str | None = None
        self._redirects = 0  # (PeerCall) followed redirects

    def first_peer(self) -> str:
        return self.origin

    def decide(self, peer: str, status: str, payload: Any) -> tuple[Any, ...]:
        if status == "ok":
            self._tries.reset()
            return ("done", self._ok(peer, payload))
        if status == "not_leader":
            leader = _leader_hint(payload)
            if leader is not None and leader != peer:
                self.fallback = peer
                self._redirects += 1
                if self._redirects <= _REDIRECTS_BEFORE_BACKOFF:
                    return ("retry", leader, 0.0)
                return ("retry", leader, self._tries.next_wait(self.wait))
            return ("retry", peer, self._tries.next_wait(self.wait))
        if status in _RETRY_SAME or status == "leader_changed":
            # leader_changed: our entry was replaced by a new leader's; it will redirect us
            return ("retry", peer, self._tries.next_wait(self.wait))
        if status in _PEER_DOWN:
            # that peer is down: follow the leader it last knew, if any
            leader = _leader_hint(payload)
            if leader is not None and leader != peer and self._redirects < 2:
                self._redirects += 1
                return ("retry", leader, 0.0)
            raise error_from_reply(status, payload)
        if status in _UNREACHABLE:
            if self.fallback is not None and self.fallback != peer:
                fallback, self.fallback = self.fallback, None
                return ("retry", fallback, self._tries.next_wait(self.wait))
            if status == "local_timeout":
                return ("retry", peer, 0.0)  # only reached when the deadline passed
            raise Unreachable(self.last_error, peer=peer)
        raise error_from_reply(status, payload)


class RingCall(RetryingCall):
    """Target a light session held in a ``RingCell`` (shared or private to the call)."""

    def __init__(self, pool: PoolBase, cell: RingCell, op: str, args_fn: ArgsFn,
                 timeout: float, **kw: Any) -> None:
        super().__init__(pool, op, args_fn, timeout, **kw)
        self.cell = cell
        self._redirects = 0
        # peer -> (status, why it is down: cannot write its log, backend cannot run)
        self._down: dict[str, tuple[str, str]] = {}

    def first_peer(self) -> str:
        return self.cell.session.leader

    def _move(self, peer: str, step: Callable[[LightSession], LightSession]) -> tuple[Any, ...]:
        try:
            head = self.cell.update(peer, step)
        except NoLeaderYet:
            self._redirects = 0
            return ("retry", self.cell.session.leader,
                    max(self._tries.next_wait(self.wait), self.cell.session.election_timeout / 4))
        except AllFailed as exc:
            if self._down:  # say why the peers cannot serve, not "all failed"
                raise self._down_error() from exc
            raise AllFailed(f"every peer failed; last: {self.last_error}") from exc
        return ("retry", head, 0.0)

    def decide(self, peer: str, status: str, payload: Any) -> tuple[Any, ...]:
        if status == "ok":
            self._tries.reset()
            return ("done", self._ok(peer, payload))
        if status == "leader_changed":  # our entry was replaced: the peer no longer leads
            return self._move(peer, LightSession.next)
        if status == "not_leader":
            leader = _leader_hint(payload)
            if leader is None or leader == peer:
                return self._move(peer, LightSession.next)
            self._redirects += 1
            step = self._move(peer, lambda s: s.change_leader(leader))
            if step[2] == 0.0 and self._redirects > _REDIRECTS_BEFORE_BACKOFF:
                return ("retry", step[1], self._tries.next_wait(self.wait))
            return step
        if status in _RETRY_SAME:
            return ("retry", peer, self._tries.next_wait(self.wait))
        if status in _UNREACHABLE or status == "timeout":
            return self._move(peer, LightSession.fail)
        if status in _PEER_DOWN:
            message = payload.get("message") if isinstance(payload, dict) else payload
            self._down[peer] = (status, str(message))
            leader = _leader_hint(payload)
            if leader is not None and leader != peer and leader not in self._down:
                return self._move(peer, lambda s: s.change_leader(leader))
            return self._move(peer, LightSession.fail)
        raise error_from_reply(status, payload)

    def _down_error(self) -> ZRaftError:
        """``StorageFailed`` if some peer cannot write its log (the cluster cannot write),
        else ``BackendFailed``; the message lists every down peer's reason."""
        statuses = {status for status, _ in self._down.values()}
        if "storage_failed" in statuses:
            return StorageFailed(
                "no peer could take the request; cannot write their logs: "
                + "; ".join(f"{p}: {why}" for p, (st, why) in self._down.items()
                            if st == "storage_failed"),
                peers={p: why for p, (_st, why) in self._down.items()})
        return BackendFailed(
            "no peer could take the request: "
            + "; ".join(why for _st, why in self._down.values()),
            peers={p: why for p, (_st, why) in self._down.items()})
