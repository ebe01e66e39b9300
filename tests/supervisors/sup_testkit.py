"""Test actors and helpers for the supervisor tests (no sleeps: events and conditions)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pykka

from supervisors import ChildSpec, ExitInfo, Restart, SupervisedMixin

WAIT_S = 5.0  # generous upper bound for any single wait; tests finish far sooner


class EventLog:
    """Thread-safe record of (kind, name, ...) tuples with waiting."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.events: list[tuple[Any, ...]] = []

    def add(self, *event: Any) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def count(self, kind: str, name: str) -> int:
        with self._cond:
            return sum(1 for e in self.events if e[0] == kind and e[1] == name)

    def of(self, kind: str) -> list[str]:
        with self._cond:
            return [e[1] for e in self.events if e[0] == kind]

    def wait_count(self, kind: str, name: str, n: int, timeout: float = WAIT_S) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: sum(1 for e in self.events if e[0] == kind and e[1] == name) >= n,
                timeout,
            )


class ExitCatcher:
    """Collects on_give_up / on_exit callbacks; `wait()` for the first one."""

    def __init__(self) -> None:
        self.exits: list[ExitInfo] = []
        self.event = threading.Event()

    def __call__(self, exit_info: ExitInfo) -> None:
        self.exits.append(exit_info)
        self.event.set()

    def wait(self, timeout: float = WAIT_S) -> ExitInfo:
        assert self.event.wait(timeout), "no exit reported in time"
        return self.exits[0]


class Worker(SupervisedMixin, pykka.ThreadingActor):
    """Records start/stop; `fail_start` makes on_start raise `start_error`;
    `start_gate`/`stop_gate` make on_start/on_stop wait for them; messages drive failures."""

    def __init__(
        self,
        log: EventLog,
        name: str,
        fail_start: bool = False,
        start_error: type[BaseException] = RuntimeError,
        stop_gate: threading.Event | None = None,
        start_gate: threading.Event | None = None,
    ) -> None:
        super().__init__()
        self.log = log
        self.label = name
        self.fail_start = fail_start
        self.start_error = start_error
        self.stop_gate = stop_gate
        self.start_gate = start_gate

    def on_start(self) -> None:
        self.log.add("starting", self.label)
        if self.start_gate is not None:
            self.start_gate.wait(WAIT_S * 2)
        if self.fail_start:
            self.log.add("start_failed", self.label)
            raise self.start_error(f"{self.label} can not start")
        self.log.add("started", self.label, self.actor_urn)

    def on_stop(self) -> None:  # deliberately no super(): the mixin must still report
        self.log.add("stopping", self.label)
        if self.stop_gate is not None:
            self.stop_gate.wait(WAIT_S * 2)
        self.log.add("stopped", self.label)

    def on_failure(self, *_exc: Any) -> None:
        self.log.add("failed", self.label)

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise ValueError("boom")
        if message == "interrupt":
            raise KeyboardInterrupt
        if message == "quit":
            self.stop_abnormally("asked to quit")
            return None
        if isinstance(message, tuple) and message[0] == "block":
            message[1].set()  # tell the test we are inside the message
            message[2].wait(WAIT_S * 2)  # stuck until the test releases us
            return None
        if message == "whoami":
            return self.actor_urn
        return None

    def sibling_urn(self, name: str) -> str:
        return self.sibling(name).ask("whoami", timeout=WAIT_S)


class PlainWorker(pykka.ThreadingActor):
    """A Pykka actor without the mixin: only the watcher can see it die."""

    def __init__(self, log: EventLog, name: str) -> None:
        super().__init__()
        self.log = log
        self.label = name

    def on_start(self) -> None:
        self.log.add("started", self.label, self.actor_urn)

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise ValueError("plain boom")
        return None


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    """Poll `predicate` until it holds or `timeout` passes (polling with a deadline)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: its timed wait is the poll interval
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.005)
    return True


class FakeClock:
    """A monotonic clock the test moves by hand (for the intensity window)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def worker_spec(
    log: EventLog,
    name: str,
    *,
    restart: Restart = Restart.PERMANENT,
    shutdown_s: float = 1.0,
    **worker_kwargs: Any,
) -> ChildSpec:
    """A ChildSpec for a Worker labelled `name`."""
    return ChildSpec(
        name, Worker, args=(log, name), kwargs=worker_kwargs, restart=restart,
        shutdown_s=shutdown_s,
    )


def live_urns() -> set[str]:
    """URNs of all registered actors (compare with a baseline taken at test start, so
    actors leaked by other test areas do not matter)."""
    return {ref.actor_urn for ref in pykka.ActorRegistry.get_all()}
