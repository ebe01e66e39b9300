"""RaftPeerActor: one Raft peer of a node. It owns a RaftCore and carries out its Ready.

Rules of this file:
1. No Raft decision is taken here; every "should I" question is the core's.
2. The hot path stays batched: one ClientBatch (one socket read) -> one propose call -> one
   Ready -> one WriteOps to the log writer and one AppendEntries per follower.
3. Group commit: at most one WriteOps is in flight; Ready batches produced meanwhile are
   merged and written together after the current fsync (so a slow disk means bigger
   batches, not a longer queue).
4. ``persisted_messages`` of a Ready leave only once every earlier write is durable: they
   ride on the WriteOps that covers them (the writer sends them after its fsync), or wait
   in ``_held`` for the Persisted of the write in flight.
5. The mailbox is drained before the core's Ready is: every message waiting in the inbox is
   stepped into the core first (up to ``_COALESCE_MAX``), so a burst of client frames and
   replies from followers becomes one Ready, one fsync and one AppendEntries per follower.

Theory of operation: inputs arrive as actor messages (Tick, RaftInbound, ClientBatch,
Persisted, SnapshotTaken, SnapshotArrived, SnapshotSendDone, ProposeInternal). Each handler
feeds the core and then drains ``core.ready()`` until the core has nothing more to say.
Committed entries and quorum-confirmed reads go to the StateMachineActor, which answers the
clients directly (their waiters travel with the Apply message), so no reply hops back here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import time
from collections import deque
from typing import Any

import pykka

from zraft.actors.backend_failure import BackendFailure
from zraft.actors.context import PeerContext
from zraft.actors.log_writer import LogWriterActor
from zraft.actors.messages import (
    Apply,
    BackendFailed,
    ChildFailed,
    ClientBatch,
    ClientRequest,
    InstallSnapshot,
    NodeSignal,
    Persisted,
    Probe,
    ProposeInternal,
    RaftInbound,
    Read,
    SetLeader,
    SnapshotArrived,
    SnapshotSendDone,
    SnapshotTaken,
    StorageFailed,
    Tick,
    WriteOps,
)
from zraft.actors.node_signals import apply_node_signal
from zraft.actors.pooled import PooledActor
from zraft.actors.state_machine import StateMachineActor
from zraft.actors.storage_failure import StorageFailure
from zraft.actors.ticker import TickClock, tell_or_skip
from zraft.core import messages as m
from zraft.core.errors import InvariantViolation, NotLeader, TransferInProgress
from zraft.core.raft import RaftCore
from zraft.errors import BackendError
from zraft.saferepr import exception_line, safe_repr

log = logging.getLogger(__name__)


class PeerRemovedError(Exception):
    """The peer was removed from its cluster; it must not be restarted."""


class RaftPeerActor(PooledActor):
    """Drives one RaftCore. Created by the node's supervisor, one per local peer."""

    dispatcher = "raft"  # the node's pool for Raft work (pooled.py); never blocks on I/O

    def __init__(self, ctx: PeerContext) -> None:
        super().__init__()
        self.ctx = ctx
        if ctx.pools:
            self.dispatcher = ctx.pools["raft"]
        self.peer_id = ctx.peer_id
        self.name = ctx.peer_name
        self.core: RaftCore | None = None
        self.writer: pykka.ActorRef[Any] | None = None
        self.sm: pykka.ActorRef[Any] | None = None
        # group commit
        self._write_inflight = False
        self._pending_ops: list[tuple[str, Any]] = []
        self._pending_number = 0
        self._last_write_number = 0
        self._durable_number = 0
        self._held: list[tuple[int, list[Any]]] = []  # (needed write number, messages)
        self._since_drain = 0
        # client bookkeeping
        self._waiters: dict[int, tuple[int, Any, int]] = {}  # index -> (term, conn, req_id)
        self._reads: dict[int, ClientRequest] = {}
        self._read_seq = 0
        self._ticks = 0
        # ticks against real time, delivered before any input; woken by the node's timer
        # only when the core has a tick due (ticker.py)
        self._clock: TickClock | None = None
        self._wake_at = float("inf")  # the deadline registered with the timer
        self._wake = tell_or_skip(self.actor_ref, _WAKE)
        self._role = "follower"
        self._leader: str | None = None
        self.removed = False
        # the log cannot be written, or the backend cannot run: the peer waits, answering
        # every request with the failure (storage_failure.py, backend_failure.py)
        self._failure: StorageFailure | BackendFailure | None = None
        self._alarms: dict[tuple[str, str], int] = {}  # (kind, sender) -> refused so far
        # metrics: (last index, perf_counter at propose, count) per proposed batch, oldest
        # first, until it commits (one entry per batch: the latency histogram's input)
        self.metrics = ctx.metrics
        self._proposed: deque[tuple[int, float, int]] = deque()

    # ---------------------------------------------------------------- lifecycle

    def on_start(self) -> None:
        self._start_internals()

    def _start_internals(self, discard_after: int | None = None) -> None:
        """Open (recover) the log, then build the core, the log writer and the state
        machine: at start, and again after a storage failure (``discard_after``: cut the
        log after this durable index, see storage_failure.py). A backend that cannot be
        loaded stops the peer before its log is even opened (backend_failure.py)."""
        ctx = self.ctx
        try:
            backend = ctx.make_backend()
        except Exception as exc:
            cause = str(exc) if isinstance(exc, BackendError) else exception_line(exc)
            self._backend_failed(f"backend {ctx.backend_name} cannot be loaded: {cause}")
            return
        storage = ctx.open_storage(discard_after)
        self.storage = storage  # on_stop closes it even if the rest of on_start fails
        if storage.meta.removed:
            raise PeerRemovedError(f"peer {self.peer_id} was removed from its cluster")
        seed = int.from_bytes(os.urandom(8), "big")
        if storage.damage:
            ctx.events.record("log_damaged", peer=self.peer_id, damage=storage.damage,
                              recovering=storage.meta.recovering)
        config = dataclasses.replace(ctx.core_config(), cluster_id=storage.meta.cluster_id)
        self.core = RaftCore(self.peer_id, storage, config, random.Random(seed))
        self._clock = TickClock(ctx.tick_ms, max_burst=3 * config.election_ticks,
                                base=ctx.timer.epoch if ctx.timer is not None else None)
        self.writer = LogWriterActor.start(storage, self.actor_ref, self.name, ctx.log_stats,
                                           ctx.send_raft, ctx.metrics,
                                           ctx.pools["io"] if ctx.pools else "io")
        self.sm = StateMachineActor.start(ctx, self.actor_ref, storage, backend)
        log.info("peer %s started: %s", self.peer_id, self._brief())
        self._drain()

    def on_stop(self) -> None:
        self._release()
        log.info("peer %s stopped", self.peer_id)

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # Never call on_stop from here: the supervisor's mixin wraps on_stop and would
        # report a normal exit, and a transient peer would not be restarted.
        self._release()
        self.ctx.report_failure(self.name, f"{exc_type.__name__}: {exc}")

    def _release(self) -> None:
        """Stop the helpers and close the log, whatever way this incarnation ends."""
        if self.ctx.timer is not None:
            self.ctx.timer.cancel(self.actor_urn)
            self._wake_at = float("inf")
        for child in (self.sm, self.writer):
            if child is not None and child.is_alive():
                child.stop(timeout=10)
        storage = getattr(self, "storage", None)
        if storage is not None:
            storage.close()
            self.storage = None

    # ---------------------------------------------------------------- storage failure

    def _on_storage_failed(self, msg: StorageFailed) -> None:
        """The log cannot be written: drop everything built on it and wait (see
        storage_failure.py); answer what was waiting, uncertain as a timeout."""
        self._failure = StorageFailure.begin(msg.reason, msg.durable)
        log.error("peer %s cannot write its log (%s): it stops taking part until a retry "
                  "succeeds", self.peer_id, msg.reason)
        self.ctx.events.record("storage_failed", peer=self.peer_id, error=msg.reason)
        note = {"message": f"{self._failure.message(self.peer_id)} (the write may or may "
                           "not have been applied)", "leader": self._other_leader()}
        for _term, conn, req_id in self._waiters.values():
            self.ctx.reply(conn, req_id, "storage_failed", note)
        for req in self._reads.values():
            self.ctx.reply(req.conn, req.req_id, "storage_failed", note)
        self._teardown()

    def _on_backend_failed(self, msg: BackendFailed) -> None:
        self._backend_failed(msg.reason)

    def _backend_failed(self, reason: str) -> None:
        """The backend cannot run: stop taking part, answer what waits, say so once on the
        node's stderr (see backend_failure.py)."""
        failure = self._failure = BackendFailure(reason)
        text = failure.message(self.peer_id)
        log.error("%s", text)
        self.ctx.backend_failed(self.name, text)
        note = {"message": text, "leader": self._other_leader()}
        for _term, conn, req_id in self._waiters.values():
            self.ctx.reply(conn, req_id, failure.code, note)
        for req in self._reads.values():
            self.ctx.reply(req.conn, req.req_id, failure.code, note)
        self._teardown()

    def _teardown(self) -> None:
        self._release()
        self.core = self.writer = self.sm = None
        self._waiters, self._reads = {}, {}
        self._pending_ops, self._held = [], []
        self._write_inflight = False
        self._pending_number = self._last_write_number = self._durable_number = 0
        self._role = "follower"
        self._clock = None
        self._wake_for_retry()

    _ALARM_HINTS = {
        "second_leader": "two leaders in one term cannot happen in a correct cluster",
        "foreign_cluster": "a node of another cluster (same peer ids): a node started on "
                           "another cluster's data, or a copied data directory",
    }

    def _safety_alarm(self, event: m.SafetyAlarm) -> None:
        """Log and record a refused message loudly, but not once per message: a
        misconfigured node keeps sending (1st, 10th, 100th, ... of each kind and sender)."""
        key = (event.kind, event.src)
        n = self._alarms[key] = self._alarms.get(key, 0) + 1
        if n not in (1, 10, 100, 1000) and n % 10000:
            return
        log.error("SAFETY ALARM peer %s: refused %s from %s in term %d (%s; %d so far): %s",
                  self.peer_id, event.kind, event.src, event.term, event.detail, n,
                  self._ALARM_HINTS.get(event.kind, ""))
        self.ctx.events.record("safety_alarm", peer=self.peer_id, alarm=event.kind,
                               src=event.src, term=event.term, detail=event.detail, count=n)

    def _other_leader(self) -> str | None:
        return self._leader if self._leader != self.peer_id else None

    def _receive_while_failed(self, message: Any) -> Any:
        failure = self._failure
        assert failure is not None
        if type(message) is Probe:
            return self.probe()
        if type(message) is Tick:
            self._wake_at = float("inf")
            if failure.due():
                self._retry_storage(failure)
        elif type(message) is ClientBatch:
            for req in message.requests:
                if req.op == "stat":
                    self.ctx.reply(req.conn, req.req_id, "ok", self.stat())
                else:
                    self.ctx.reply(req.conn, req.req_id, failure.code,
                                   {"message": failure.message(self.peer_id),
                                    "leader": self._other_leader()})
        # Raft messages, write acknowledgements and snapshot news are dropped: the core
        # they were for is gone, and a fresh one learns everything again.
        self._wake_for_retry()

    def _retry_storage(self, failure: StorageFailure | BackendFailure) -> None:
        assert isinstance(failure, StorageFailure)
        try:
            self._start_internals(discard_after=failure.durable)
        except Exception as exc:  # still cannot open or write it
            reason = f"[Errno {exc.errno}] {exc.strerror}" if isinstance(
                exc, OSError) and exc.errno else str(exc)
            failure.failed_again(reason)
            log.warning("peer %s: log still not writable (%s); next try in %.1fs",
                        self.peer_id, reason, failure.retry_s)
            self._teardown()
            return
        if self._failure is not failure:
            return  # the log opened, but the backend cannot be loaded now
        self._failure = None
        log.warning("peer %s: log writable again after %.1fs", self.peer_id,
                    time.monotonic() - failure.since)
        self.ctx.events.record("storage_recovered", peer=self.peer_id)

    # ---------------------------------------------------------------- dispatch

    def on_receive(self, message: Any) -> Any:
        if self._failure is not None:
            return self._receive_while_failed(message)
        clock = self._clock
        if clock is not None and (due := clock.due()):
            self._deliver_ticks(due)
        handler = self._handlers.get(type(message))
        if handler is None:
            log.warning("peer %s: unexpected message %r", self.peer_id, type(message))
            return None
        result = handler(self, message)
        self._since_drain += 1
        if type(message) is ClientBatch and self._write_inflight \
                and self._since_drain < _COALESCE_MAX:
            return result  # proposals wait for the fsync in flight: the next batch grows
        if self._since_drain >= _COALESCE_MAX or self.actor_inbox.empty():
            self._since_drain = 0
            self._drain()
        return result

    def _on_tick(self, msg: Tick) -> None:
        """A wake-up: the ticks it was due for were delivered by ``on_receive``."""
        self._wake_at = float("inf")  # the registered deadline fired (or a test ticked)

    def _deliver_ticks(self, n: int) -> None:
        core = self.core
        if core is None:
            return
        tick = core.tick
        for _ in range(n):
            tick()
        before, self._ticks = self._ticks, self._ticks + n
        # the state machine checks session expiry every 5th tick while we lead
        if self._role == "leader" and self._ticks // 5 != before // 5 and self.sm is not None:
            self.sm.tell(Tick(_now_ms()))

    def _arm(self) -> None:
        """Register our next due tick with the node's timer, if it moved earlier (a later
        one costs one early wake-up, which re-arms)."""
        core, clock = self.core, self._clock
        if core is None or clock is None or self.ctx.timer is None:
            return
        ticks = core.ticks_to_next_event()
        if self._role == "leader":
            ticks = min(ticks, 5 - self._ticks % 5)
        at = clock.at(ticks)
        if at < self._wake_at:
            self._wake_at = at
            self.ctx.timer.schedule(self.actor_urn, at, self._wake)

    def _wake_for_retry(self) -> None:
        """While the log cannot be written: be woken for the next retry (a backend that
        cannot run is never retried, so it is never woken)."""
        timer, failure = self.ctx.timer, self._failure
        if timer is None or not isinstance(failure, StorageFailure):
            return
        at = failure.next_retry
        if at < self._wake_at:
            self._wake_at = at
            timer.schedule(self.actor_urn, at, self._wake)

    def _on_inbound(self, msg: RaftInbound) -> None:
        assert self.core is not None
        step = self.core.step
        for raft_msg in msg.messages:
            step(raft_msg)

    def _on_client(self, msg: ClientBatch) -> None:
        """Each request in isolation: an unexpected exception answers its own request with
        ``error`` (logged) and never ends the peer, unless the core says its state broke a
        safety invariant (then a restart from disk is the only right answer)."""
        proposals: list[ClientRequest] = []
        for req in msg.requests:
            if req.op == "propose":
                proposals.append(req)
                continue
            try:
                self._client_op(req)
            except InvariantViolation:
                raise
            except Exception as exc:
                self._internal_error(req, exc)
        if proposals:
            self._propose(proposals)

    def _internal_error(self, req: ClientRequest, exc: Exception) -> None:
        log.error("peer %s: %s request %d failed: %s", self.peer_id, req.op, req.req_id,
                  type(exc).__name__, exc_info=exc)
        self.ctx.reply(req.conn, req.req_id, "error",
                       {"message": f"{req.op}: internal error ({type(exc).__name__})"})

    def _on_persisted(self, msg: Persisted) -> None:
        assert self.core is not None
        self._write_inflight = False
        self._durable_number = msg.number
        self.core.persisted(msg.number)
        if self._held:
            ready_now = [mm for need, mm in self._held if need <= msg.number]
            self._held = [(need, mm) for need, mm in self._held if need > msg.number]
            for batch in ready_now:
                self.ctx.send_raft(batch)
        if self._pending_ops:
            self._flush_writes()

    def _on_snapshot_taken(self, msg: SnapshotTaken) -> None:
        assert self.core is not None
        self.core.snapshot_taken(msg.index)

    def _on_snapshot_arrived(self, msg: SnapshotArrived) -> None:
        assert self.core is not None
        self._arrived_path = msg.path
        self.core.step(m.InstallSnapshot(msg.term, msg.src, self.peer_id, msg.meta, 0,
                                         msg.cluster))

    def _on_snapshot_send_done(self, msg: SnapshotSendDone) -> None:
        assert self.core is not None
        if not msg.ok:
            log.warning("peer %s: snapshot to %s failed: %s", self.peer_id, msg.peer, msg.reason)
            self.core.snapshot_failed(msg.peer)

    def _on_propose_internal(self, msg: ProposeInternal) -> None:
        assert self.core is not None
        with contextlib.suppress(NotLeader):  # leadership moved: the new leader checks
            self.core.propose(msg.commands, _now_ms())

    def _on_child_failed(self, msg: ChildFailed) -> None:
        raise RuntimeError(f"peer {self.peer_id}: helper {msg.name} failed: {msg.reason}")

    def _on_probe(self, _msg: Probe) -> dict[str, Any]:
        return self.probe()

    def _on_node_signal(self, msg: NodeSignal) -> None:
        """Quiescence: a node holding members of our group is unreachable or restarted."""
        assert self.core is not None
        apply_node_signal(self.core, msg.kind, msg.node)

    _handlers: dict[type, Any] = {
        Tick: _on_tick,
        RaftInbound: _on_inbound,
        ClientBatch: _on_client,
        Persisted: _on_persisted,
        SnapshotTaken: _on_snapshot_taken,
        SnapshotArrived: _on_snapshot_arrived,
        SnapshotSendDone: _on_snapshot_send_done,
        ProposeInternal: _on_propose_internal,
        ChildFailed: _on_child_failed,
        StorageFailed: _on_storage_failed,
        BackendFailed: _on_backend_failed,
        Probe: _on_probe,
        NodeSignal: _on_node_signal,
    }

    # ---------------------------------------------------------------- client ops

    def _propose(self, reqs: list[ClientRequest]) -> None:
        """Args were checked at the node's boundary (``zraft.node.requests``); the checks
        here are the defence behind it."""
        assert self.core is not None
        datas = []
        for req in reqs:
            args = req.args
            cmd = args[1] if len(args) > 1 else None
            sid = args[2] if len(args) > 2 else None
            if type(cmd) is not bytes or not (sid is None or type(sid) is str):
                self.ctx.reply(req.conn, req.req_id, "bad_request",
                               {"message": "propose: takes [peer_name, command bytes, sid]"})
                continue
            if sid is not None:
                self.ctx.sessions.register(self.name, sid, req.conn)
            datas.append(req)
        if not datas:
            return
        try:
            placed = self.core.propose([r.args[1] for r in datas], _now_ms())
        except TransferInProgress as exc:  # nothing appended: ask again (the next leader)
            for req in datas:
                self.ctx.reply(req.conn, req.req_id, "retry",
                               {"message": f"leadership transfer to {exc.target} in progress"})
            return
        except NotLeader as exc:
            self.metrics.proposals_refused += len(datas)
            for req in datas:
                self.ctx.reply(req.conn, req.req_id, "not_leader", {"leader": exc.leader})
            return
        except InvariantViolation:
            raise
        except Exception as exc:  # a core bug: these writes' fate is unknown, say so
            for req in datas:
                self._internal_error(req, exc)
            return
        waiters = self._waiters
        for req, (index, term) in zip(datas, placed, strict=True):
            waiters[index] = (term, req.conn, req.req_id)
        if placed:
            self.metrics.proposals += len(placed)
            proposed = self._proposed
            if len(proposed) >= _MAX_TIMED_BATCHES:  # a leader that cannot commit: keep
                proposed.popleft()  # timing the newest (the waiters say what is pending)
            proposed.append((placed[-1][0], time.perf_counter(), len(placed)))

    def _client_op(self, req: ClientRequest) -> None:
        assert self.core is not None
        op = req.op
        if op == "query" and "follower_local_reads" in self.ctx.mutations \
                and self._role != "leader":
            assert self.sm is not None  # mutation: a follower answers from its own state
            self.sm.tell(Read(0, [req._replace(op="query_local")]))
            return
        if op in ("query", "get_conf", "snapshot_save"):
            self._read_seq += 1
            ctx = self._read_seq
            self._reads[ctx] = req
            if op == "query" and len(req.args) > 2 and type(req.args[2]) is str:
                self.ctx.sessions.register(self.name, req.args[2], req.conn)
            self.core.read(ctx)
        elif op == "query_local":
            assert self.sm is not None
            self.sm.tell(Read(0, [req]))
        elif op == "set_conf":
            self._set_conf(req)
        elif op == "transfer_leader":
            self._transfer_leader(req)
        elif op == "stat":
            self.ctx.reply(req.conn, req.req_id, "ok", self.stat())
        elif op == "bootstrap":
            try:
                self.core.bootstrap(_now_ms())
            except Exception as exc:  # the core refuses a non-blank peer
                self.ctx.reply(req.conn, req.req_id, "initialized", {"message": str(exc)})
            else:
                self.ctx.reply(req.conn, req.req_id, "ok", None)
        else:
            self.ctx.reply(req.conn, req.req_id, "bad_request",
                           {"message": f"unknown op {safe_repr(op)}"})

    def _set_conf(self, req: ClientRequest) -> None:
        """``[peer_name, prev_index, [peer ids], timeout_ms]``, checked at the boundary."""
        assert self.core is not None
        args = req.args
        if len(args) != 4 or type(args[1]) is not int or type(args[3]) is not int \
                or type(args[2]) is not list or not args[2] \
                or not all(type(p) is str for p in args[2]):
            self.ctx.reply(req.conn, req.req_id, "bad_request",
                           {"message": "set_conf: takes [peer_name, prev_index, peers, "
                                       "timeout_ms]"})
            return
        _, prev_index, peers, timeout_ms = args
        ticks = max(1, timeout_ms // self.ctx.tick_ms)
        self.core.change_config(peers, prev_index, (req.conn, req.req_id), ticks)

    def _transfer_leader(self, req: ClientRequest) -> None:
        """``[peer_name, to or None, timeout_ms or None]``, checked at the boundary. The
        core's bound (proposals pause meanwhile) is at most 2 election timeouts."""
        assert self.core is not None
        args = req.args
        to = args[1] if len(args) > 1 else None
        timeout_ms = args[2] if len(args) > 2 and args[2] is not None else 0
        if not (to is None or type(to) is str) or type(timeout_ms) is not int:
            self.ctx.reply(req.conn, req.req_id, "bad_request",
                           {"message": "transfer_leader: takes [peer_name, to, timeout_ms]"})
            return
        cap = 2 * self.core.cfg.election_ticks
        ticks = min(cap, max(1, timeout_ms // self.ctx.tick_ms)) if timeout_ms else cap
        self.core.transfer_leader(to, (req.conn, req.req_id), ticks)

    # ---------------------------------------------------------------- Ready

    def _drain(self) -> None:
        core = self.core
        if core is None:
            return
        while core.has_ready():
            rd = core.ready()
            self._handle_ready(rd)
            core.advance(rd)
        self._arm()

    def _handle_ready(self, rd: Any) -> None:
        ctx = self.ctx
        if rd.snapshot is not None:
            # The state machine installs the received state before any later Apply.
            assert self.sm is not None
            self.sm.tell(InstallSnapshot(rd.snapshot, getattr(self, "_arrived_path", "")))
        ops: list[tuple[str, Any]] = []
        if rd.hard_state is not None:
            ops.append(("hard_state", rd.hard_state))
        if rd.snapshot is not None:
            ops.append(("snapshot", rd.snapshot))
        if rd.entries:
            ops.append(("append", rd.entries))
        if rd.compact_to:
            ops.append(("compact", rd.compact_to))
        for event in rd.events:
            if type(event) is m.ClusterAdopted:
                ops.append(("cluster_id", event.cluster_id))
        if rd.messages:  # first: followers start their fsync while we do ours
            ctx.send_raft(rd.messages)
        if rd.persisted_messages:
            if ops:
                self._held.append((rd.number, rd.persisted_messages))
            elif self._last_write_number <= self._durable_number:
                ctx.send_raft(rd.persisted_messages)
            else:
                self._held.append((self._last_write_number, rd.persisted_messages))
        if ops:
            self._pending_ops.extend(ops)
            self._pending_number = rd.number
            self._last_write_number = rd.number
            if not self._write_inflight:
                self._flush_writes()
        if rd.committed:
            if self._proposed:
                self._committed_at(rd.committed[-1].index)
            waiters = self._waiters
            mine = {}
            if waiters:
                for entry in rd.committed:
                    w = waiters.pop(entry.index, None)
                    if w is not None:
                        mine[entry.index] = w
            assert self.sm is not None
            self.sm.tell(Apply(rd.committed, mine))
        if rd.reads:
            released: list[ClientRequest] = []
            read_index = 0
            for rs in rd.reads:
                if isinstance(rs, m.ReadFailed):
                    req = self._reads.pop(rs.ctx, None)
                    if req is not None:
                        ctx.reply(req.conn, req.req_id, rs.error, {"leader": rs.leader})
                elif (req := self._release_read(rs)) is not None:
                    released.append(req)
                    read_index = max(read_index, rs.index)
            if released:
                # One message for all: answered once applied >= the highest read index of
                # the batch, which is at least each one's own (still linearizable).
                assert self.sm is not None
                self.sm.tell(Read(read_index, released))
        for event in rd.events:
            self._handle_event(event)

    def _committed_at(self, index: int) -> None:
        """Proposal latency: each proposed batch up to ``index`` committed now."""
        now, proposed, hist = time.perf_counter(), self._proposed, self.metrics.proposal_seconds
        while proposed and proposed[0][0] <= index:
            _last, at, count = proposed.popleft()
            hist.observe(now - at, count)

    def _flush_writes(self) -> None:
        assert self.writer is not None
        ops, self._pending_ops = self._pending_ops, []
        self._write_inflight = True
        number = self._pending_number
        after: list[Any] = []
        if self._held:  # every message this write makes durable leaves with it
            keep = []
            for need, msgs in self._held:
                if need <= number:
                    after.extend(msgs)
                else:
                    keep.append((need, msgs))
            self._held = keep
        self.writer.tell(WriteOps(number, ops, after))

    def _release_read(self, rs: m.ReadState) -> ClientRequest | None:
        """A confirmed read: get_conf is answered here; a query is returned for the state
        machine."""
        req = self._reads.pop(rs.ctx, None)
        if req is None:
            return None
        if req.op == "get_conf":
            st = self.core.status() if self.core else {}
            stable = st.get("config_state") == "stable"
            if stable and st.get("config_index", 0) <= st.get("commit", 0):
                peers = st["config"]["old"]
                self.ctx.reply(req.conn, req.req_id, "ok", [st["config_index"], peers])
            else:
                self.ctx.reply(req.conn, req.req_id, "retry", {"message": "config changing"})
            return None
        return req

    def _handle_event(self, event: Any) -> None:
        ctx = self.ctx
        if isinstance(event, m.RoleChanged):
            was_leader = self._role == "leader"
            if event.leader != self._leader:
                self.metrics.leader_changes += 1
            self._role, self._leader = event.role, event.leader
            log.info("peer %s: %s in term %d (leader %s)", self.peer_id, event.role, event.term,
                     event.leader)
            is_leader = event.role == "leader"
            if not is_leader:
                self._proposed.clear()  # what we proposed may never commit at those indexes
            if is_leader != was_leader and self.sm is not None:
                self.sm.tell(SetLeader(is_leader, event.leader))
            ctx.events.record("role", peer=self.peer_id, role=event.role, term=event.term,
                              leader=event.leader)
        elif isinstance(event, m.ConfigChangeResult):
            conn, req_id = event.ctx
            if event.error is None:
                cfg = event.config
                ctx.reply(conn, req_id, "ok", [event.config_index, list(cfg[0])])
                ctx.events.record("config", peer=self.peer_id, index=event.config_index,
                                  peers=list(cfg[0]))
            else:
                ctx.reply(conn, req_id, event.error, {"leader": event.leader})
        elif isinstance(event, m.TransferResult):
            self._transfer_result(event)
        elif isinstance(event, m.SafetyAlarm):
            self._safety_alarm(event)
        elif isinstance(event, m.ClusterAdopted):
            log.info("peer %s joined cluster %s", self.peer_id, event.cluster_id)
        elif isinstance(event, m.Healed):
            log.warning("peer %s: log repaired by the leader (term %d): it votes again",
                        self.peer_id, event.term)
            ctx.events.record("healed", peer=self.peer_id, term=event.term)
        elif isinstance(event, m.SnapshotNeeded):
            assert self.core is not None
            ctx.snapshots.send(self.actor_ref, self.peer_id, event.peer, event.meta,
                               self.core.term, self.core.cluster)
        elif isinstance(event, m.Removed):
            log.warning("peer %s removed from its cluster (config %d): stopping for good",
                        self.peer_id, event.config_index)
            self.removed = True
            # The log writer owns every storage write: let it finish what it holds and stop,
            # or its metadata write races this one (same temp file).
            if self.writer is not None and self.writer.is_alive():
                self.writer.stop(timeout=10)
            self.storage.mark_removed()
            ctx.peer_removed(self.name)
            self.stop()  # a normal exit: the node's supervisor does not restart it

    def _transfer_result(self, event: m.TransferResult) -> None:
        conn, req_id = event.ctx
        if event.error is None:
            log.info("peer %s: leadership handed to %s", self.peer_id, event.leader)
            self.ctx.events.record("transfer", peer=self.peer_id, to=event.leader)
            self.ctx.reply(conn, req_id, "ok", {"leader": event.leader})
        elif event.error == "not_leader":
            self.ctx.reply(conn, req_id, "not_leader", {"leader": event.leader})
        else:
            log.warning("peer %s: leadership transfer to %s failed: %s", self.peer_id,
                        event.target, event.error)
            self.ctx.reply(conn, req_id, "transfer_failed", {
                "reason": event.error, "leader": event.leader, "target": event.target,
                "message": f"leadership transfer to {event.target or 'a voter'} failed: "
                           f"{_TRANSFER_WHY.get(event.error, event.error)}"})

    # ---------------------------------------------------------------- status

    def stat(self) -> dict[str, Any]:
        st = dict(self.core.status()) if self.core else {}
        st["peer"] = self.peer_id
        if self._failure is not None:
            st[self._failure.code] = self._failure.stat()
            st.setdefault("role", "down")
        st["backend"] = self.ctx.backend_name
        st["durable_ready"] = self._durable_number
        st["pending_client_writes"] = len(self._waiters)
        sm_stats = self.ctx.sm_stats.get(self.name)
        if sm_stats:
            st["fsm"] = dict(sm_stats)
        log_stats = self.ctx.log_stats.get(self.name)
        if log_stats:
            st["log_writer"] = dict(log_stats)
        return st

    def probe(self) -> dict[str, Any]:
        """The scrape's figures: the core's scalars only (``stat`` builds much more)."""
        core = self.core
        if core is None or self._failure is not None:
            return {"role": "down" if self._failure is not None else "starting"}
        log_ = core.log
        return {"role": core.role, "term": core.term, "commit": core.commit,
                "applied": core.applied, "last_index": log_.last_index(),
                "snapshot_index": log_.snapshot.index,
                "leader": core.leader, "pending_client_writes": len(self._waiters)}

    def _brief(self) -> str:
        st = self.core.status() if self.core else {}
        return (f"term {st.get('term')} first {st.get('first_index')} last {st.get('last_index')} "
                f"snapshot {st.get('snapshot_index')}")


# Messages stepped into the core before its Ready is drained anyway: bounds the delay a
# steady stream of input can add to the first of them.
_COALESCE_MAX = 64
# proposed batches timed until they commit (the proposal latency histogram): a bound
_MAX_TIMED_BATCHES = 4096


_TRANSFER_WHY = {
    "transfer_in_progress": "another transfer is in progress",
    "unknown_peer": "the target is not a voting member",
    "no_target": "there is no other voting member",
    "timeout": "the target did not take over in time (unreachable or too far behind); "
               "the leader takes writes again",
    "other_leader": "another peer was elected",
}


_WAKE = Tick(0)  # what the node's timer tells a peer whose tick is due


def _now_ms() -> int:
    return int(time.time() * 1000)
