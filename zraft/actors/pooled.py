"""PooledActor: a Pykka actor run by a shared pool of worker threads (a dispatcher).

Why: a ``ThreadingActor`` is a thread; a node with thousands of Raft groups (three actors
each) would be thousands of threads. Here many actors share a few workers, the way Akka
dispatchers and Erlang schedulers do.

Rules:
1. Per-actor order, one at a time: an actor is "claimed" (a non-blocking lock) by whoever
   makes it runnable and released by the worker that ran it, so at most one worker runs an
   actor, and its messages are handled in the order they were put.
2. Fairness: a worker handles at most ``budget`` messages of an actor per turn, then puts
   it at the back of the run queue, so a busy actor never starves quiet ones.
3. Pykka's semantics are kept: ``on_start`` runs on a worker before the first message,
   ``tell``/``ask``/proxies/futures behave as for a ``ThreadingActor``, an exception in a
   told message ends the actor (``on_failure``), in an asked one goes back to the asker,
   a BaseException stops every actor (``ActorRegistry.stop_all``), and what is left in a
   stopped actor's inbox is answered ``ActorDeadError`` (also what arrives later, which a
   ``ThreadingActor`` would leave unanswered). The supervisor works unchanged.
4. Blocking: a worker that waits on a pooled actor's future (``ask(...).get()``,
   ``ref.stop()``) would hold a worker the awaited actor may need; with every worker so
   blocked the pool would deadlock. Such a wait is a *managed block*: the dispatcher starts
   a spare worker while it lasts (at most ``max_spare``), and spares leave once idle.
   Other long waits in a pooled actor (fsync, a slow backend) should run on a pool of their
   own (the node gives log writers and state machines the ``io`` dispatcher) or inside
   ``blocking()``, which compensates in the same way.
5. Workers are daemon threads that never die of an actor's exception; a dispatcher with no
   work sleeps in one ``SimpleQueue.get`` per worker (no polling but a 5 s idle check).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pykka
from pykka import ActorRegistry
from pykka._threading import ThreadingFuture

log = logging.getLogger(__name__)

_IDLE_S = 5.0  # a surplus worker (a spare no longer needed) leaves after this long idle
_worker = threading.local()  # .dispatcher on pool workers; .blocked: managed-block depth


class Dispatcher:
    """A fixed pool of ``size`` workers running runnable actors from one FIFO run queue,
    plus up to ``max_spare`` spare workers while workers wait in managed blocks."""

    def __init__(self, name: str, size: int = 4, budget: int = 64,
                 max_spare: int = 16) -> None:
        if size < 1 or budget < 1 or max_spare < 0:
            raise ValueError("dispatcher: size and budget must be >= 1, max_spare >= 0")
        self.name = name
        self.size = size
        self.budget = budget
        self.max_spare = max_spare
        self._runq: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._live = 0  # worker threads alive
        self._blocked = 0  # of which waiting in a managed block
        self._seq = 0
        self._closed = False
        self.peak_threads = 0
        self.spares_started = 0
        with self._lock:
            for _ in range(size):
                self._spawn_locked()

    # ---------------------------------------------------------------- workers

    def _spawn_locked(self) -> None:
        self._live += 1
        self._seq += 1
        self.peak_threads = max(self.peak_threads, self._live)
        threading.Thread(target=self._work, name=f"zraft-pool-{self.name}-{self._seq}",
                         daemon=True).start()

    def _work(self) -> None:
        _worker.dispatcher = self
        _worker.blocked = 0
        get = self._runq.get
        while True:
            try:
                run = get(timeout=_IDLE_S)
            except queue.Empty:  # idle: a surplus worker leaves
                with self._lock:
                    if self._live - self._blocked > self.size or self._closed:
                        self._live -= 1
                        return
                continue
            if run is None:  # close()
                with self._lock:
                    self._live -= 1
                return
            try:
                run()
            except BaseException:  # a bug in the turn itself: never lose a worker to it
                log.exception("dispatcher %s: a turn failed", self.name)

    def submit(self, run: Callable[[], None]) -> None:
        self._runq.put(run)

    @property
    def threads(self) -> int:
        return self._live

    def close(self) -> None:
        """Stop the workers once the run queue is drained (tests; the node's dispatchers
        live as long as the process)."""
        with self._lock:
            self._closed = True
            n = self._live
        for _ in range(n):
            self._runq.put(None)

    # ---------------------------------------------------------------- managed blocks

    def _enter_block(self) -> None:
        with self._lock:
            self._blocked += 1
            if self._live - self._blocked < self.size \
                    and self._live < self.size + self.max_spare and not self._closed:
                self.spares_started += 1
                self._spawn_locked()

    def _leave_block(self) -> None:
        with self._lock:
            self._blocked -= 1


@contextlib.contextmanager
def blocking() -> Iterator[None]:
    """Wrap a wait inside a pooled actor: the pool runs a spare worker meanwhile. Outside a
    pool worker (or nested) it does nothing."""
    dispatcher: Dispatcher | None = getattr(_worker, "dispatcher", None)
    if dispatcher is None or _worker.blocked:
        yield
        return
    _worker.blocked = 1
    dispatcher._enter_block()
    try:
        yield
    finally:
        dispatcher._leave_block()
        _worker.blocked = 0


class PooledFuture(ThreadingFuture[Any]):
    """A ThreadingFuture whose blocking ``get`` on a pool worker is a managed block."""

    def get(self, *, timeout: float | None = None) -> Any:
        if self._result is not None or timeout == 0 \
                or getattr(_worker, "dispatcher", None) is None:
            return super().get(timeout=timeout)
        with blocking():
            return super().get(timeout=timeout)


class _Inbox:
    """The actor's inbox: a deque plus the claim that makes the actor runnable once."""

    __slots__ = ("_claim", "_q", "_run", "_submit")

    def __init__(self) -> None:
        self._q: deque[Any] = deque()
        self._claim = threading.Lock()
        self._claim.acquire()  # held until the actor starts: puts before that only queue
        self._submit: Callable[[Callable[[], None]], None] | None = None
        self._run: Callable[[], None] | None = None

    def start(self, submit: Callable[[Callable[[], None]], None],
              run: Callable[[], None]) -> None:
        """Bind to a dispatcher and make the actor runnable (its first turn runs on_start
        and whatever was put meanwhile)."""
        self._submit, self._run = submit, run
        submit(run)

    def put(self, envelope: Any, /) -> None:
        self._q.append(envelope)
        if self._claim.acquire(False):  # not runnable yet: we make it so
            self._submit(self._run)  # type: ignore[misc]

    def get(self) -> Any:
        return self._q.popleft()  # pykka calls it only after empty() said False

    def empty(self) -> bool:
        return not self._q

    def release(self) -> None:
        """The worker is done with the actor: let the next put claim it, and claim it back
        if a put came between our last look and the release (it saw the claim taken)."""
        self._claim.release()
        if self._q and self._claim.acquire(False):
            self._submit(self._run)  # type: ignore[misc]


