"""Probe: wraps the backend under test, between it and the real ``StateMachine``.

The state machine calls the probe exactly as it would call the backend; the probe runs
each call in the replica's surroundings (``env``), passes the answer through unchanged and
records what the backend did, so replicas can be compared call by call:

- per log entry (``tag``, set by the replica runner before the machine processes the
  entry): every ``apply`` / ``apply_in_session`` / ``expire_session`` with its result and
  trigger keys as msgpack bytes, or the exception it raised (``BadCommand`` with its
  message, anything else by type name: that is all a client sees);
- the raw answer of the last ``query`` (value, watch keys, watch prefixes);
- what each call read from its surroundings (clock, random, urandom), for the report.

It also finds, at the call: a command or query mutated by the backend; a result, answer or
trigger key that msgpack cannot encode (it could never reach a client or a snapshot); a
trigger key that cannot be made hashable (its watch could never fire); a ``snapshot()``
answer that is not a ``SnapshotJob``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, NamedTuple

from zraft.fsm.backend import ApplyResult, BadCommand, QueryResult, SnapshotJob
from zraft.fsm.codec import hashable, packb
from zraft.saferepr import safe_repr
from zraft.testing.check_backend.env import Surroundings

# finding kinds
MUTATED_INPUT = "mutated_input"
NOT_MSGPACK = "not_msgpack"
BAD_SNAPSHOT_JOB = "bad_snapshot_job"


class Finding(NamedTuple):
    """A rule broken by one replica, found without comparing replicas."""

    key: tuple[int, int, int]  # (entry index, phase, sub): the order of the run
    kind: str
    message: str


class Call(NamedTuple):
    """One backend call made while applying a log entry."""

    method: str
    detail: bytes  # msgpack of what a replica must agree on
    reads: tuple[tuple[str, int], ...]  # what it read from its surroundings (not compared)


def pack(value: Any) -> bytes | None:
    """msgpack bytes of ``value``, or None if msgpack cannot encode it."""
    try:
        return packb(value)
    except Exception:
        return None


def pack_keys(keys: list[Any]) -> bytes | None:
    """Keys that fire watches, as msgpack, in a canonical order: they are a set (each fires
    its watches), so replicas may list them in any order."""
    packed = [pack(key) for key in keys]
    if any(p is None for p in packed):
        return None
    return pack(sorted(keys, key=pack))


def _exc_detail(exc: BaseException) -> list[Any]:
    if isinstance(exc, BadCommand):
        return ["raised BadCommand", str(exc)[:200]]
    return ["raised", type(exc).__name__]


class Probe:
    """The backend as the state machine sees it (see the module docstring)."""

    def __init__(self, backend: Any, env: Surroundings, findings: list[Finding]) -> None:
        self._backend = backend
        self._env = env
        self._findings = findings
        self.tag: tuple[int, int, int] = (0, 0, 0)
        self.calls: dict[int, list[Call]] = {}
        self.last_query: bytes | None = None
        self.last_query_reads: tuple[tuple[str, int], ...] = ()

    def __getattr__(self, name: str) -> Any:  # e.g. temporary_count, read by stats()
        return getattr(self._backend, name)

    @property
    def backend(self) -> Any:
        return self._backend

    def _find(self, kind: str, message: str) -> None:
        self._findings.append(Finding(self.tag, kind, message))

    def _run(self, method: Callable[..., Any], *args: Any) -> tuple[Any, tuple[Any, ...]]:
        with self._env.active() as reads:
            answer = method(*args)
        return answer, tuple(sorted(reads.items()))

    # ---------------------------------------------------------------- lifecycle

    def init(self, peer_id: str) -> None:
        self._run(self._backend.init, peer_id)

    # ---------------------------------------------------------------- writes

    def apply(self, command: Any) -> Any:
        return self._write("apply", self._backend.apply, command)

    def apply_in_session(self, command: Any, session_id: str) -> Any:
        return self._write("apply_in_session", self._backend.apply_in_session, command,
                           session_id)

    def _write(self, name: str, method: Callable[..., Any], command: Any, *rest: Any) -> Any:
        before = packb(command)
        try:
            answer, reads = self._run(method, command, *rest)
        except BaseException as exc:
            self._record(name, [*_exc_detail(exc), *rest], ())
            self._check_unchanged(name, "command", command, before)
            raise
        self._check_unchanged(name, "command", command, before)
        result, triggers = (answer.result, answer.trigger_keys) if isinstance(
            answer, ApplyResult) else (answer, ())
        packed = pack(result)
        if packed is None:
            self._find(NOT_MSGPACK, f"{name} returned a result msgpack cannot encode: "
                       f"{safe_repr(result)} (a client could never receive it)")
        packed_triggers = self._check_triggers(name, triggers)
        self._record(name, [packed, packed_triggers, *rest], reads)
        return answer

    def _check_triggers(self, name: str, triggers: Any) -> bytes | None:
        try:
            keys = list(triggers)
        except TypeError:
            self._find(NOT_MSGPACK, f"{name}: trigger_keys is not iterable: "
                       f"{safe_repr(triggers)}")
            return None
        for key in keys:
            try:
                hashable(key)
            except TypeError:
                self._find(NOT_MSGPACK, f"{name} gave the trigger key {safe_repr(key)}, which "
                           "cannot be made hashable: its watches could never fire")
        packed = pack_keys(keys)
        if packed is None:
            self._find(NOT_MSGPACK, f"{name} gave trigger keys msgpack cannot encode: "
                       f"{safe_repr(keys)}")
        return packed

    def expire_session(self, session_id: str) -> list[Hashable]:
        try:
            answer, reads = self._run(lambda sid: list(self._backend.expire_session(sid)),
                                      session_id)
        except BaseException as exc:
            self._record("expire_session", [*_exc_detail(exc), session_id], ())
            raise
        self._record("expire_session", [pack_keys(answer), session_id], reads)
        return answer

    def _record(self, method: str, detail: list[Any], reads: tuple[Any, ...]) -> None:
        self.calls.setdefault(self.tag[0], []).append(Call(method, packb(detail), reads))

    def _check_unchanged(self, name: str, what: str, value: Any, before: bytes) -> None:
        after = pack(value)
        if after != before:
            self._find(MUTATED_INPUT, f"{name} mutated its {what}: it arrived as "
                       f"{safe_repr(_unpack(before))} and was left as {safe_repr(value)} "
                       "(treat commands as read-only; copy what you keep)")

    # ---------------------------------------------------------------- reads

    def query(self, query: Any) -> Any:
        before = pack(query)
        self.last_query, self.last_query_reads = None, ()
        try:
            answer, reads = self._run(self._backend.query, query)
        except BaseException as exc:
            self.last_query = packb(_exc_detail(exc))
            if before is not None:
                self._check_unchanged("query", "query", query, before)
            raise
        if before is not None:
            self._check_unchanged("query", "query", query, before)
        if isinstance(answer, QueryResult):
            detail = [answer.value, list(answer.watch_keys), list(answer.watch_prefixes)]
        else:
            detail = [answer]
        packed = pack(detail)
        if packed is None:
            self._find(NOT_MSGPACK, f"query {safe_repr(query)} answered a value msgpack cannot "
                       f"encode: {safe_repr(detail[0])}")
            packed = packb(["unencodable", type(detail[0]).__name__])
        self.last_query, self.last_query_reads = packed, reads
        return answer

    # ---------------------------------------------------------------- snapshots

    def snapshot(self) -> SnapshotJob:
        job, _ = self._run(self._backend.snapshot)
        mode, write = getattr(job, "mode", None), getattr(job, "write", None)
        if mode not in ("sync", "async") or not callable(write):
            self._find(BAD_SNAPSHOT_JOB, "snapshot() must return SnapshotJob('sync' or "
                       f"'async', write), not {safe_repr(job)}")
            raise TypeError("snapshot() did not return a SnapshotJob")
        env = self._env

        def write_in_env(directory: Path) -> None:
            with env.active():
                write(directory)

        return SnapshotJob(mode, write_in_env)

    def snapshot_done(self) -> None:
        self._run(self._backend.snapshot_done)

    def snapshot_failed(self, reason: str) -> None:
        self._run(self._backend.snapshot_failed, reason)

    def install_snapshot(self, directory: Path) -> None:
        self._run(self._backend.install_snapshot, directory)


def _unpack(data: bytes) -> Any:
    from zraft.fsm.codec import unpackb

    return unpackb(data)


__all__ = ["BAD_SNAPSHOT_JOB", "MUTATED_INPUT", "NOT_MSGPACK", "Call", "Finding", "Probe",
           "pack", "pack_keys"]
