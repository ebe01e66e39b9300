"""SupervisedMixin: lets a Pykka actor tell its supervisor exactly how it ended.

Rules:
- Put it before the Pykka base: `class Worker(SupervisedMixin, pykka.ThreadingActor)`,
  and call `super().__init__()` first in your `__init__` (the mixin takes the link the
  supervisor offers in the constructing thread).
- The mixin wraps this instance's `on_start`, `on_stop` and `on_failure` in `__init__`,
  so subclasses override those hooks as usual and need NOT call `super()`. Each way a
  Pykka actor can end is reported from the actor's own thread:

  | how it ends                            | hook Pykka runs  | reported as |
  |----------------------------------------|------------------|-------------|
  | exception in a told message            | on_failure       | ABNORMAL    |
  | exception in on_start                  | (none: wrapper)  | ABNORMAL    |
  | ref.stop() / self.stop() from anywhere | on_stop          | NORMAL      |
  | self.stop_abnormally(reason)           | on_stop          | ABNORMAL    |
  | BaseException in a message (Pykka then | on_stop, inside  | FATAL       |
  |   runs ActorRegistry.stop_all())       |   the except     |             |
  | BaseException in on_start              | (none: wrapper)  | FATAL       |

- A BaseException in on_start is not handled by Pykka (its thread would die and the
  actor would look alive forever); the wrapper marks the actor stopped, reports FATAL
  and returns, so the thread ends cleanly.
- `with_supervised_mixin(cls)` gives a plain actor class the mixin (a cached subclass
  with the same name), so class-based child specs get exact exit reasons too.
- Without a supervisor (started directly) the mixin does nothing but call
  `on_unsupervised_exit`, which the supervisor overrides to reach its ExitSink.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import Any

import pykka

from supervisors.directory import ChildHandle
from supervisors.link import ChildLink, take_offered_link
from supervisors.spec import ExitInfo, ExitKind

__all__ = ["SupervisedMixin", "with_supervised_mixin"]

logger = logging.getLogger(__name__)


def _is_fatal(exc: BaseException | None) -> bool:
    return exc is not None and not isinstance(exc, Exception)


class SupervisedMixin:
    """Mixin for Pykka actors run under a OneForOneSupervisor. See the module docstring."""

    # Provided by pykka.Actor; declared for type checkers.
    actor_urn: str
    actor_ref: pykka.ActorRef[Any]
    actor_stopped: threading.Event

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        link = take_offered_link()
        self._supervision_link: ChildLink | None = link
        self._supervision_exit: ExitInfo | None = None
        if link is not None:
            link.attached_urn = self.actor_urn
        self._wrap_lifecycle_hooks()

    # -- public helpers for subclasses -------------------------------------------------

    @property
    def supervisor(self) -> pykka.ActorRef[Any] | None:
        """The supervisor's ref, or None when this actor is not supervised."""
        link = self._supervision_link
        return None if link is None else link.supervisor_ref

    @property
    def supervised_name(self) -> str | None:
        """The child name this actor runs under, or None when not supervised."""
        link = self._supervision_link
        return None if link is None else link.name

    def sibling(self, name: str) -> ChildHandle:
        """A by-name handle to another child of the same supervisor."""
        link = self._supervision_link
        if link is None:
            raise RuntimeError(f"{self} is not supervised: it has no siblings")
        return link.directory.handle(name)

    def stop_abnormally(self, reason: str, exception: BaseException | None = None) -> None:
        """Stop this actor and report an ABNORMAL exit (transient children restart)."""
        self._stop_with(ExitInfo(ExitKind.ABNORMAL, reason, exception))

    def on_unsupervised_exit(self, exit_info: ExitInfo) -> None:
        """Called instead of a report when nobody supervises this actor."""
        if exit_info.kind is not ExitKind.NORMAL:
            logger.warning("unsupervised actor %s ended: %s", self, exit_info)

    # -- internals -----------------------------------------------------------------------

    def _stop_with(self, exit_info: ExitInfo) -> None:
        self._supervision_exit = exit_info
        self.stop()  # type: ignore[attr-defined]  # pykka.Actor.stop: queued behind the inbox

    def _report_exit(self, exit_info: ExitInfo) -> None:
        link = self._supervision_link
        if link is None:
            self.on_unsupervised_exit(exit_info)
        else:
            link.report(exit_info)

    def _wrap_lifecycle_hooks(self) -> None:
        user_on_start = self.on_start  # type: ignore[attr-defined]
        user_on_stop = self.on_stop  # type: ignore[attr-defined]
        user_on_failure = self.on_failure  # type: ignore[attr-defined]

        def on_start() -> None:
            link = self._supervision_link
            if link is not None:
                link.thread = threading.current_thread()
            try:
                user_on_start()
            except Exception as exc:
                self._report_exit(ExitInfo(ExitKind.ABNORMAL, f"on_start failed: {exc!r}", exc))
                raise  # Pykka logs it and stops the actor (on_failure is not called)
            except BaseException as exc:
                pykka.ActorRegistry.unregister(self.actor_ref)
                self.actor_stopped.set()
                self._report_exit(ExitInfo(ExitKind.FATAL, f"on_start raised {exc!r}", exc))
                return
            if link is not None:
                link.mark_started()

        def on_stop() -> None:
            in_flight = sys.exc_info()[1]  # set when Pykka stops us for a BaseException
            try:
                user_on_stop()
            finally:
                self._report_exit(self._exit_for_stop(in_flight))

        def on_failure(
            exc_type: type[BaseException] | None,
            exc_value: BaseException | None,
            traceback: TracebackType | None,
        ) -> None:
            try:
                user_on_failure(exc_type, exc_value, traceback)
            finally:
                self._report_exit(ExitInfo(ExitKind.ABNORMAL, f"crashed: {exc_value!r}", exc_value))

        self.on_start = on_start
        self.on_stop = on_stop
        self.on_failure = on_failure

    def _exit_for_stop(self, in_flight: BaseException | None) -> ExitInfo:
        if self._supervision_exit is not None:
            return self._supervision_exit
        if _is_fatal(in_flight):
            return ExitInfo(ExitKind.FATAL, f"{in_flight!r} (Pykka stops all actors)", in_flight)
        return ExitInfo(ExitKind.NORMAL, "stopped")


_adapted: dict[type, type] = {}
_adapted_lock = threading.Lock()


def with_supervised_mixin(cls: type[pykka.Actor]) -> type[pykka.Actor]:
    """`cls` itself if it has the mixin, else a cached same-named subclass adding it."""
    if issubclass(cls, SupervisedMixin):
        return cls
    with _adapted_lock:
        adapted = _adapted.get(cls)
        if adapted is None:
            adapted = type(cls.__name__, (SupervisedMixin, cls), {
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": cls.__doc__,
            })
            _adapted[cls] = adapted
    return adapted