_dispatchers: dict[str, Dispatcher] = {}
_dispatchers_lock = threading.Lock()


def dispatcher(name: str) -> Dispatcher:
    """The process-wide dispatcher called ``name`` (actors started outside a node, e.g. in
    tests; a node gives its actors its own), started on first use with
    ``ZRAFT_POOL_<NAME>`` workers (default 4)."""
    d = _dispatchers.get(name)
    if d is not None:
        return d
    with _dispatchers_lock:
        d = _dispatchers.get(name)
        if d is None:
            env = os.environ.get(f"ZRAFT_POOL_{name.upper()}", "")
            size = int(env) if env.isdigit() and 0 < int(env) <= 64 else 4
            d = _dispatchers[name] = Dispatcher(name, size)
        return d


class PooledActor(pykka.Actor):
    """A Pykka actor whose messages are handled by a dispatcher's workers (see module
    docstring). ``dispatcher`` names a process-wide dispatcher or is one; an instance may
    set its own in ``__init__`` (the node gives its actors the node's dispatchers): it is
    read when the actor starts."""

    dispatcher: str | Dispatcher = "raft"
    _pool: Dispatcher
    _started = False

    @staticmethod
    def _create_actor_inbox() -> Any:
        return _Inbox()

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return PooledFuture()

    def _start_actor_loop(self) -> None:
        d = self.dispatcher
        self._pool = d if isinstance(d, Dispatcher) else dispatcher(d)
        self.actor_inbox.start(self._pool.submit, self._turn)  # type: ignore[attr-defined]

    def _turn(self) -> None:
        """One turn on a worker: on_start once, then up to ``budget`` messages."""
        inbox = self.actor_inbox
        try:
            if not self._started:
                self._started = True
                try:
                    self._actor_loop_setup()  # on_start; a failure marks the actor stopped
                except BaseException:  # a thread would die of it; here: the actor stops
                    self._handle_failure(*sys.exc_info())
            stopped = self.actor_stopped
            q = inbox._q  # type: ignore[attr-defined]
            n = self._pool.budget
            while q and not stopped.is_set() and n:
                n -= 1
                self._handle_envelope(q.popleft())
            if stopped.is_set():
                self._actor_loop_teardown()  # answers what is left: ActorDeadError
        finally:
            inbox.release()  # type: ignore[attr-defined]

    def _handle_envelope(self, envelope: Any) -> None:
        reply_to = envelope.reply_to
        try:
            response = self._handle_receive(envelope.message)
            if reply_to is not None:
                reply_to.set(response)
        except Exception:
            if reply_to is not None:
                log.info("exception returned from %s to its caller", self, exc_info=True)
                reply_to.set_exception()
            else:
                self._handle_failure(*sys.exc_info())
                try:
                    self.on_failure(*sys.exc_info())
                except Exception:
                    self._handle_failure(*sys.exc_info())
        except BaseException:
            log.debug("%r in %s: stopping all actors", sys.exc_info()[1], self)
            self._stop()
            ActorRegistry.stop_all()
