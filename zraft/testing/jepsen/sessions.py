"""Session checks inside a Jepsen run: temporary data lives exactly as long as its session,
and session writes apply exactly once.

Rules:
- One probe thread runs sessions one after another (``zraft.client.session.Session``, short
  ``session_timeout`` so faults make some expire on their own). Each session puts one
  temporary key ``e.<sid>``, then alternates exactly-once session writes of unique values to
  its own register key with plain single-attempt reads of both keys.
- The session writes and the plain reads of the register key go into the run's History, so
  the linearizability checker sees a session write applied twice (an old value read after a
  newer one was acknowledged) as a violation.
- Temporary data checks (per session whose temporary put was acknowledged):
  ``vanished_while_alive``: a read found ``e.<sid>`` absent and a later session write (invoked
  after that read completed) was still acknowledged, so the session was alive without its key.
  ``survived_expiry``: after the session was closed (or reported EXPIRED) the key did not
  disappear within ``session_timeout + grace`` seconds of the later of that moment and the
  nemesis's last action (a new leader renews every session), or it came back after being
  seen gone.
- The commands come from a ``Dialect``: ``DictDialect`` (the register run: ``put``/``get``
  on the dict backend) or ``bank_sessions.SqlDialect`` (the bank run: rows of a key-value
  table on the sqlite backend).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pykka

from zraft.client.connection import ConnectionPool
from zraft.client.session import Session
from zraft.client.watcher import SessionState
from zraft.errors import ZRaftError
from zraft.testing.jepsen.history import OK, READ, UNKNOWN, WRITE, History
from zraft.testing.jepsen.nemesis import Topology
from zraft.testing.jepsen.workload import call, classify, client_tls


@dataclass
class EphemeralRead:
    invoke: float
    complete: float
    present: bool


@dataclass
class SessionRecord:
    sid: str
    put_ok: bool = False
    expired_at: float | None = None  # client learnt it expired (or its close was answered)
    reads: list[EphemeralRead] = field(default_factory=list)
    write_ok_invokes: list[float] = field(default_factory=list)
    gone_within_bound: bool | None = None
    reappeared: bool = False


class DictDialect:
    """The probe's commands on the dict backend."""

    def put(self, key: str, value: Any) -> Any:
        return ["put", key, value]

    def get(self, key: str) -> Any:
        return ["get", key]

    def value(self, payload: Any) -> Any:
        """The value a read answered (None: absent)."""
        return payload


