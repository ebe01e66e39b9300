"""StateMachineActor: applies committed entries off the peer's thread and answers clients.

Rules:
1. Entries arrive in order (Apply messages from the peer, FIFO); the pure StateMachine
   applies them. Watch triggers of a batch are pushed before its replies (zraft_lib order).
2. A client waiting on (index, term) gets the result if the entry applied at that index has
   that term; otherwise another leader's entry took the index and the answer is
   ``leader_changed`` (the write was certainly not applied).
3. Reads wait until ``applied >= read index`` (the index the leader confirmed with a quorum).
4. A snapshot is written when ``StateMachine.should_snapshot`` says so (``max_log_count``
   entries and ``snapshot_log_ratio``), inline for sync backend jobs, on a worker thread for
   async ones; once committed to the snapshot store the peer is told
   ``SnapshotTaken(index)`` so the core can compact the log.
5. Leader only: when the clock passes a session's deadline, propose an expiry check. (A new
   leader's first check is also the first DATA entry of its term: applying it renews every
   session first, so a takeover never expires a live session; see ``StateMachine``.)
   A session's CONNECT is answered ``{"election_timeout_ms": ...}``: the client's
   leader tracking follows the cluster's election timeout.
6. The local snapshot is loaded lazily, by the first message that needs the state; a newer
   snapshot from the leader arriving first replaces it without it ever being loaded.
7. A backend whose ``init`` or ``install_snapshot`` raises leaves this replica without a
   known state: the actor tells the peer ``BackendFailed`` (one line: the call and the
   exception) and from then on only answers, with ``backend_failed``, what still reaches
   it; the peer stops (backend_failure.py). A backend ``snapshot()`` (or its
   ``snapshot_done``/``snapshot_failed``) that raises only fails that snapshot, logged and
   counted in ``stat``; the next try waits another ``max_log_count`` entries.
8. ``snapshot_save`` (a backup, leader only) reaches this actor as a confirmed read: once
   applied >= its read index a snapshot is taken at once (after the one in progress, if
   any, which may predate the read index) and the request is answered with that
   snapshot's manifest (``backup_reply``), or the error that failed it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, NamedTuple

import pykka

from zraft.actors.context import PeerContext
from zraft.actors.messages import (
    Apply,
    BackendFailed,
    ChildFailed,
    ClientRequest,
    InstallSnapshot,
    ProposeInternal,
    Read,
    SetLeader,
    SnapshotTaken,
    Tick,
)
from zraft.actors.pooled import PooledActor
from zraft.actors.replies import encode_replies
from zraft.core.entries import BLANK_CONFIG, CONFIG, SnapshotMeta
from zraft.fsm.backend import Backend, reraise_interrupt
from zraft.fsm.commands import encode_expire_check
from zraft.fsm.machine import StateMachine
from zraft.saferepr import exception_line
from zraft.transport.codec import ClientReply, Push

log = logging.getLogger(__name__)
_new_tuple = tuple.__new__  # a NamedTuple without its Python-level __new__


class _SnapshotWritten(NamedTuple):
    image: Any
    pending: Any
    error: str | None


class StateMachineActor(PooledActor):
    dispatcher = "io"  # a backend's apply and snapshot I/O may block: the I/O pool

    def __init__(self, ctx: PeerContext, peer: pykka.ActorRef[Any], storage: Any,
                 backend: Backend) -> None:
        super().__init__()
        self.ctx = ctx
        if ctx.pools:
            self.dispatcher = ctx.pools["io"]
        self.peer = peer
        self.storage = storage
        self.backend = backend
        self.failed: str | None = None  # why the backend cannot go on (rule 7)
        self.snapshot_errors = 0
        self._last_snapshot_error: str | None = None
        self._snapshot_after = 0  # after a failed snapshot(), no new try before this index
        self._backups_taking: list[ClientRequest] = []  # answered by the snapshot in progress
        self._backups_next: list[ClientRequest] = []  # need a snapshot after that one
        self.deferred: list[Read] = []
        self._unrestored: Any = None  # the local snapshot, until something needs the state
        self.snapshots_taken = 0
        self._snapshot_started = 0.0  # perf_counter when the snapshot in progress began
        self.snapshots_installed = 0
        self._expiry_proposed: dict[str, int] = {}
        # The last configuration applied: snapshots carry it, so a snapshot's manifest says
        # everything a follower installing it needs (index, term, config).
        self.config_index = 0
        self.config: Any = BLANK_CONFIG

    def on_start(self) -> None:
        ctx = self.ctx
        election_ms = ctx.core_config().election_ticks * ctx.tick_ms
        self.store = ctx.snapshot_store()
        attach = getattr(self.backend, "attach_directory", None)
        try:
            if attach is not None and ctx.backend_dir is not None:
                # a backend that keeps its state in files (sqlite): beside the peer's log
                attach(ctx.backend_dir)
            self.machine = StateMachine(self.backend, ctx.peer_id,
                                        max_log_count=ctx.max_log_count,
                                        snapshot_log_ratio=ctx.snapshot_log_ratio,
                                        connect_reply={"election_timeout_ms": election_ms})
        except BaseException as exc:
            reraise_interrupt(exc)
            self._fail(f"{type(self.backend).__name__}.init", exc)
            return
        # The local snapshot is loaded by the first message that needs the state, not here:
        # a follower restarted behind the leader's compaction is sent a newer snapshot
        # first, and loading this one too would only delay that install (W5: 40 MB, about
        # 45 ms of GIL while the transfer starts).
        self._unrestored = self.store.clean()
        self._publish_stats()

    def _needs_state(self, message: Any) -> bool:
        """Everything but: stats, a newer snapshot to install, and what a follower does with
        an empty machine exactly as with the restored one (ticks: expiry is leader-only;
        losing leadership: no watches exist yet)."""
        if isinstance(message, InstallSnapshot):
            assert self._unrestored is not None
            return message.meta.index < self._unrestored.meta.index
        if isinstance(message, Tick):
            return self.machine.is_leader
        if isinstance(message, SetLeader):
            return message.is_leader
        return message != "stats"

    def _restore_local(self) -> None:
        latest, self._unrestored = self._unrestored, None
        assert latest is not None
        try:
            index, _ = self.machine.restore(latest.path)
        except BaseException as exc:
            reraise_interrupt(exc)
            self._fail(f"restoring its snapshot {latest.meta.index}: "
                       f"{type(self.backend).__name__}.install_snapshot", exc)
            return
        self.config_index, self.config = latest.meta.config_index, latest.meta.config
        log.info("peer %s: state restored from snapshot %d", self.ctx.peer_id, index)

    def on_failure(self, exc_type: Any, exc: Any, tb: Any) -> None:
        log.error("state machine of %s failed: %s", self.ctx.peer_id, exc)
        if self.peer.is_alive():
            self.peer.tell(ChildFailed("state_machine", f"{exc_type.__name__}: {exc}"))

    # ------------------------------------------------------------------ dispatch

    def _fail(self, call: str, exc: BaseException) -> None:
        """Rule 7: the backend cannot go on; the peer is told once."""
        log.error("peer %s: %s raised", self.ctx.peer_id, call, exc_info=exc)
        self.failed = f"backend {self.ctx.backend_name}: {call} raised {exception_line(exc)}"
        self.peer.tell(BackendFailed(self.failed))

    def _while_failed(self, message: Any) -> Any:
        """Answer whatever still reaches a failed state machine (the peer is stopping)."""
        note = {"message": f"peer {self.ctx.peer_id} is stopped: {self.failed}"}
        out: dict[Any, list[ClientReply]] = {}
        if isinstance(message, Apply):
            for _term, conn, req_id in message.waiters.values():
                out.setdefault(conn, []).append(ClientReply(req_id, "backend_failed", note))
        elif isinstance(message, Read):
            for req in message.requests:
                out.setdefault(req.conn, []).append(
                    ClientReply(req.req_id, "backend_failed", note))
        elif message == "stats":
            return {"backend_failed": self.failed}
        _send_per_connection(out)
        return None

    def on_receive(self, message: Any) -> Any:
        if self.failed is None and self._unrestored is not None \
                and self._needs_state(message):
            self._restore_local()
        if self.failed is not None:
            return self._while_failed(message)
        if isinstance(message, Apply):
            self._apply(message)
        elif isinstance(message, Read):
            self._read(message)
        elif isinstance(message, SetLeader):
            self._push_triggers(self.machine.set_leader(message.is_leader))
            self._expiry_proposed.clear()
        elif isinstance(message, Tick):
            self._check_expiry(message.now_ms)
        elif isinstance(message, InstallSnapshot):
            self._install(message)
        elif isinstance(message, _SnapshotWritten):
            self._snapshot_written(message)
        elif message == "stats":
            return self.stats()
        return None

    # ------------------------------------------------------------------ apply

    def _apply(self, msg: Apply) -> None:
        started = time.perf_counter()
        machine = self.machine
        for entry in msg.entries:
            if entry.type == CONFIG and entry.index > self.config_index:
                self.config_index, self.config = entry.index, entry.data
        batch = machine.apply(msg.entries)
        self._push_triggers(batch.triggers)
        out: dict[Any, list[ClientReply]] = {}
        waiters = msg.waiters
        for r in batch.replies:
            w = waiters.pop(r.index, None)
            if w is None:
                continue
            term, conn, req_id = w
            if r.term != term:
                reply = ClientReply(req_id, "leader_changed", {"message": "entry replaced"})
            elif r.error is None:
                reply = _new_tuple(ClientReply, (req_id, "ok", r.result))  # hot path
            else:
                reply = ClientReply(req_id, r.error.split(":", 1)[0], {"message": r.error})
            out.setdefault(conn, []).append(reply)
        for _index, (_term, conn, req_id) in waiters.items():
            out.setdefault(conn, []).append(
                ClientReply(req_id, "leader_changed", {"message": "entry replaced"}))
        _send_per_connection(out)
        if machine.is_leader:
            for event in batch.events:
                self._push(event.sid, Push(event.kind, [self.ctx.peer_name, event.sid]))
        if self.deferred:
            self._release_deferred()
        metrics = self.ctx.metrics
        metrics.apply_seconds.observe(time.perf_counter() - started)
        metrics.entries_applied += len(msg.entries)
        if machine.should_snapshot() and machine.applied_index >= self._snapshot_after:
            self._take_snapshot()
        self._publish_stats()

    # ------------------------------------------------------------------ reads

    def _read(self, msg: Read) -> None:
        if msg.index > self.machine.applied_index:
            self.deferred.append(msg)
            return
        self._answer_all(msg.requests)

    def _release_deferred(self) -> None:
        applied = self.machine.applied_index
        still = []
        for msg in self.deferred:
            if msg.index <= applied:
                self._answer_all(msg.requests)
            else:
                still.append(msg)
        self.deferred = still

    def _answer_all(self, reqs: list[ClientRequest]) -> None:
        """Answer reads, one send per connection (as for write replies)."""
        out: dict[Any, list[ClientReply]] = {}
        for req in reqs:
            if req.op == "snapshot_save":
                self._backup(req)
                continue
            out.setdefault(req.conn, []).append(self._answer(req))
        _send_per_connection(out)

    def _answer(self, req: ClientRequest) -> ClientReply:
        """One read's reply; whatever goes wrong answers that read only (the args were
        checked at the node's boundary, this is the defence behind it)."""
        try:
            return self._answer_one(req)
        except Exception as exc:
            log.exception("peer %s: %s request %d failed", self.ctx.peer_id, req.op, req.req_id)
            return ClientReply(req.req_id, "error",
                               {"message": f"{req.op}: internal error ({type(exc).__name__})"})

    def _answer_one(self, req: ClientRequest) -> ClientReply:
        args = req.args
        query = args[1] if len(args) > 1 else None
        if req.op == "query_local":
            answer = self.machine.query(query)
        else:
            sid = args[2] if len(args) > 2 else None
            watch = args[3] if len(args) > 3 else None
            answer = self.machine.query(query, sid=sid, watch_ref=watch,
                                        now_ms=int(time.time() * 1000) if watch else None)
        if answer.error is None:
            return ClientReply(req.req_id, "ok", answer.value)
        return ClientReply(req.req_id, answer.error.split(":", 1)[0], {"message": answer.error})

    # ------------------------------------------------------------------ sessions

    def _push(self, sid: str, frame: Any) -> None:
        conn = self.ctx.sessions.conn(self.ctx.peer_name, sid)
        if conn is not None:
            conn.send(frame)

    def _push_triggers(self, triggers: list[Any]) -> None:
        name = self.ctx.peer_name
        for t in triggers:
            self._push(t.sid, Push("watch", [name, t.sid, t.ref, t.reason]))

    def _check_expiry(self, now_ms: int) -> None:
        machine = self.machine
        if not machine.is_leader:
            return
        due = machine.next_expiry()
        if due is None or now_ms < due[0]:
            return
        expires_at, sid = due
        if self._expiry_proposed.get(sid) == expires_at:
            return  # already proposed for this deadline; wait for it to apply
        self._expiry_proposed[sid] = expires_at
        self.peer.tell(ProposeInternal([encode_expire_check(sid)]))

    # ------------------------------------------------------------------ snapshots

    def _take_snapshot(self) -> None:
        self._snapshot_started = time.perf_counter()
        machine = self.machine
        try:
            image = machine.take_snapshot()
        except BaseException as exc:  # the backend's snapshot() raised: the state is intact
            reraise_interrupt(exc)
            self._snapshot_error(f"{type(self.backend).__name__}.snapshot raised", exc)
            return
        meta = SnapshotMeta(image.index, image.term, self.config_index, self.config)
        pending = self.store.create(meta)
        if not image.is_async:
            self._snapshot_written(self._write(image, pending))
            return
        me = self.actor_ref

        def work() -> None:
            result = self._write(image, pending)
            try:
                me.tell(result)
            except pykka.ActorDeadError:
                pending.abort()

        threading.Thread(target=work, name=f"zraft-snapshot-{self.ctx.peer_name}",
                         daemon=True).start()

    def _backup(self, req: ClientRequest) -> None:
        """A backup whose read index is applied: snapshot now, or after the one in progress
        (taken at an index that may be older than this read)."""
        if self.machine.snapshot_in_progress:
            self._backups_next.append(req)
            return
        self._backups_taking.append(req)
        self._take_snapshot()

    def _answer_backups(self, status: str, payload: Any) -> None:
        taking, self._backups_taking = self._backups_taking, []
        _send_per_connection(_by_conn(taking, status, payload))
        if self._backups_next and not self.machine.snapshot_in_progress:
            self._backups_taking, self._backups_next = self._backups_next, []
            self._take_snapshot()

    @staticmethod
    def _write(image: Any, pending: Any) -> _SnapshotWritten:
        try:
            image.write(pending.path)
            pending.commit()
        except BaseException as exc:  # a failed snapshot is reported, not fatal
            reraise_interrupt(exc)
            log.exception("snapshot at %d failed", image.index)
            pending.abort()
            return _SnapshotWritten(image, pending, f"{type(exc).__name__}: {exc}")
        return _SnapshotWritten(image, pending, None)

    def _snapshot_error(self, what: str, exc: BaseException) -> None:
        """A snapshot that could not be taken or finished: logged, counted, retried only
        after ``max_log_count`` more entries (the log keeps everything meanwhile)."""
        self.snapshot_errors += 1
        self._last_snapshot_error = f"{what} {exception_line(exc)}"
        self._snapshot_after = self.machine.applied_index + max(1, self.ctx.max_log_count)
        log.error("peer %s: snapshot failed: %s", self.ctx.peer_id, self._last_snapshot_error,
                  exc_info=exc)
        self._publish_stats()
        if self._backups_taking or self._backups_next:
            self._answer_backups("error", {"message": f"snapshot failed: "
                                                      f"{self._last_snapshot_error}"})

    def _snapshot_written(self, msg: _SnapshotWritten) -> None:
        if msg.error is not None:
            try:
                self.machine.snapshot_failed(msg.image, msg.error)
            except BaseException as exc:
                reraise_interrupt(exc)
                self._snapshot_error(f"{type(self.backend).__name__}.snapshot_failed raised",
                                     exc)
            if self._backups_taking or self._backups_next:
                self._answer_backups("error", {"message": f"snapshot failed: {msg.error}"})
            return
        info = msg.pending.info
        try:
            self.machine.snapshot_done(msg.image,
                                       sum(f.size for f in info.files) if info else 0)
        except BaseException as exc:  # the snapshot is committed: only the backend's hook failed
            reraise_interrupt(exc)
            self._snapshot_error(f"{type(self.backend).__name__}.snapshot_done raised", exc)
        self.snapshots_taken += 1
        metrics = self.ctx.metrics
        took = time.perf_counter() - self._snapshot_started
        metrics.snapshots_taken += 1
        metrics.snapshot_seconds_total += took
        metrics.snapshot_last_seconds = took
        metrics.snapshot_bytes_total += sum(f.size for f in info.files) if info else 0
        self.ctx.events.record("snapshot", peer=self.ctx.peer_id, index=msg.image.index)
        self.peer.tell(SnapshotTaken(msg.image.index))
        self._publish_stats()
        if (self._backups_taking or self._backups_next) and info is not None:
            self._answer_backups("ok", backup_reply(info, self.ctx.backend_name))

    def _install(self, msg: InstallSnapshot) -> None:
        if self._unrestored is not None:
            log.info("peer %s: local snapshot %d skipped: the leader's %d replaces it",
                     self.ctx.peer_id, self._unrestored.meta.index, msg.meta.index)
            self._unrestored = None
        try:
            index, _ = self.machine.restore(msg.path)
        except BaseException as exc:
            reraise_interrupt(exc)
            self._fail(f"installing the leader's snapshot {msg.meta.index}: "
                       f"{type(self.backend).__name__}.install_snapshot", exc)
            return
        self.config_index, self.config = msg.meta.config_index, msg.meta.config
        self.snapshots_installed += 1
        self.deferred_release_after_install()
        log.info("peer %s: installed snapshot %d from the leader", self.ctx.peer_id, index)
        self.ctx.events.record("snapshot_installed", peer=self.ctx.peer_id, index=index)
        self._publish_stats()

    def deferred_release_after_install(self) -> None:
        if self.deferred:
            self._release_deferred()

    # ------------------------------------------------------------------ status

    def stats(self) -> dict[str, Any]:
        st = self.machine.stats()
        if self._unrestored is not None:  # what the state is, once loaded
            st["applied_index"] = st["snapshot_index"] = self._unrestored.meta.index
            st["restore_pending"] = True
        st["snapshots_taken"] = self.snapshots_taken
        st["snapshots_installed"] = self.snapshots_installed
        if self.snapshot_errors:
            st["snapshot_errors"] = self.snapshot_errors
            st["last_snapshot_error"] = self._last_snapshot_error
        st["deferred_reads"] = len(self.deferred)
        return st

    def _publish_stats(self) -> None:
        self.ctx.sm_stats[self.ctx.peer_name] = self.stats()


def backup_reply(info: Any, backend: str) -> dict[str, Any]:
    """What ``snapshot_save`` answers: the snapshot's directory name and its manifest."""
    meta = info.meta
    return {"name": info.path.name, "index": meta.index, "term": meta.term,
            "config_index": meta.config_index,
            "config": [list(meta.config.old), list(meta.config.new)], "backend": backend,
            "files": [[f.path, f.size, f.sha256] for f in info.files]}


def _by_conn(reqs: list[ClientRequest], status: str, payload: Any
             ) -> dict[Any, list[ClientReply]]:
    out: dict[Any, list[ClientReply]] = {}
    for req in reqs:
        out.setdefault(req.conn, []).append(ClientReply(req.req_id, status, payload))
    return out


def _send_per_connection(out: dict[Any, list[ClientReply]]) -> None:
    """One encoded blob and one send per connection: the per-reply queue put and wake-up
    showed in the leader's profile (bench/profiles). A reply too large for a frame, or
    that cannot be encoded, becomes an error for its own request (``replies``)."""
    for conn, replies in out.items():
        conn.send(encode_replies(replies))
