"""OneForOneSupervisor: a Pykka actor that starts, watches and restarts named children.

Rules:
- One-for-one: only the child that ended is restarted, according to its restart type
  (permanent: always; transient: after an abnormal exit; temporary: never, and it is
  removed). A FATAL child exit is never restarted: the supervisor gives up at once.
- Restart intensity: more than `max_restarts` restarts within `period_s` seconds and the
  supervisor gives up: it stops its children in reverse start order and ends with an
  ABNORMAL exit, which its own supervisor sees like any child crash, or, at the top,
  the ExitSink's `on_give_up` callback receives.
- A child whose spec has a `Backoff` is restarted after a growing delay instead, and its
  restarts never count against the intensity: a crash loop in one child slows that child
  down and leaves its siblings alone. While it waits, `which_children` shows the delay;
  `terminate_child` cancels the pending restart.
- Children start in spec order and stop in reverse order, each bounded by its
  `shutdown_s`; a child that does not stop in time is logged and abandoned.
- Threading: every method below runs in the supervisor's own actor thread (Pykka
  serialises them). The only blocking calls are `ref.stop(timeout=shutdown_s)` while
  stopping a child, and waiting (on an Event, not a future) up to `start_timeout_s` for
  a SupervisedMixin child's on_start to finish. Both are bounded, so a child that asks
  the supervisor something at the wrong moment is delayed, never deadlocked. Name
  lookups through handles bypass the inbox altogether (see directory.py).
- Children are always reached by name (`get_child`, `child_handle`), never through a
  stored ActorRef: a restart is a new actor.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pykka

from supervisors.directory import ChildDirectory, ChildHandle
from supervisors.link import ChildDown, ChildLink, ExitSink, offered_link
from supervisors.mixin import SupervisedMixin, with_supervised_mixin
from supervisors.spec import (
    ChildAlreadyExistsError,
    ChildInfo,
    ChildNotFoundError,
    ChildRunningError,
    ChildSpec,
    ChildStartError,
    ExitInfo,
    ExitKind,
    Restart,
    SupervisorError,
    should_restart,
)
from supervisors.watch import ChildWatcher

__all__ = ["OneForOneSupervisor"]

logger = logging.getLogger(__name__)


@dataclass
class _Child:
    spec: ChildSpec
    ref: pykka.ActorRef[Any] | None = None
    link: ChildLink | None = None
    restarts: int = 0
    last_exit: ExitInfo | None = None
    terminated: bool = False  # by terminate_child: no automatic restart until restart_child
    started_at: float = 0.0
    backoff_failures: int = 0  # consecutive crashes of a Backoff child
    backoff_due: float | None = None  # clock time of its pending restart
    backoff_token: int = 0  # the pending restart's; a stale timer is ignored
    backoff_timer: threading.Timer | None = None


@dataclass(frozen=True)
class _RetryRestart:
    """Told to self when a restart's factory raised: try again through the inbox."""

    name: str


@dataclass(frozen=True)
class _BackoffDue:
    """Told to self by a Backoff child's timer: restart it now (if still wanted)."""

    name: str
    token: int


