"""The Backend protocol: the user's replicated data structure (zraft_lib's zraft_backend).

A backend is a plain object; the StateMachine calls it. Rules:

- Determinism. ``apply``, ``apply_in_session`` and ``expire_session`` must depend only on the
  backend's state and their arguments (no clocks, randomness, I/O or dict-order tricks):
  every replica applies the same commands in the same order and must end in the same state
  with the same results.
- Values, not exceptions. A result (``"ok"``, a value, a failure description) is returned.
  Raise ``BadCommand`` for a command or query the backend does not understand; the machine
  answers ``"bad_command: <its message>"`` (clients raise ``zraft.BadCommand``), so the
  message must be deterministic too. Any other exception becomes
  ``"backend_error: <TypeName>"``; the state must then be unchanged or changed
  deterministically (same on every replica).
- Commands and queries arrive msgpack-decoded: arrays are lists, the missing marker is
  ``NOT_FOUND``, ``str`` and ``bytes`` differ. Results must be msgpack-encodable.
- Lifecycle: ``init(peer_id)`` once, first. ``install_snapshot`` may follow at any time and
  replaces the whole state (start-up from a snapshot, or a snapshot received from the leader).

Threading: every method is called from one thread, the state machine's, one call at a time,
except the ``write`` callable of an *async* ``SnapshotJob``, which runs on another thread
while ``apply`` keeps being called. ``snapshot()`` must therefore hand that callable an
immutable view (a copy, or copy-on-write) and never let it touch live state. A *sync* job's
``write`` runs on the state machine's thread before any further apply. Exactly one of
``snapshot_done()`` / ``snapshot_failed(reason)`` follows each ``snapshot()``, on the state
machine's thread; at most one snapshot is in progress at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable


class BadCommand(ValueError):
    """Raised by a backend for a command or query it does not understand."""


class SnapshotCorrupted(ValueError):
    """Raised by ``install_snapshot`` when the snapshot files are missing or damaged."""


class QueryResult(NamedTuple):
    """A query answer that can be watched.

    ``watch_keys``: keys whose next change fires the watch (zraft_lib's WatchKeys).
    ``watch_prefixes``: key prefixes; a change to any key starting with one fires the watch
    (lets a "list" query notice new keys). A plain (non-QueryResult) answer cannot be watched.
    """

    value: Any
    watch_keys: tuple[Hashable, ...] = ()
    watch_prefixes: tuple[str | bytes, ...] = ()


class ApplyResult(NamedTuple):
    """A write result plus the keys it changed (each fires the watches registered on it)."""

    result: Any
    trigger_keys: tuple[Hashable, ...] = ()


class SnapshotJob(NamedTuple):
    """What ``snapshot()`` hands back.

    ``mode`` is ``"sync"`` (``write`` runs on the state machine's thread, applies wait) or
    ``"async"`` (``write`` runs on another thread while applies continue). ``write(directory)``
    creates the backend's files inside the given, existing, empty directory and returns
    nothing; raising means the snapshot failed.
    """

    mode: Literal["sync", "async"]
    write: Callable[[Path], None]


@runtime_checkable
class Backend(Protocol):
    """zraft_lib's zraft_backend behaviour, in Python. See the module docstring for rules."""

    def init(self, peer_id: str) -> None:
        """Start empty. Called once, before anything else (zraft_lib ``init/1``)."""

    def query(self, query: Any) -> Any | QueryResult:
        """Answer a read: a value, or a ``QueryResult`` carrying watch keys."""

    def apply(self, command: Any) -> Any | ApplyResult:
        """Apply a committed write (zraft_lib ``apply_data/2``)."""

    def apply_in_session(self, command: Any, session_id: str) -> Any | ApplyResult:
        """Apply a committed temporary write: data it creates is owned by ``session_id`` and
        must vanish on ``expire_session(session_id)`` (zraft_lib ``apply_data/3``)."""

    def expire_session(self, session_id: str) -> Iterable[Hashable]:
        """Delete the data owned by the session; return the deleted keys (they fire watches)."""

    def snapshot(self) -> SnapshotJob:
        """Start a snapshot of the current state (see ``SnapshotJob``)."""

    def snapshot_done(self) -> None:
        """The last snapshot is complete and durable."""

    def snapshot_failed(self, reason: str) -> None:
        """The last snapshot failed; its files are discarded."""

    def install_snapshot(self, directory: Path) -> None:
        """Replace the whole state by the one written into ``directory`` by a snapshot job.

        Raise ``SnapshotCorrupted`` if the files are missing or damaged.
        """


def reraise_interrupt(exc: BaseException) -> None:
    """Re-raise ``exc`` if it is a Ctrl-C meant for this process (``KeyboardInterrupt`` in
    the main thread, as in the simulator). Whatever else a backend's code raises, also a
    ``BaseException`` such as ``SystemExit`` from ``sys.exit()``, is the backend's error:
    let through, it would end the state machine's actor, and Pykka stops every actor of
    the process (the node's other groups too) on a ``BaseException``."""
    if isinstance(exc, KeyboardInterrupt) and threading.current_thread() is \
            threading.main_thread():
        raise exc


__all__ = [
    "ApplyResult",
    "Backend",
    "BadCommand",
    "QueryResult",
    "SnapshotCorrupted",
    "SnapshotJob",
]