class SessionProbe:
    def __init__(self, topo: Topology, cookie: bytes, history: History, seed: int,
                 session_timeout: float = 3.0, grace: float = 10.0,
                 tls: dict[str, str] | None = None, dialect: Any = None) -> None:
        self.dialect = dialect or DictDialect()
        self.topo = topo
        self.cookie = cookie
        self.history = history
        self.rng = random.Random(seed)
        self.session_timeout = session_timeout
        self.grace = grace
        self.pool = ConnectionPool(cookie, client_id=f"jepsen-probe-{seed}",
                                   tls=client_tls(tls))
        self.stop_event = threading.Event()
        self.sessions: list[SessionRecord] = []
        self.checks: dict[str, int] = {"sessions": 0, "start_failed": 0, "expired_early": 0,
                                       "ephemeral_reads": 0, "session_writes": 0}
        self.thread = threading.Thread(target=self.run, daemon=True, name="jepsen-sessions")
        self.seq = 0
        self.turn = 0

    def start(self) -> SessionProbe:
        self.thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)
        self.pool.close()

    # -- plain single-attempt reads --------------------------------------------------------

    def read(self, key: str) -> tuple[str, Any, float, float]:
        """(outcome, value, invoke, complete) of one read on the next member."""
        peers = self.topo.member_peers()
        self.turn += 1
        peer = peers[self.turn % len(peers)]
        invoke = time.monotonic()
        status, payload = call(self.pool, peer, "query",
                               [peer.partition("@")[0], self.dialect.get(key), None, None], 2.0)
        outcome, value = classify(READ, status, payload)
        if outcome == OK:
            value = self.dialect.value(value)
        return outcome, value, invoke, time.monotonic()

    def read_until_ok(self, key: str, deadline: float) -> tuple[Any, float, float] | None:
        while time.monotonic() < deadline:
            outcome, value, invoke, complete = self.read(key)
            if outcome == OK:
                return value, invoke, complete
        return None

    # -- the probe loop --------------------------------------------------------------------

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.one_session()
            except (ZRaftError, pykka.ActorDeadError, pykka.Timeout) as exc:
                self.checks["start_failed"] += 1
                self.topo.record(f"session probe: {type(exc).__name__}: {exc}")
                self.stop_event.wait(0.2)

    def one_session(self) -> None:
        expired = threading.Event()
        expired_at: list[float] = []

        def listener(state: SessionState) -> None:
            if state == SessionState.EXPIRED and not expired.is_set():
                expired_at.append(time.monotonic())
                expired.set()

        session = Session.start(self.topo.member_peers(), self.session_timeout,
                                pool=self.pool,  # the probe's (its TLS, if any)
                                listeners=[listener],
                                fail_timeout=0.5, election_timeout=0.3)
        rec = SessionRecord(session.sid)
        self.sessions.append(rec)
        self.checks["sessions"] += 1
        ekey, rkey = f"e.{session.sid}", f"sk.{session.sid}"
        try:
            try:
                session.write_sync(self.dialect.put(ekey, session.sid), temporary=True,
                                   timeout=5.0)
                rec.put_ok = True
            except (ZRaftError, pykka.Timeout):
                pass
            for _ in range(self.rng.randrange(5, 30)):
                if self.stop_event.is_set() or expired.is_set():
                    break
                self.session_write(session, rkey, rec)
                outcome, value, invoke, complete = self.read(ekey)
                if outcome == OK:
                    self.checks["ephemeral_reads"] += 1
                    rec.reads.append(EphemeralRead(invoke, complete, value is not None))
                op = self.history.invoke(f"sr:{session.sid}", READ, rkey)
                outcome, value, _, _ = self.read(rkey)
                History.complete(op, outcome, value)
        finally:
            if expired.is_set():
                self.checks["expired_early"] += 1
            session.stop(timeout=5.0)
            rec.expired_at = expired_at[0] if expired_at else time.monotonic()
        self.check_gone(ekey, rec)

    def session_write(self, session: Session, key: str, rec: SessionRecord) -> None:
        self.seq += 1
        value = 2 * 10**12 + self.seq
        op = self.history.invoke(f"s:{session.sid}", WRITE, key, value)
        try:
            session.write_sync(self.dialect.put(key, value), timeout=3.0)
        except (ZRaftError, pykka.Timeout) as exc:
            History.complete(op, UNKNOWN, None, type(exc).__name__)
            return
        History.complete(op, OK, "ok")
        rec.write_ok_invokes.append(op.invoke)
        self.checks["session_writes"] += 1

    def gone_deadline(self, rec: SessionRecord) -> float:
        """The key must be gone ``session_timeout + grace`` after the later of the session's
        end and the last fault: a new leader renews every session, so a session's clock
        runs only while one leader stays (faults that keep killing leaders delay expiry,
        by design, and unavailability is not a violation)."""
        assert rec.expired_at is not None
        start = max(rec.expired_at, self.topo.last_disturbance())
        return start + self.session_timeout + self.grace

    def check_gone(self, key: str, rec: SessionRecord) -> None:
        """After expiry: absent within the bound, then absent on the next read too."""
        gone_seen = False
        while time.monotonic() < self.gone_deadline(rec):
            got = self.read_until_ok(key, self.gone_deadline(rec))
            if got is None:
                continue  # no answer before the deadline: the loop re-checks it
            if got[0] is None:
                gone_seen = True
                break
            self.stop_event.wait(0.05)  # poll the replica until the expiry is applied
        rec.gone_within_bound = gone_seen
        if gone_seen:
            again = self.read_until_ok(key, time.monotonic() + 5.0)
            rec.reappeared = again is not None and again[0] is not None

    # -- verdicts --------------------------------------------------------------------------

    def violations(self, _ops: Any = None) -> list[str]:
        out = []
        for rec in self.sessions:
            if rec.put_ok:
                for r in rec.reads:
                    if not r.present and any(t > r.complete for t in rec.write_ok_invokes):
                        out.append(f"session {rec.sid}: temporary key absent at "
                                   f"{r.complete:.3f} while a later session write succeeded")
                        break
            if rec.gone_within_bound is False:
                out.append(f"session {rec.sid}: temporary key still present "
                           f"{self.session_timeout + self.grace:.0f}s after expiry "
                           f"(and after the last fault)")
            if rec.reappeared:
                out.append(f"session {rec.sid}: temporary key came back after expiry")
        return out


__all__ = ["DictDialect", "SessionProbe"]
