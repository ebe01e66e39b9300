"""Value types of the supervisor: child specs, restart types, exit records and errors.

Rules:
- Everything here is immutable data or an exception class; no threads, no actors.
- A `ChildSpec` names its child; the name is the child's identity across restarts
  (a restart is always a new Pykka actor with a new URN).
- `should_restart` is the one place that maps (restart type, exit kind) to a decision.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pykka

__all__ = [
    "Backoff",
    "ChildAlreadyExistsError",
    "ChildInfo",
    "ChildNotFoundError",
    "ChildNotRunningError",
    "ChildRunningError",
    "ChildSpec",
    "ChildStartError",
    "ExitInfo",
    "ExitKind",
    "Restart",
    "SupervisorError",
    "should_restart",
]

DEFAULT_SHUTDOWN_S = 5.0
DEFAULT_START_TIMEOUT_S = 5.0


class Restart(enum.Enum):
    """When a child that exited is started again (OTP's restart types)."""

    PERMANENT = "permanent"  # always restarted, even after a normal exit
    TRANSIENT = "transient"  # restarted only after an abnormal exit
    TEMPORARY = "temporary"  # never restarted; removed from the supervisor when it exits


class ExitKind(enum.Enum):
    """How an actor ended, as far as its supervisor can tell."""

    NORMAL = "normal"  # stopped on request (ref.stop(), self.stop())
    ABNORMAL = "abnormal"  # an exception, a failed on_start, a give-up, or an unknown exit
    FATAL = "fatal"  # a BaseException: Pykka also runs ActorRegistry.stop_all()


@dataclass(frozen=True)
class ExitInfo:
    """Why an actor ended. `exception` is kept for logging and callbacks only."""

    kind: ExitKind
    reason: str
    exception: BaseException | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.reason}"


def should_restart(restart: Restart, kind: ExitKind) -> bool:
    """The one-for-one restart decision for one exited child."""
    if kind is ExitKind.FATAL:
        return False  # a fatal exit is escalated, never restarted locally
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return kind is ExitKind.ABNORMAL
    return False


ActorFactory = Callable[..., pykka.ActorRef[Any]]


@dataclass(frozen=True)
class Backoff:
    """Restart a crashing child after a growing delay instead of at once, and without
    counting it against the supervisor's intensity (Akka's BackoffSupervisor): one child
    in a crash loop is slowed down, never lets the supervisor (and every sibling) give up.

    The n-th consecutive restart waits ``min(max_s, initial_s * 2**(n-1))``; an
    incarnation that ran ``reset_after_s`` or longer starts the count again.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    reset_after_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError("Backoff needs 0 < initial_s <= max_s")
        if not self.reset_after_s > 0:
            raise ValueError("Backoff.reset_after_s must be > 0")

    def delay(self, failures: int) -> float:
        return min(self.max_s, self.initial_s * 2 ** max(0, failures - 1))


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child and what to do when it exits.

    `factory` is either a Pykka actor class (started with `cls.start(*args, **kwargs)`;
    a class without SupervisedMixin is started as a same-named subclass that adds it)
    or a callable returning a started `pykka.ActorRef` (watched by polling unless the
    actor it builds is a SupervisedMixin). It runs in the supervisor's
    thread, so it must not block. `shutdown_s` bounds how long the supervisor waits
    for the child to stop before it abandons it. `start_timeout_s` bounds how long the
    supervisor waits for a SupervisedMixin child's on_start before starting the next
    child (plain actors are not waited for); a child still starting then is not an error.
    """

    name: str
    factory: type[pykka.Actor] | ActorFactory
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    restart: Restart = Restart.PERMANENT
    shutdown_s: float = DEFAULT_SHUTDOWN_S
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S
    backoff: Backoff | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("ChildSpec.name must be a non-empty string")
        if not callable(self.factory):
            raise TypeError(f"ChildSpec {self.name!r}: factory must be an actor class or callable")
        if not isinstance(self.restart, Restart):
            raise TypeError(f"ChildSpec {self.name!r}: restart must be a Restart member")
        if not self.shutdown_s > 0:
            raise ValueError(f"ChildSpec {self.name!r}: shutdown_s must be > 0")
        if not self.start_timeout_s >= 0:
            raise ValueError(f"ChildSpec {self.name!r}: start_timeout_s must be >= 0")
        if self.backoff is not None and not isinstance(self.backoff, Backoff):
            raise TypeError(f"ChildSpec {self.name!r}: backoff must be a Backoff or None")

    def start(
        self, adapt_class: Callable[[type[pykka.Actor]], type[pykka.Actor]] = lambda cls: cls
    ) -> pykka.ActorRef[Any]:
        """Start one incarnation of the child (in the calling thread).

        `adapt_class` may replace an actor class factory (the supervisor uses it to add
        SupervisedMixin to plain actor classes); callables are used as they are.
        """
        if isinstance(self.factory, type) and issubclass(self.factory, pykka.Actor):
            ref = adapt_class(self.factory).start(*self.args, **dict(self.kwargs))
        else:
            ref = self.factory(*self.args, **dict(self.kwargs))
        if not isinstance(ref, pykka.ActorRef):
            raise TypeError(
                f"ChildSpec {self.name!r}: factory returned {type(ref).__name__}, not an ActorRef"
            )
        return ref


@dataclass(frozen=True)
class ChildInfo:
    """One row of `which_children()`: `ref` is None while the child is not running."""

    name: str
    ref: pykka.ActorRef[Any] | None
    restart: Restart
    restarts: int
    is_supervisor: bool
    last_exit: ExitInfo | None
    restart_in_s: float | None = None  # waiting for a backoff restart this long


class SupervisorError(Exception):
    """Base class of the errors the supervisor API raises to its callers."""


class ChildAlreadyExistsError(SupervisorError):
    """start_child: a child with this name is already present."""


class ChildNotFoundError(SupervisorError):
    """No child with this name is present."""


class ChildRunningError(SupervisorError):
    """restart_child/delete_child: the child is running (terminate it first)."""


class ChildNotRunningError(SupervisorError):
    """A handle was used while its child is not running (down, or being restarted)."""


class ChildStartError(SupervisorError):
    """The child's factory raised or returned something that is not an ActorRef."""
