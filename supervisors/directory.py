"""Name → current ActorRef map of one supervisor, and handles that resolve through it.

Rules:
- The supervisor is the only writer; anyone may read. Reads take a lock and never go
  through the supervisor's inbox, so a lookup can not deadlock against a supervisor
  that is busy (for instance waiting, bounded, for a child to stop).
- A `ChildHandle` stores a path of names, never an ActorRef: every call resolves the
  name again, so after a restart the handle reaches the new actor.
- Nested supervisors publish their own directory in their link, so a handle path
  ("inner", "worker") walks down the tree without asking any actor.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

import pykka

from supervisors.spec import ChildNotRunningError


class ChildLink(Protocol):
    """What a directory needs of a child's link (``supervisors.link.ChildLink`` is one);
    a protocol, so that this module does not import ``link`` (which imports it)."""

    @property
    def child_directory(self) -> ChildDirectory | None: ...

    @property
    def is_attached(self) -> bool: ...

    @property
    def started(self) -> threading.Event: ...


__all__ = ["ChildDirectory", "ChildHandle"]


class ChildDirectory:
    """Thread-safe map of child name → (current ref, current link)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[pykka.ActorRef[Any], ChildLink]] = {}

    def publish(self, name: str, ref: pykka.ActorRef[Any], link: ChildLink) -> None:
        with self._lock:
            self._entries[name] = (ref, link)

    def withdraw(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)

    def lookup(self, name: str) -> pykka.ActorRef[Any] | None:
        with self._lock:
            entry = self._entries.get(name)
        return None if entry is None else entry[0]

    def link_of(self, name: str) -> ChildLink | None:
        with self._lock:
            entry = self._entries.get(name)
        return None if entry is None else entry[1]

    def handle(self, name: str) -> ChildHandle:
        return ChildHandle(self, (name,))


class ChildHandle:
    """Reaches a supervised child by name; resolves the name on every call.

    Use it instead of keeping an ActorRef: `handle.tell(msg)`, `handle.ask(msg)`,
    `handle.proxy()`, `handle.ref`. Raises `ChildNotRunningError` while the child is
    down or being restarted (the caller decides whether to retry).
    """

    def __init__(self, root: ChildDirectory, path: tuple[str, ...]) -> None:
        if not path:
            raise ValueError("a ChildHandle needs at least one name")
        self._root = root
        self.path = path

    def __repr__(self) -> str:
        return f"<ChildHandle {'/'.join(self.path)}>"

    def child(self, name: str) -> ChildHandle:
        """A handle to `name` under this child, which must be a supervisor."""
        return ChildHandle(self._root, (*self.path, name))

    def _link(self) -> ChildLink | None:
        directory: ChildDirectory | None = self._root
        link: ChildLink | None = None
        for name in self.path:
            if directory is None:
                return None
            link = directory.link_of(name)
            if link is None:
                return None
            directory = link.child_directory
        return link

    def resolve(self) -> pykka.ActorRef[Any] | None:
        """The current ActorRef, or None while the child is not running."""
        directory: ChildDirectory | None = self._root
        *parents, last = self.path
        for name in parents:
            link = directory.link_of(name) if directory is not None else None
            directory = None if link is None else link.child_directory
        if directory is None:
            return None
        ref = directory.lookup(last)
        return ref if ref is not None and ref.is_alive() else None

    @property
    def ref(self) -> pykka.ActorRef[Any]:
        ref = self.resolve()
        if ref is None:
            raise ChildNotRunningError(f"child {'/'.join(self.path)} is not running")
        return ref

    def is_running(self) -> bool:
        return self.resolve() is not None

    def tell(self, message: Any) -> None:
        self.ref.tell(message)

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        return self.ref.ask(message, block=block, timeout=timeout)

    def proxy(self) -> pykka.ActorProxy[Any]:
        return self.ref.proxy()

    def wait_started(self, timeout: float) -> pykka.ActorRef[Any]:
        """Wait until the current incarnation finished on_start; return its ref.

        Only SupervisedMixin children signal "started"; for other actors this returns
        as soon as the child is running. Raises `ChildNotRunningError` on timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            link = self._link()
            ref = self.resolve()
            if link is not None and ref is not None:
                if not link.is_attached or link.started.is_set():
                    return ref
                remaining = deadline - time.monotonic()
                if remaining > 0 and link.started.wait(min(remaining, 0.05)):
                    continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChildNotRunningError(
                    f"child {'/'.join(self.path)} not started within {timeout}s"
                )
            time.sleep(min(remaining, 0.01))  # poll: the name may be between incarnations
