"""ObjectBackend: any replicated class (``zraft.objects.methods``) as a zraft Backend.

The node's backend registry wraps a class with ``@replicated`` / ``@query`` methods in this
adapter, so the class itself needs no Backend code.

Rules:
- ``apply`` / ``apply_in_session`` run a command, ``query`` a query: ``decode_call``, then
  the method by name, then the arguments bound to its signature. An unknown name, a query
  sent as a command (or the reverse), a session method without a session, or arguments
  that do not bind are ``BadCommand`` before the method runs: every replica refuses the
  same call with the same message and nothing changes. A method may raise ``BadCommand``
  itself (``zraft.BadCommand`` or ``zraft.fsm.BadCommand``) to refuse a call; it must then
  leave the object unchanged. Any other exception becomes ``backend_error`` (the method
  must leave the object in a state that is the same on every replica).
- A result must be packable (``TypeError`` -> ``backend_error`` otherwise).
- A callable query (in-process ``query_local`` only, e.g. on an embedded node) gets the
  live object: it must only read, and must not keep it.
- Snapshots: ``zraft.objects.state``. The state is packed on the state machine's thread
  when the snapshot starts (a consistent copy); only writing the bytes runs on the
  snapshot thread. A state that is not msgpack-clean fails that snapshot with a message
  naming the attribute (logged; the next snapshot tries again).
- ``expire_session(sid)`` calls the object's ``on_session_expired(sid)`` if it has one.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

from zraft.errors import BadCommand as ClientBadCommand
from zraft.fsm.backend import BadCommand, SnapshotJob
from zraft.objects import state as object_state
from zraft.objects.calls import decode_call, unknown_method
from zraft.objects.methods import COMMAND, QUERY, SESSION_HOOK, backend_name, methods_of

log = logging.getLogger(__name__)


class ObjectBackend:
    """A Backend around one instance of a replicated class."""

    def __init__(self, cls: type, name: str | None = None) -> None:
        self.cls = cls
        self.owner = cls.__qualname__
        self.name = name or _name_of(cls)  # recorded in snapshots, for diagnosis
        self.methods = methods_of(cls)
        object_state.state_version(cls)  # a bad declaration fails at load, not at snapshot
        self.obj: Any = cls()
        self.peer_id: str | None = None

    # ---------------------------------------------------------------- Backend

    def init(self, peer_id: str) -> None:
        self.peer_id = peer_id

    def apply(self, command: Any) -> Any:
        return self._run(command, COMMAND, None)

    def apply_in_session(self, command: Any, session_id: str) -> Any:
        return self._run(command, COMMAND, session_id)

    def query(self, query: Any) -> Any:
        if callable(query):
            return query(self.obj)
        return self._run(query, QUERY, None)

    def expire_session(self, session_id: str) -> Iterable[Hashable]:
        hook = getattr(self.obj, SESSION_HOOK, None)
        if callable(hook):
            hook(session_id)
        return ()

    def snapshot(self) -> SnapshotJob:
        try:
            payload = object_state.encode(self.obj, self.name)
        except object_state.StateNotClean as exc:
            log.error("%s", exc)
            message = str(exc)

            def fail(directory: Path) -> None:
                raise object_state.StateNotClean(message)

            return SnapshotJob("sync", fail)
        return SnapshotJob("async", lambda directory: object_state.write(directory, payload))

    def snapshot_done(self) -> None:
        pass

    def snapshot_failed(self, reason: str) -> None:
        pass

    def install_snapshot(self, directory: Path) -> None:
        self.obj = object_state.restore(self.cls, directory)

    # ---------------------------------------------------------------- dispatch

    def _run(self, raw: Any, kind: str, session: str | None) -> Any:
        name, args, kwargs = decode_call(raw)
        spec = self.methods.get(name)
        if spec is None:
            raise unknown_method(self.owner, name)
        where = f"{self.owner}.{name}"
        if spec.kind != kind:
            raise BadCommand(f"{where} is a {spec.kind}, not a {kind}")
        if spec.session:
            if session is None:
                raise BadCommand(f"{where} needs the caller's session (a temporary write "
                                 "of a Session; an object handle sends it so)")
            args = [session, *args]
        try:
            bound = spec.signature.bind(self.obj, *args, **kwargs)
        except TypeError as exc:
            raise BadCommand(f"{where}(): {str(exc)[:160]}") from None
        try:
            result = spec.function(*bound.args, **bound.kwargs)
        except ClientBadCommand as exc:  # zraft.BadCommand: the same refusal
            raise BadCommand("" if str(exc) == exc.code else str(exc)) from None
        object_state.check_result(where, result)
        return result

    # ---------------------------------------------------------------- tools

    def temporary_count(self) -> int | None:
        """Session-owned items, if the object counts them (shown in ``stat``)."""
        count = getattr(self.obj, "zraft_temporary_count", None)
        return count() if callable(count) else None


def _name_of(cls: type) -> str:
    try:
        return backend_name(cls)
    except TypeError:  # a class made in a function: usable in process, not by a node
        return f"{cls.__module__}:{cls.__qualname__}"


__all__ = ["ObjectBackend"]
