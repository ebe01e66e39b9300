"""A scenario: the committed log every replica applies, and the reads answered along it.

Built from the user's operations (``("write", payload)`` / ``("query", query)``) and a seed,
the way a cluster would have committed them: writes become plain writes, session writes or
temporary (session-owned) writes of a few client sessions that connect, ping, retry a write
(answered from the session's cache, or refused as a duplicate once acknowledged), close,
and expire when the leader's clock jumps past their timeout (the leader's expiry check
entries included); leaders change (a new term starts with a NOOP carrying the previous
entry's time; the first DATA entry of a term renews every session). Entry times never go
backwards. A shadow ``StateMachine`` over a do-nothing backend follows the log as it is
built, so the clients react to what a cluster would tell them (a refused write means an
expired session: the client starts a new one).

Each query is answered after a given entry by replica n1 (the reference) and by one other
replica: a real read runs on the leader only, so a query that changes the state leaves the
replicas that answered it different from the ones that did not.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from zraft.core.entries import DATA, NOOP, Entry
from zraft.fsm import commands as cmd
from zraft.fsm.backend import SnapshotJob
from zraft.fsm.codec import packb, unpackb
from zraft.fsm.machine import SESSION_EXPIRED, StateMachine
from zraft.saferepr import safe_repr

WRITE = "write"
QUERY = "query"
KINDS = (WRITE, QUERY)
_CLIENTS = 3
_TIMEOUTS_MS = (300, 1000, 5000)
_START_MS = 1_000_000
_PROBE_QUERIES = 12


class GeneratorError(ValueError):
    """The command generator gave something that is not an operation."""


class Query(NamedTuple):
    after: int  # answered once entries up to this index are applied
    qid: int
    query: Any
    second: int  # the other replica (1 or 2) that answers it


class Scenario(NamedTuple):
    entries: list[Entry]
    queries: list[Query]
    probe_queries: list[Any]  # distinct queries, asked again after each restore

    def to_wire(self) -> list[Any]:
        return [[list(e) for e in self.entries], [list(q) for q in self.queries],
                self.probe_queries]

    @staticmethod
    def from_wire(raw: Any) -> Scenario:
        entries, queries, probes = raw
        return Scenario([Entry(*e) for e in entries], [Query(*q) for q in queries], probes)


def check_op(op: Any) -> tuple[str, Any]:
    """``op`` as ``(kind, value)``; raises GeneratorError with the reason."""
    if not isinstance(op, (tuple, list)) or len(op) != 2 or op[0] not in KINDS:
        raise GeneratorError(
            "a command generator must give ('write', payload) or ('query', query), not "
            f"{safe_repr(op)}")
    try:
        packb(op[1])
    except Exception as exc:
        raise GeneratorError(f"the generator gave a {op[0]} msgpack cannot encode "
                             f"({type(exc).__name__}): {safe_repr(op[1])}") from None
    return op[0], op[1]


class _Null:
    """The shadow machine's backend: accepts everything, keeps nothing."""

    def init(self, peer_id: str) -> None:
        pass

    def query(self, query: Any) -> Any:
        return None

    def apply(self, command: Any) -> Any:
        return "ok"

    def apply_in_session(self, command: Any, session_id: str) -> Any:
        return "ok"

    def expire_session(self, session_id: str) -> list[Any]:
        return []

    def snapshot(self) -> SnapshotJob:
        return SnapshotJob("sync", lambda directory: None)

    def snapshot_done(self) -> None:
        pass

    def snapshot_failed(self, reason: str) -> None:
        pass

    def install_snapshot(self, directory: Any) -> None:
        pass