class OneForOneSupervisor(SupervisedMixin, pykka.ThreadingActor):
    """Supervises named Pykka actors one-for-one. See the module docstring.

    Start it like any actor: `OneForOneSupervisor.start(children, name=..., ...)`; nest
    it by putting `ChildSpec("inner", OneForOneSupervisor, args=(specs,), kwargs=...)`
    in another supervisor. `on_give_up`/`on_exit` apply only to a top-level supervisor.
    """

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        *,
        name: str = "supervisor",
        max_restarts: int = 3,
        period_s: float = 5.0,
        poll_interval_s: float = 0.05,
        on_give_up: Callable[[ExitInfo], None] | None = None,
        on_exit: Callable[[ExitInfo], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if max_restarts < 0:
            raise ValueError("max_restarts must be >= 0")
        if not period_s > 0:
            raise ValueError("period_s must be > 0")
        self._name = name
        self._max_restarts = max_restarts
        self._period_s = period_s
        self._clock = clock
        self._initial_specs = list(children)
        names = [spec.name for spec in self._initial_specs]
        if len(set(names)) != len(names):
            raise ValueError(f"supervisor {name!r}: duplicate child names in {names}")
        self._children: dict[str, _Child] = {}  # insertion order is start order
        self._directory = ChildDirectory()
        self._restart_times: deque[float] = deque()
        self._watcher = ChildWatcher(name, poll_interval_s)
        self._shutting_down = False
        link = self._supervision_link
        if link is not None:
            link.child_directory = self._directory  # lets handles walk into this supervisor
            self._sink = link.sink
            if on_give_up is not None or on_exit is not None:
                logger.warning("supervisor %r is supervised: on_give_up/on_exit ignored", name)
        else:
            self._sink = ExitSink(on_give_up, on_exit)

    def __str__(self) -> str:
        return f"OneForOneSupervisor {self._name!r} ({self.actor_urn})"

    # -- lifecycle (actor thread) ----------------------------------------------------------

    def on_start(self) -> None:
        self._watcher.start()
        try:
            for spec in self._initial_specs:
                child = _Child(spec)
                self._children[spec.name] = child
                self._start_incarnation(child)
        except BaseException:
            logger.error("supervisor %r: a child failed to start; stopping the others",
                         self._name)
            self._shutdown()
            raise
        logger.info("supervisor %r started %d children", self._name, len(self._children))

    def on_stop(self) -> None:
        self._shutdown()

    def on_failure(self, *_exc_info: Any) -> None:
        self._shutdown()

    def on_unsupervised_exit(self, exit_info: ExitInfo) -> None:
        logger.log(
            logging.INFO if exit_info.kind is ExitKind.NORMAL else logging.ERROR,
            "top-level supervisor %r ended: %s", self._name, exit_info,
        )
        self._sink.root_exited(exit_info)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildDown):
            self._on_child_down(message.link)
        elif isinstance(message, _RetryRestart):
            child = self._children.get(message.name)
            if (child is not None and child.ref is None and not child.terminated
                    and not self._shutting_down):
                self._restart(child, child.last_exit)
        elif isinstance(message, _BackoffDue):
            child = self._children.get(message.name)
            if (child is not None and child.ref is None and not child.terminated
                    and not self._shutting_down and child.backoff_token == message.token):
                child.backoff_due = child.backoff_timer = None
                self._backoff_start(child)
        else:
            return super().on_receive(message)
        return None

    # -- public API (call through a proxy or ask; runs in the actor thread) ----------------

    @property
    def name(self) -> str:
        return self._name

    def start_child(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        """Add and start a child; it is stopped before the children that exist already."""
        if self._shutting_down:
            raise SupervisorError(f"supervisor {self._name!r} is shutting down")
        if spec.name in self._children:
            raise ChildAlreadyExistsError(f"child {spec.name!r} already exists")
        child = _Child(spec)
        ref = self._start_incarnation(child)  # raises ChildStartError; then not added
        self._children[spec.name] = child
        return ref

    def terminate_child(self, name: str) -> None:
        """Stop a child; its spec stays (restart_child/delete_child) unless temporary."""
        child = self._get(name)
        child.terminated = True
        self._cancel_backoff(child)
        if child.ref is not None:
            self._stop_child(child)
        if child.spec.restart is Restart.TEMPORARY:
            del self._children[name]

    def restart_child(self, name: str) -> pykka.ActorRef[Any]:
        """Start a terminated child again (not counted against the intensity)."""
        child = self._get(name)
        if child.ref is not None:
            raise ChildRunningError(f"child {name!r} is running")
        self._cancel_backoff(child)
        ref = self._start_incarnation(child)
        child.terminated = False
        return ref

    def delete_child(self, name: str) -> None:
        """Forget a terminated child's spec."""
        child = self._get(name)
        self._cancel_backoff(child)
        if child.ref is not None:
            raise ChildRunningError(f"child {name!r} is running; terminate it first")
        del self._children[name]

    def which_children(self) -> list[ChildInfo]:
        return [
            ChildInfo(
                name=name,
                ref=child.ref,
                restart=child.spec.restart,
                restarts=child.restarts,
                is_supervisor=self._is_supervisor(child),
                last_exit=child.last_exit,
                restart_in_s=(None if child.backoff_due is None
                              else max(0.0, child.backoff_due - self._clock())),
            )
            for name, child in self._children.items()
        ]

    def count_children(self) -> dict[str, int]:
        """OTP's counts: specs, active (running), supervisors, workers."""
        infos = self.which_children()
        supervisors = sum(1 for info in infos if info.is_supervisor)
        return {
            "specs": len(infos),
            "active": sum(1 for info in infos if info.ref is not None),
            "supervisors": supervisors,
            "workers": len(infos) - supervisors,
        }

    def get_child(self, name: str) -> pykka.ActorRef[Any] | None:
        """The child's CURRENT ref, or None while it is not running."""
        return self._directory.lookup(name)

    def child_handle(self, name: str) -> ChildHandle:
        """A handle that resolves `name` on every call, without asking this actor."""
        return self._directory.handle(name)

    # -- internals (actor thread) ----------------------------------------------------------

    def _get(self, name: str) -> _Child:
        child = self._children.get(name)
        if child is None:
            raise ChildNotFoundError(f"supervisor {self._name!r} has no child {name!r}")
        return child

    @staticmethod
    def _is_supervisor(child: _Child) -> bool:
        if child.ref is not None:
            return issubclass(child.ref.actor_class, OneForOneSupervisor)
        factory = child.spec.factory
        return isinstance(factory, type) and issubclass(factory, OneForOneSupervisor)

    def _start_incarnation(self, child: _Child) -> pykka.ActorRef[Any]:
        spec = child.spec
        link = ChildLink(spec.name, self.actor_ref, self._directory, self._sink, spec.shutdown_s)
        try:
            with offered_link(link):
                ref = spec.start(with_supervised_mixin)
        except Exception as exc:
            logger.error("supervisor %r: child %r failed to start: %r", self._name, spec.name, exc)
            raise ChildStartError(f"child {spec.name!r} failed to start: {exc!r}") from exc
        if link.is_attached and link.attached_urn != ref.actor_urn:
            # Another SupervisedMixin built inside the factory took the link first; watch
            # the real child by polling only and ignore the thief's reports.
            logger.warning("supervisor %r: child %r link was taken by another actor; "
                           "falling back to polling", self._name, spec.name)
            link.expected_stop = True
            link = ChildLink(spec.name, self.actor_ref, self._directory, self._sink,
                             spec.shutdown_s)
        child.ref, child.link = ref, link
        child.started_at = self._clock()
        self._directory.publish(spec.name, ref, link)
        self._watcher.watch(link, ref)
        # Start in order like OTP: let a mixin child finish on_start (or fail) before the
        # next one starts. Bounded, and an Event rather than a future, so a child that
        # asks us something during on_start delays us by at most start_timeout_s.
        if link.is_attached and not link.settled.wait(spec.start_timeout_s):
            logger.warning("supervisor %r: child %r still starting after %ss; going on",
                           self._name, spec.name, spec.start_timeout_s)
        logger.info("supervisor %r: started child %r (%s)", self._name, spec.name, ref)
        return ref

    def _on_child_down(self, link: ChildLink) -> None:
        child = self._children.get(link.name)
        if child is None or child.link is not link or link.expected_stop or self._shutting_down:
            logger.debug("supervisor %r: ignoring stale exit of %r", self._name, link.name)
            return
        exit_info = link.exit or ExitInfo(ExitKind.ABNORMAL, "unknown")
        self._watcher.unwatch(link)
        self._directory.withdraw(link.name)
        child.ref, child.link, child.last_exit = None, None, exit_info
        restart = should_restart(child.spec.restart, exit_info.kind)
        level = {ExitKind.NORMAL: logging.INFO, ExitKind.ABNORMAL: logging.WARNING}
        logger.log(
            level.get(exit_info.kind, logging.ERROR),
            "supervisor %r: child %r exited (%s); %s child, restarts so far %d: %s",
            self._name, link.name, exit_info, child.spec.restart.value, child.restarts,
            "restarting" if restart else "not restarting",
        )
        if exit_info.kind is ExitKind.FATAL:
            self._give_up(ExitInfo(ExitKind.FATAL, f"child {link.name!r} failed fatally: "
                                   f"{exit_info.reason}", exit_info.exception))
        elif restart:
            self._restart(child, exit_info)
        elif child.spec.restart is Restart.TEMPORARY:
            del self._children[link.name]

    def _restart(self, child: _Child, cause: ExitInfo | None) -> None:
        name = child.spec.name
        if child.spec.backoff is not None:
            self._schedule_backoff(child, cause)
            return
        if not self._restart_allowed():
            self._give_up(ExitInfo(
                ExitKind.ABNORMAL,
                f"restart intensity exceeded ({self._max_restarts} restarts in "
                f"{self._period_s}s); last: child {name!r} {cause}",
                None if cause is None else cause.exception,
            ))
            return
        child.restarts += 1
        logger.warning("supervisor %r: restarting child %r (restart #%d) after %s",
                       self._name, name, child.restarts, cause)
        try:
            self._start_incarnation(child)
        except ChildStartError as exc:
            child.last_exit = ExitInfo(ExitKind.ABNORMAL, str(exc), exc.__cause__)
            self.actor_ref.tell(_RetryRestart(name))  # counted again, so this can not loop

    # -- backoff restarts (actor thread; timers only tell the inbox) ------------------------

    def _schedule_backoff(self, child: _Child, cause: ExitInfo | None) -> None:
        backoff = child.spec.backoff
        assert backoff is not None
        if child.started_at and self._clock() - child.started_at >= backoff.reset_after_s:
            child.backoff_failures = 0  # it ran well for a while: start the count again
        child.backoff_failures += 1
        delay = backoff.delay(child.backoff_failures)
        child.backoff_token += 1
        child.backoff_due = self._clock() + delay
        logger.warning("supervisor %r: restarting child %r in %.1fs (crash #%d in a row) "
                       "after %s", self._name, child.spec.name, delay,
                       child.backoff_failures, cause)
        message = _BackoffDue(child.spec.name, child.backoff_token)
        timer = threading.Timer(delay, self._tell_self, args=(message,))
        timer.daemon = True
        child.backoff_timer = timer
        timer.start()

    def _tell_self(self, message: Any) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(message)

    def _backoff_start(self, child: _Child) -> None:
        child.restarts += 1
        try:
            self._start_incarnation(child)
        except ChildStartError as exc:
            child.last_exit = ExitInfo(ExitKind.ABNORMAL, str(exc), exc.__cause__)
            child.started_at = 0.0
            self._schedule_backoff(child, child.last_exit)

    @staticmethod
    def _cancel_backoff(child: _Child) -> None:
        child.backoff_token += 1
        child.backoff_due = None
        if child.backoff_timer is not None:
            child.backoff_timer.cancel()
            child.backoff_timer = None

    def _restart_allowed(self) -> bool:
        now = self._clock()
        while self._restart_times and self._restart_times[0] <= now - self._period_s:
            self._restart_times.popleft()
        if len(self._restart_times) >= self._max_restarts:
            return False
        self._restart_times.append(now)
        return True

    def _give_up(self, exit_info: ExitInfo) -> None:
        if self._shutting_down:
            return
        logger.error("supervisor %r gives up: %s", self._name, exit_info)
        self._shutdown()
        self._stop_with(exit_info)

    def _shutdown(self) -> None:
        """Stop every child in reverse start order, then the watcher. Idempotent."""
        self._shutting_down = True
        for child in self._children.values():
            self._cancel_backoff(child)
        for child in reversed(list(self._children.values())):
            if child.ref is not None:
                self._stop_child(child)
        self._watcher.stop()

    def _stop_child(self, child: _Child) -> None:
        ref, link, name = child.ref, child.link, child.spec.name
        assert ref is not None and link is not None
        link.expected_stop = True
        self._watcher.unwatch(link)
        self._directory.withdraw(name)
        child.ref = child.link = None
        timeout = child.spec.shutdown_s
        try:
            ref.stop(block=True, timeout=timeout)
        except pykka.Timeout:
            logger.error("supervisor %r: child %r did not stop within %ss; abandoned",
                         self._name, name, timeout)
            child.last_exit = ExitInfo(ExitKind.ABNORMAL, f"did not stop within {timeout}s")
            return
        child.last_exit = ExitInfo(ExitKind.NORMAL, "shutdown")
        logger.info("supervisor %r: stopped child %r", self._name, name)
