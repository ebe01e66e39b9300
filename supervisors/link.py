"""The record one child incarnation shares with its supervisor and the watcher.

Rules:
- One `ChildLink` per incarnation (each start or restart makes a new one), so a late
  report from an old incarnation can never be mistaken for the current child.
- The first `report()` wins; later ones are ignored. Any thread may report: the child
  (from its hooks), the watcher thread, or nobody (the supervisor stopped it itself and
  set `expected_stop`, so the report is ignored on arrival).
- Reporting never blocks: it is a `tell` to the supervisor, plus a direct call into the
  root `ExitSink` for fatal exits, so a fatal failure reaches the top even while
  `ActorRegistry.stop_all()` is tearing the intermediate supervisors down.
- The link is handed to a `SupervisedMixin` child through a thread-local while the
  supervisor runs the child's factory (`__init__` runs in the supervisor's thread).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pykka

from supervisors.spec import ExitInfo, ExitKind

if TYPE_CHECKING:
    from supervisors.directory import ChildDirectory

__all__ = ["ChildDown", "ChildLink", "ExitSink", "offered_link", "take_offered_link"]

logger = logging.getLogger(__name__)


class ExitSink:
    """The top of a supervision tree: where give-ups and fatal failures end up.

    `on_give_up(exit)` runs at most once, for the first abnormal or fatal exit of the
    root supervisor or the first fatal exit anywhere below it. `on_exit(exit)` runs once,
    when the root supervisor itself ends. Both may run in any actor thread: keep them
    short and thread-safe (set an Event, record a value).
    """

    def __init__(
        self,
        on_give_up: Callable[[ExitInfo], None] | None = None,
        on_exit: Callable[[ExitInfo], None] | None = None,
    ) -> None:
        self._on_give_up = on_give_up
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._gave_up = False
        self._exited = False

    def fatal(self, exit_info: ExitInfo) -> None:
        """A fatal failure somewhere in the tree: tell the top at once."""
        self._give_up(exit_info)

    def root_exited(self, exit_info: ExitInfo) -> None:
        """The root supervisor ended; a non-normal end is a give-up."""
        if exit_info.kind is not ExitKind.NORMAL:
            self._give_up(exit_info)
        with self._lock:
            if self._exited:
                return
            self._exited = True
        if self._on_exit is not None:
            self._call(self._on_exit, exit_info)

    def _give_up(self, exit_info: ExitInfo) -> None:
        with self._lock:
            if self._gave_up:
                return
            self._gave_up = True
        logger.error("supervision tree gave up: %s", exit_info)
        if self._on_give_up is not None:
            self._call(self._on_give_up, exit_info)

    @staticmethod
    def _call(callback: Callable[[ExitInfo], None], exit_info: ExitInfo) -> None:
        try:
            callback(exit_info)
        except Exception:
            logger.exception("supervisor exit callback raised")


class ChildDown:
    """Message told to a supervisor: the incarnation behind `link` has ended."""

    __slots__ = ("link",)

    def __init__(self, link: ChildLink) -> None:
        self.link = link


class ChildLink:
    """Shared state of one child incarnation. See the module docstring for the rules."""

    def __init__(
        self,
        name: str,
        supervisor_ref: pykka.ActorRef[Any],
        directory: ChildDirectory,
        sink: ExitSink,
        shutdown_s: float,
    ) -> None:
        self.name = name
        self.supervisor_ref = supervisor_ref
        self.directory = directory  # the supervisor's name map, for sibling lookups
        self.sink = sink
        self.shutdown_s = shutdown_s
        self.attached_urn: str | None = None  # set by SupervisedMixin.__init__
        self.thread: threading.Thread | None = None  # the child's actor thread, once known
        self.started = threading.Event()  # set when the child's on_start returned
        self.settled = threading.Event()  # set when started, or when an exit was reported
        self.expected_stop = False  # the supervisor is stopping this child itself
        self.child_directory: ChildDirectory | None = None  # set if the child is a supervisor
        self._lock = threading.Lock()
        self._exit: ExitInfo | None = None

    def mark_started(self) -> None:
        self.started.set()
        self.settled.set()

    @property
    def exit(self) -> ExitInfo | None:
        return self._exit

    @property
    def is_attached(self) -> bool:
        """True when the child is a SupervisedMixin that reports its own exits."""
        return self.attached_urn is not None

    def report(self, exit_info: ExitInfo) -> bool:
        """Record how this incarnation ended and tell the supervisor. First call wins."""
        with self._lock:
            if self._exit is not None:
                return False
            self._exit = exit_info
        self.settled.set()
        if exit_info.kind is ExitKind.FATAL and not self.expected_stop:
            self.sink.fatal(
                ExitInfo(ExitKind.FATAL, f"child {self.name!r}: {exit_info.reason}",
                         exit_info.exception)
            )
        try:
            self.supervisor_ref.tell(ChildDown(self))
        except pykka.ActorDeadError:
            logger.debug("child %r ended (%s) after its supervisor", self.name, exit_info)
        return True


_offer = threading.local()


@contextmanager
def offered_link(link: ChildLink) -> Iterator[None]:
    """Offer `link` to the first SupervisedMixin constructed in this thread."""
    _offer.link = link
    try:
        yield
    finally:
        _offer.link = None


def take_offered_link() -> ChildLink | None:
    """Take (and withdraw) the link offered in this thread, if any."""
    link: ChildLink | None = getattr(_offer, "link", None)
    _offer.link = None
    return link
