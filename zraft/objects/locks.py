"""A lock manager whose locks belong to client sessions (leases that end with the session).

    locks = zraft.connect_object(peers, zraft.objects.LockManager, session_timeout=5)
    if locks.acquire("job-7"):            # True: now held by this handle's session
        ...
        locks.release("job-7")
    with locks.hold("job-7", timeout=10): # waits up to 10 s for it, releases on exit
        ...

Rules:
- A lock is a name (a str of 1..1024 characters) held by at most one session. ``acquire``
  by the holder is True again (not counted: one ``release`` frees it); by anyone else it is
  False. ``release`` by anyone but the holder is False and changes nothing.
- The holder's session ending releases its locks, on every replica at the same log
  position: ``Session.stop()`` / ``close()`` at once; a crashed or cut-off holder when the
  cluster expires its session, i.e. within the session timeout after its last keepalive,
  plus an election if the leader changed meanwhile. The session timeout is the lease.
  Until then, a holder that is only slow still holds the lock: code that must not run
  twice also checks ``handle.session.state`` (SUSPENDED: may have lost it, EXPIRED: lost).
- Waiting (``wait_acquire``, ``hold``) polls ``acquire`` with a growing pause (20 ms to
  250 ms); it is not fair (no queue of waiters).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from zraft.errors import Timeout
from zraft.fsm.backend import BadCommand
from zraft.objects.handle import ObjectHandle
from zraft.objects.methods import query, replicated

MAX_NAME = 1024


def _name(value: Any) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_NAME:
        raise BadCommand(f"a lock name is a str of 1-{MAX_NAME} characters")
    return value


class LockHandle(ObjectHandle):
    """A handle on a LockManager, with waiting on top of its replicated methods."""

    def wait_acquire(self, name: str, timeout: float) -> bool:
        """Acquire ``name``, polling until it is free; ``Timeout`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        pause = 0.02
        while True:
            if self.acquire(name):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"lock {name[:80]!r} not acquired within {timeout:g}s")
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.25)

    @contextlib.contextmanager
    def hold(self, name: str, timeout: float = 10.0) -> Iterator[None]:
        """``with locks.hold(name):`` acquire (waiting up to ``timeout``), then release."""
        self.wait_acquire(name, timeout)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # an expired session released it already
                self.release(name)

    def is_mine(self, name: str) -> bool:
        """True if this handle's session holds ``name`` (a linearizable read)."""
        return bool(self.owner(name) == self.session.sid)


class LockManager:
    """Named locks owned by sessions (see the module docstring)."""

    zraft_backend_name = "zraft.objects:LockManager"
    zraft_handle = LockHandle

    def __init__(self) -> None:
        self.owners: dict[str, str] = {}  # lock -> session id
        self.held: dict[str, dict[str, None]] = {}  # session id -> its locks, in order

    @replicated(session=True)
    def acquire(self, session: str, name: str) -> bool:
        name = _name(name)
        owner = self.owners.get(name)
        if owner is not None:
            return owner == session
        self.owners[name] = session
        self.held.setdefault(session, {})[name] = None
        return True

    @replicated(session=True)
    def release(self, session: str, name: str) -> bool:
        name = _name(name)
        if self.owners.get(name) != session:
            return False
        del self.owners[name]
        mine = self.held[session]
        del mine[name]
        if not mine:
            del self.held[session]
        return True

    def on_session_expired(self, session: str) -> None:
        for name in self.held.pop(session, {}):
            del self.owners[name]

    @query
    def owner(self, name: str) -> str | None:
        """The session id holding ``name``, or None."""
        return self.owners.get(_name(name))

    @query
    def locks(self) -> dict[str, str]:
        """Every held lock and its session id."""
        return dict(self.owners)

    def zraft_temporary_count(self) -> int:
        return len(self.owners)


__all__ = ["LockHandle", "LockManager"]