class _Client:
    def __init__(self, number: int) -> None:
        self.number = number
        self.incarnation = 0
        self.sid = ""
        self.connected = False
        self.next_msg = 1
        self.sent: list[bytes] = []  # session writes sent in this incarnation, for retries


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed ^ 0x5CE4A210)
        self.entries: list[Entry] = []
        self.queries: list[Query] = []
        self.time = _START_MS
        self.term = 1
        self.shadow = StateMachine(_Null(), "shadow")
        self.clients = [_Client(n) for n in range(1, _CLIENTS + 1)]
        self.by_sid: dict[str, _Client] = {}
        self.append(None)  # the first leader's NOOP

    def append(self, data: bytes | None) -> None:
        entry = Entry(len(self.entries) + 1, self.term, DATA if data is not None else NOOP,
                      data, self.time)
        self.entries.append(entry)
        batch = self.shadow.apply([entry])
        for event in batch.events:
            client = self.by_sid.get(event.sid)
            if client is not None:
                client.connected = False
        for reply in batch.replies:
            self._answered(entry, reply.error)

    def _answered(self, entry: Entry, error: str | None) -> None:
        raw = unpackb(entry.data)
        if raw[0] == cmd.CONNECT and error is None:
            self.by_sid[raw[1]].connected = True
        elif error == SESSION_EXPIRED and raw[0] in (cmd.SESSION_WRITE, cmd.PING):
            client = self.by_sid.get(raw[1])
            if client is not None:
                client.connected = False

    def background(self) -> None:
        rng = self.rng
        if rng.random() < 0.02:  # a new leader: its NOOP carries the previous entry's time
            self.term += 1
            self.append(None)
        r = rng.random()
        if r < 0.03:  # a long pause: sessions expire
            self.time += rng.randint(2 * max(_TIMEOUTS_MS), 4 * max(_TIMEOUTS_MS))
        elif r < 0.5:
            self.time += rng.choice((1, 5, 20, 100, 400))
        due = self.shadow.next_expiry()
        if due is not None and self.time >= due[0]:
            self.append(cmd.encode_expire_check(due[1]))
        if rng.random() < 0.15:
            self.session_event(rng.choice(self.clients))

    def session_event(self, client: _Client) -> None:
        rng = self.rng
        if not client.connected:
            client.incarnation += 1
            client.sid = f"c{client.number}-{client.incarnation}"
            client.next_msg, client.sent = 1, []
            self.by_sid[client.sid] = client
            self.append(cmd.encode_connect(client.sid, rng.choice(_TIMEOUTS_MS)))
        elif rng.random() < 0.1:
            self.append(cmd.encode_close(client.sid))
            client.connected = False
        else:
            self.append(cmd.encode_ping(client.sid, client.next_msg - 1))

    def write(self, payload: Any) -> None:
        rng = self.rng
        live = [c for c in self.clients if c.connected]
        mode = rng.random()
        if not live or mode < 0.45:
            self.append(cmd.encode_write(payload))
            return
        client = rng.choice(live)
        if client.sent and rng.random() < 0.08:
            # a client retries an earlier write (its reply was lost): the same bytes again
            self.append(rng.choice(client.sent))
            return
        msg = client.next_msg
        client.next_msg += 1
        data = cmd.encode_session_write(client.sid, msg, msg - 1, payload, mode >= 0.8)
        client.sent = [*client.sent[-4:], data]
        self.append(data)

    def query(self, query: Any) -> None:
        self.queries.append(Query(len(self.entries), len(self.queries), query,
                                  self.rng.choice((1, 2))))


def build(ops: Iterable[Any], seed: int) -> Scenario:
    """The scenario of ``ops`` (each checked with ``check_op``) under ``seed``."""
    builder = _Builder(seed)
    for op in ops:
        kind, value = check_op(op)
        builder.background()
        if kind == WRITE:
            builder.write(value)
        else:
            builder.query(value)
    builder.background()
    probes: list[Any] = []
    seen: set[bytes] = set()
    for q in builder.queries:
        key = packb(q.query)
        if key not in seen and len(probes) < _PROBE_QUERIES:
            seen.add(key)
            probes.append(q.query)
    return Scenario(builder.entries, builder.queries, probes)


def generate(gen: Callable[[random.Random], Any], steps: int, seed: int) -> list[Any]:
    """``steps`` operations from a ``gen(rng)`` function, reproducibly from ``seed``."""
    rng = random.Random(seed)
    return [gen(rng) for _ in range(steps)]


def describe_entry(entry: Entry) -> str:
    """One line for a report: what the entry is, its term and time."""
    where = f"log entry {entry.index} (term {entry.term}, time {entry.time} ms)"
    if entry.type != DATA:
        return f"{where}: a new leader's NOOP"
    raw = unpackb(entry.data)
    code = raw[0]
    if code == cmd.WRITE:
        return f"{where}: plain write {safe_repr(raw[1])}"
    if code == cmd.SESSION_WRITE:
        _, sid, msg, acc, temporary, payload = raw
        kind = "temporary session write" if temporary else "session write"
        return f"{where}: {kind} {safe_repr(payload)} (session {sid}, msg {msg}, acked {acc})"
    if code == cmd.CONNECT:
        return f"{where}: session {raw[1]} connects (timeout {raw[2]} ms)"
    if code == cmd.PING:
        return f"{where}: session {raw[1]} pings"
    if code == cmd.CLOSE:
        return f"{where}: session {raw[1]} closes (its temporary data goes)"
    return f"{where}: the leader's expiry check of session {raw[1]}"


__all__ = ["KINDS", "QUERY", "WRITE", "GeneratorError", "Query", "Scenario", "build",
           "check_op", "describe_entry", "generate"]
