"""Node: one OS process hosting Raft peers (one per cluster it belongs to).

Rules:
1. One transport per node: one listening socket for peers and clients, one outbound link per
   peer node shared by every Raft group on both nodes.
2. Frames decoded from one socket read are routed as one batch per local peer (a
   RaftInbound and a ClientBatch), so a busy connection costs one actor hop per read.
3. Peers are supervised children reached by name (a ChildHandle resolves the current actor
   on every call), restarted one-for-one when they crash, after a growing delay that never
   counts against the supervisor's intensity (a crash loop in one group never stops the
   node), and never restarted once removed from their cluster (restart = transient; a
   removed peer stops normally). A peer that cannot write its log waits and retries
   without crashing (zraft/actors/storage_failure.py).
4. At start every peer found in ``log_dir`` is restarted, its storage opened (and recovered)
   before any actor starts, so a corrupt log stops the node with exit code 2.
5. A backend is checked at the boundary, before anything exists: ``create_peer`` (and
   ``check_exists`` given a backend) refuses a name the allowlist lacks
   (``backend_not_allowed``) and one that cannot be imported, constructed or initialised
   (``backend_error``, one line naming the cause), before any directory is made. A stored
   peer whose backend cannot run at start (or later: its ``init``/``install_snapshot``
   raised) stops alone: one line on stderr, ``backend_failed`` in its ``stat`` and in
   ``node_status``; the node and its other peers go on (actors/backend_failure.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from supervisors import (
    Backoff,
    ChildHandle,
    ChildSpec,
    ExitInfo,
    OneForOneSupervisor,
    Restart,
)
from zraft.actors.context import PeerContext
from zraft.actors.messages import ClientBatch, ClientRequest, NodeSignal, RaftInbound
from zraft.actors.peer import RaftPeerActor
from zraft.actors.peer_metrics import PeerMetrics
from zraft.actors.pooled import Dispatcher
from zraft.actors.replies import encode_reply
from zraft.actors.ticker import DeadlineTimer
from zraft.config import ConfigError, NodeConfig, StartLater
from zraft.core.config import KNOWN_MUTATIONS, CoreConfig
from zraft.core.messages import MESSAGE_CODES
from zraft.errors import BackendError, BackendNotAllowed
from zraft.fsm.heap_trim import request_trim
from zraft.fsm.registry import canonical_name, is_allowed, load_backend, probe_backend
from zraft.ids import PeerId, is_cluster_id, node_of
from zraft.node.backup_reads import SnapshotGone, read_chunk
from zraft.node.create_many import create_peers
from zraft.node.events import EventLog
from zraft.node.liveness import NodeLiveness
from zraft.node.requests import (
    NODE_OPS,
    OPERATOR_OPS,
    Limits,
    RequestError,
    fast_ok,
    validate,
)
from zraft.node.sessions import SessionRegistry
from zraft.node.snapshots import SnapshotService
from zraft.saferepr import safe_repr
from zraft.storage import DiskLogStorage, SnapshotStore, list_peers
from zraft.storage.errors import DiskStorageError
from zraft.storage.fd_cache import SEGMENT_FILES, default_limit
from zraft.storage.naming import peer_log_path
from zraft.storage.sync_service import SyncService
from zraft.transport import codec
from zraft.transport.limits import node_transport_config, raise_fd_limit
from zraft.transport.tcp import TcpTransport

log = logging.getLogger(__name__)

_RAFT_TYPES = frozenset(MESSAGE_CODES)
_CLIENT_REQUEST = codec.ClientRequest
_new_tuple = tuple.__new__  # a NamedTuple without its Python-level __new__ (hot path)
MUTATIONS_ENV = "ZRAFT_TEST_MUTATIONS"
NODE_MUTATIONS = frozenset({"follower_local_reads", "client_peer_frames"})


def test_mutations() -> frozenset[str]:
    """Deliberately broken rules for checker tests only, from ZRAFT_TEST_MUTATIONS
    (comma-separated): the core's KNOWN_MUTATIONS plus NODE_MUTATIONS. Never set in use."""
    raw = os.environ.get(MUTATIONS_ENV, "")
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = names - KNOWN_MUTATIONS - NODE_MUTATIONS
    if unknown:
        raise ConfigError(f"{MUTATIONS_ENV}: unknown mutations {sorted(unknown)}")
    return names
PEER_BACKOFF = Backoff(initial_s=0.5, max_s=30.0, reset_after_s=60.0)
# admin ops answered on a thread of their own (create_peer, check_exists of a backend,
# node_status: they import backends, start actors, wait on every peer): at most this many
# at once, so a client sending them in a loop costs a refusal each, never a thread each
MAX_SLOW_OPS = 8


class PeerEntry:
    """What the node knows about one local peer, for routing and restarts."""

    def __init__(self, name: str, peer_id: str, backend: str, handle: ChildHandle,
                 cluster_id: str = "") -> None:
        self.name = name
        self.peer_id = peer_id
        self.backend = backend
        self.handle = handle
        self.cluster_id = cluster_id


class Node:
    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self.address = cfg.listen
        self.tick_ms = cfg.raft.effective_tick_ms
        self.sessions = SessionRegistry()
        self.events = EventLog(cfg.listen)
        self.sm_stats: dict[str, Any] = {}
        self.log_stats: dict[str, Any] = {}
        self.peers: dict[str, PeerEntry] = {}
        self._peers_lock = threading.Lock()
        self._create_lock = threading.Lock()  # create_peer: check and start as one step
        self._slow_ops = threading.BoundedSemaphore(MAX_SLOW_OPS)
        self._preopened: dict[str, DiskLogStorage] = {}
        self.stopped = threading.Event()
        self.exit_code = 0
        self.fatal: str | None = None  # why the node stops with exit code 1 (one line)
        self.started_at = time.time()
        self.transport: TcpTransport | None = None
        self.sup: Any = None
        self.liveness: NodeLiveness | None = None
        self.timer: DeadlineTimer | None = None  # wakes peers when a tick is due
        self.snapshots = SnapshotService(self)
        self.counters: Counter[str] = Counter()  # refusals the node made, for node_status
        self.backend_failures: dict[str, str] = {}  # peer name -> why it stopped
        # test-only: clients may send Raft messages (the frame fuzzer must catch it); read
        # in start(), where a bad ZRAFT_TEST_MUTATIONS is a ConfigError (exit 2)
        self._client_peer_frames = False
        self.limits = Limits(max_entry_size=cfg.raft.max_entry_size)
        self.peer_metrics: dict[str, PeerMetrics] = {}  # kept by the actors, for metrics
        self.metrics: Any = None  # the /metrics endpoint when node.metrics_addr is set
        self.log_sync = SyncService()  # one group commit for the logs of all groups
        self.pools: dict[str, Dispatcher] = {}  # the node's actor pools (actors/pooled.py)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Open every stored peer, bind, start the actors, then serve (a node that accepts
        connections has its peers up). Raises ConfigError (exit 2)."""
        cfg = self.cfg
        self._client_peer_frames = "client_peer_frames" in test_mutations()
        if test_mutations():
            log.warning("TEST MUTATIONS ENABLED (%s): this node is deliberately unsafe",
                        ",".join(sorted(test_mutations())))
        found = []
        for meta in list_peers(cfg.log_dir):
            if meta.removed:
                log.info("peer %s was removed from its cluster: not restarted", meta.peer_id)
                continue
            found.append(meta)
        raise_fd_limit()  # now, not at the transport: the cap on open segments follows it
        SEGMENT_FILES.limit = default_limit()
        for meta in found:  # recover every log before anything listens
            self._preopened[PeerId.parse(meta.peer_id).name] = self._open_storage(
                meta.peer_id, meta.backend)
        self.pools = {"raft": Dispatcher("raft", cfg.raft_threads),
                      "io": Dispatcher("io", cfg.io_threads)}
        self.timer = DeadlineTimer().start()
        # The supervisor exists before anything can arrive: a create_peer racing the start
        # must find it (bugs-issue4 #1).
        period = max(1.0, 4 * cfg.raft.election_timeout / 1000)
        self.sup = OneForOneSupervisor.start(name=f"node {cfg.listen}", max_restarts=3,
                                             period_s=period, on_give_up=self._on_give_up)
        self.tls = cfg.node_tls()  # checked at load: this only builds the contexts again
        self.transport = TcpTransport(cfg.resolved_cookie(), self._on_frames,
                                      listen=(cfg.host, cfg.port), node_id=cfg.listen,
                                      on_frames_many=self._on_frames_many,
                                      config=node_transport_config(cfg.max_buffered_bytes),
                                      on_fatal=self._on_transport_fatal,
                                      on_shrink=request_trim, tls=self.tls,
                                      client_cookie=cfg.resolved_client_cookie())
        try:
            self.transport.start(serve=False)  # hold the port; serve once the peers are up
        except OSError as exc:
            if isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_AGAIN:
                raise StartLater(f"node.listen {cfg.listen}: {exc.strerror} (the name does "
                                 "not resolve for now: exit 1, to be started again)") from None
            raise ConfigError(f"node.listen {cfg.listen}: {exc.strerror}") from None
        if self.tls is None:
            log.warning("PLAINTEXT: node %s serves peers and clients without TLS: anyone on "
                        "the network can read and alter its traffic (set [node] tls_cert, "
                        "tls_key and tls_ca)", cfg.listen)
        else:
            log.info("TLS on %s (client certificates %s)", cfg.listen,
                     "required" if self.tls.verify_client else "not required")
        if cfg.metrics_addr:  # bound before any peer starts: a busy address is exit 2
            from zraft.node.metrics import MetricsServer  # prometheus_client only if used

            self.metrics = MetricsServer(self, cfg.metrics_addr)
            self.metrics.start()
        # Dial the members of our groups now: a leader whose link to us sits in reconnect
        # backoff adopts the fresh connection at once (a restarted follower catches up
        # without waiting for the leader's next attempt).
        self.transport.connect(self._members_of(self._preopened.values()))
        for meta in found:
            self._start_peer(PeerId.parse(meta.peer_id).name, meta.peer_id,
                             meta.backend or "dict", meta.cluster_id)
        if cfg.raft.quiesce:
            self.liveness = self._start_liveness()
        self.transport.serve()
        self.events.record("node_start", pid=os.getpid(), peers=sorted(self.peers))
        log.info("node %s up (pid %d), peers: %s", cfg.listen, os.getpid(),
                 ", ".join(sorted(self.peers)) or "none")

    @staticmethod
    def _members_of(storages: Any) -> set[str]:
        members: set[str] = set()
        for storage in storages:
            try:
                _index, conf = storage.config_at(storage.last_index())
            except Exception:  # a log without a config yet: nothing to dial
                continue
            members.update(PeerId.parse(p).node for p in (*conf.old, *conf.new))
        return members

    def stop(self) -> None:
        """Clean stop: peers in reverse start order, then the transport."""
        if self.liveness is not None:
            self.liveness.stop()
        if self.metrics is not None:
            self.metrics.stop()
        self.snapshots.close()  # cancel receives first: they block their actors
        if self.sup is not None and self.sup.is_alive():
            self.sup.stop(timeout=30)
        if self.transport is not None:
            self.transport.close()
        for pool in self.pools.values():
            pool.close()
        if self.timer is not None:
            self.timer.stop()
        for storage in self._preopened.values():
            storage.close()
        self.events.record("node_stop")
        self.stopped.set()

    def _on_transport_fatal(self, message: str) -> None:
        """The transport could not keep its serving threads alive: exit 1, loudly."""
        self.fatal = message
        self.exit_code = 1
        self.stopped.set()

    def _on_give_up(self, info: ExitInfo) -> None:
        log.error("node supervisor gave up (%s): stopping the node", info)
        self.exit_code = 1
        self.stopped.set()

    # ---------------------------------------------------------------- peers

    def _open_storage(self, peer_id: str, backend: str | None,
                      discard_after: int | None = None, cluster_id: str = "") -> DiskLogStorage:
        try:
            return DiskLogStorage.open(self.cfg.log_dir, peer_id, backend=backend,
                                       max_segment_size=self.cfg.raft.max_segment_size,
                                       discard_after=discard_after, cluster_id=cluster_id,
                                       sync_service=self.log_sync)
        except OSError as exc:  # e.g. a read-only file system: one line, not a traceback
            where = exc.filename or peer_log_path(self.cfg.log_dir, peer_id)
            raise DiskStorageError(f"peer {peer_id}: cannot open its log ({where}): "
                                   f"{exc.strerror or exc}") from None

    def _context(self, name: str, peer_id: str, backend: str,
                 cluster_id: str = "") -> PeerContext:
        cfg = self.cfg

        def open_storage(discard_after: int | None = None) -> DiskLogStorage:
            pre = self._preopened.pop(name, None) if discard_after is None else None
            if pre is not None:
                return pre
            return self._open_storage(peer_id, backend, discard_after, cluster_id)

        def core_config() -> CoreConfig:
            return CoreConfig(election_ticks=cfg.raft.election_ticks,
                              heartbeat_ticks=max(1, cfg.raft.election_ticks // 5),
                              max_inflight=cfg.raft.max_inflight,
                              request_timeout_ticks=max(
                                  1, cfg.raft.effective_request_timeout // self.tick_ms),
                              max_batch_bytes=cfg.raft.max_batch_bytes,
                              mutations=test_mutations() & KNOWN_MUTATIONS,
                              quiesce_ticks=2 * cfg.raft.election_ticks if cfg.raft.quiesce
                              else 0)

        return PeerContext(
            peer_id=peer_id, peer_name=name, backend_name=backend, tick_ms=self.tick_ms,
            max_log_count=cfg.raft.max_log_count, open_storage=open_storage,
            snapshot_log_ratio=cfg.raft.snapshot_log_ratio,
            core_config=core_config,
            make_backend=lambda: load_backend(backend, cfg.backends),
            # retain=2: a transfer of the previous snapshot survives a new local one
            snapshot_store=lambda: SnapshotStore.for_peer(cfg.snapshot_dir, peer_id,
                                                          backup=cfg.raft.snapshot_backup,
                                                          retain=2),
            send_raft=self.send_raft, reply=self.reply, sessions=self.sessions,
            snapshots=self.snapshots, events=self.events,
            report_failure=self._peer_failed, backend_failed=self._backend_failed,
            peer_removed=self._peer_removed, sm_stats=self.sm_stats, log_stats=self.log_stats,
            mutations=test_mutations(),
            metrics=self.peer_metrics.setdefault(name, PeerMetrics()),
            backend_dir=peer_log_path(cfg.log_dir, peer_id) / "backend", pools=self.pools,
            timer=self.timer)

    def _start_peer(self, name: str, peer_id: str, backend: str, cluster_id: str = "") -> None:
        ctx = self._context(name, peer_id, backend, cluster_id)
        # A peer in a crash loop is restarted after a growing delay, never counted against
        # the node supervisor's intensity: one group's trouble must not stop the node.
        spec = ChildSpec(name, RaftPeerActor, args=(ctx,), restart=Restart.TRANSIENT,
                         shutdown_s=15.0, start_timeout_s=10.0, backoff=PEER_BACKOFF)
        self.sup.proxy().start_child(spec).get(timeout=15)
        handle = self.sup.proxy().child_handle(name).get(timeout=5)
        with self._peers_lock:
            self.peers[name] = PeerEntry(name, peer_id, backend, handle, cluster_id)
        self.events.record("peer_start", peer=peer_id)

    def _peer_failed(self, name: str, reason: str) -> None:
        """A peer actor crashed (the supervisor restarts it): logged and in the events."""
        log.error("peer %s failed: %s", name, reason)
        entry = self.peers.get(name)
        self.events.record("peer_failed", peer=entry.peer_id if entry else name,
                           reason=reason[:200])

    def _backend_failed(self, name: str, text: str) -> None:
        """A peer stopped because its backend cannot run (called from its thread): one line
        on stderr, an event, and ``node_status``; its pre-opened log is closed."""
        self.backend_failures[name] = text
        print(f"zraft node {self.address}: {text}", file=sys.stderr, flush=True)
        entry = self.peers.get(name)
        self.events.record("backend_failed", peer=entry.peer_id if entry else name,
                           reason=text[:300])
        storage = self._preopened.pop(name, None)
        if storage is not None:
            storage.close()

    def _peer_removed(self, name: str) -> None:
        """Called from the removed peer's own thread: never wait on the supervisor here."""
        with self._peers_lock:
            entry = self.peers.pop(name, None)
        self.peer_metrics.pop(name, None)
        if entry is not None:
            self.events.record("peer_removed", peer=entry.peer_id)
            self.sup.proxy().terminate_child(name)  # future deliberately not awaited

    def _start_liveness(self) -> NodeLiveness:
        """One liveness heartbeat per pair of nodes; its failure signals wake quiesced
        groups (docs/internals.md, "Quiescence"). A node silent for 1.5 election timeouts
        is unreachable: with the follower's election within one more, a dead leader's
        groups lead again within 2 x election_timeout + a round trip."""
        transport = self.transport
        assert transport is not None
        timeout_s = self.cfg.raft.election_timeout / 1000

        def send(node: str, incarnation: int) -> None:
            transport.send(node, codec.NodeAlive(incarnation))

        return NodeLiveness(self.address, transport.link_addrs, send, self._node_signal,
                            interval_s=timeout_s / 5, bound_s=1.5 * timeout_s).start()

    def _node_signal(self, kind: str, node: str) -> None:
        """Every local peer hears it; its core picks the members on ``node``."""
        self.events.record("node_signal", signal=kind, node=node)
        signal = NodeSignal(kind, node)
        for ref in self._peer_refs():
            with contextlib.suppress(Exception):  # a peer stopping meanwhile
                ref.tell(signal)

    def _peer_refs(self) -> list[Any]:
        with self._peers_lock:
            handles = [e.handle for e in self.peers.values()]
        return [ref for ref in (h.resolve() for h in handles) if ref is not None]

    def _handle(self, name: Any) -> ChildHandle | None:
        entry = self.peers.get(name) if isinstance(name, str) else None
        return entry.handle if entry is not None else None

    # ---------------------------------------------------------------- I/O

    def reply(self, conn: Any, req_id: int, status: str, payload: Any) -> None:
        conn.send(encode_reply(codec.ClientReply(req_id, status, payload)))

    def send_raft(self, msgs: list[Any]) -> None:
        """Send Raft messages: grouped per destination node; local peers directly."""
        by_node: dict[str, list[Any]] = defaultdict(list)
        for msg in msgs:
            by_node[node_of(msg.dst)].append(msg)
        transport = self.transport
        for addr, batch in by_node.items():
            if addr == self.address:
                self._route_raft(batch)
            elif transport is not None:
                transport.send_many(addr, batch)

    def _route_raft(self, msgs: list[Any]) -> None:
        by_peer: dict[str, list[Any]] = defaultdict(list)
        for msg in msgs:
            by_peer[msg.dst.partition("@")[0]].append(msg)
        for name, batch in by_peer.items():
            handle = self._handle(name)
            if handle is None:
                continue
            ref = handle.resolve()
            if ref is not None:
                ref.tell(RaftInbound(batch))

    def _on_frames(self, conn: Any, frames: list[Any]) -> None:
        self._on_frames_many([(conn, frames)])

    def _on_frames_many(self, ready: list[tuple[Any, list[Any]]]) -> None:
        """Frames of one read (a connection's reader) or of one reactor round (every
        client connection that was readable): one ClientBatch per peer for all of them.
        Each frame is sorted in isolation (``_sort_frame``): a bad one answers its own
        requester and never costs the round's other frames."""
        raft: list[Any] = []
        requests: dict[str, list[ClientRequest]] = defaultdict(list)
        limits, sort = self.limits, self._sort_frame
        for conn, frames in ready:
            for frame in frames:
                try:
                    # the hot path inline: a full propose or query that certainly fits
                    if type(frame) is _CLIENT_REQUEST and type(args := frame.args) is list \
                            and fast_ok(op := frame.op, args, limits):
                        requests[args[0]].append(
                            _new_tuple(ClientRequest, (conn, frame.req_id, op, args)))
                    else:
                        sort(conn, frame, raft, requests)
                except Exception as exc:
                    self._frame_failed(conn, frame, exc)
        if raft:
            self._route_raft(raft)
        for name, reqs in requests.items():
            try:
                self._route_requests(name, reqs)
            except Exception as exc:
                for req in reqs:
                    self._frame_failed(req.conn, req, exc)

    def _route_requests(self, name: str, reqs: list[ClientRequest]) -> None:
        handle = self._handle(name)
        ref = handle.resolve() if handle is not None else None
        if ref is None:
            status = "loading" if handle is not None else "noproc"
            for req in reqs:
                self.reply(req.conn, req.req_id, status,
                           {"message": f"no running peer {name} on {self.address}"})
            return
        ref.tell(ClientBatch(reqs))

    def _sort_frame(self, conn: Any, frame: Any, raft: list[Any],
                    requests: dict[str, list[ClientRequest]]) -> None:
        kind = type(frame)
        if kind in _RAFT_TYPES or kind is codec.SnapshotControl:
            if getattr(conn, "role", "client") != "node" and not self._client_peer_frames:
                self._not_for_clients(conn, kind)
            elif kind is codec.SnapshotControl:
                self.snapshots.on_control(conn, frame)
            else:
                raft.append(frame)
        elif kind is codec.NodeAlive:
            if getattr(conn, "role", "client") != "node":
                self._not_for_clients(conn, kind)
            elif self.liveness is not None:
                self.liveness.heard(conn.peer_id, frame.incarnation)
        elif kind is codec.ClientRequest or kind is codec.AdminRequest:
            op = frame.op
            try:
                args = validate(op, frame.args, self.limits)
                if kind is codec.AdminRequest and op not in NODE_OPS:
                    raise RequestError("bad_request", f"{op}: not an admin op")
                if op in OPERATOR_OPS and not getattr(conn, "privileged", True):
                    self.counters["refused_operator_ops"] += 1
                    raise RequestError("not_allowed", f"{op} is an operator op: this "
                                       "connection proved the client cookie, not the "
                                       "cluster cookie")
            except RequestError as exc:
                self.reply(conn, frame.req_id, exc.code, {"message": exc.message})
                return
            if op in NODE_OPS:
                self._node_op(conn, frame.req_id, op, args)
            else:
                requests[args[0]].append(ClientRequest(conn, frame.req_id, op, args))

    def _not_for_clients(self, conn: Any, kind: type) -> None:
        """A client connection sent a Raft message or a snapshot control frame: only a
        peer node may (a client holding the cookie must not be able to step a core, with
        a higher term say). Close that connection; nothing else is touched."""
        self.counters["refused_peer_frames_from_clients"] += 1
        log.warning("closing client connection %s (%s): it sent %s, which only a peer node "
                    "may send", getattr(conn, "peer_id", "?"), getattr(conn, "remote", "?"),
                    kind.__name__)
        conn.close()

    def _frame_failed(self, conn: Any, frame: Any, exc: Exception) -> None:
        """An unexpected error while sorting or routing one frame: logged, and answered
        (``error``) if it was a request."""
        log.error("frame %s from %s failed: %s", type(frame).__name__,
                  getattr(conn, "peer_id", "?"), type(exc).__name__, exc_info=exc)
        req_id = getattr(frame, "req_id", None)
        if type(req_id) is int:
            with contextlib.suppress(Exception):
                self.reply(conn, req_id, "error",
                           {"message": f"internal error ({type(exc).__name__})"})

    # ---------------------------------------------------------------- node ops

    def _node_op(self, conn: Any, req_id: int, op: str, args: list[Any]) -> None:
        """A node op whose args ``validate`` checked (``zraft.node.requests``)."""
        try:
            if op == "ping":
                self.reply(conn, req_id, "ok", self.address)
            elif op == "list_peers":
                self.reply(conn, req_id, "ok", sorted(self.peers))
            elif op == "check_exists":
                if args[1] is None:
                    self.reply(conn, req_id, *self._check_exists(args[0]))
                else:  # importing a backend may take a while: keep the reader thread free
                    self._slow_op(op, self._check_exists_with, conn, req_id, args)
            elif op == "create_peer":
                # Starting an actor waits for its on_start: keep the reader thread free.
                self._slow_op(op, self._create_peer, conn, req_id, args)
            elif op == "create_peers":  # a batch: one slow-op thread for all of it
                self._slow_op(op, self._create_peers, conn, req_id, args)
            elif op == "node_status":
                self._slow_op(op, self._node_status, conn, req_id)
            elif op == "snapshot_read":  # file I/O: keep the reader thread free
                self._slow_op(op, self._snapshot_read, conn, req_id, args)
            elif op == "partition":
                # [[addrs]] or [[addrs], "in" | "out" | "both"]: a one-way partition blocks
                # one direction on one node
                addrs = list(args[0])
                direction = args[1] or "both"
                self._fault_injection_allowed()
                assert self.transport is not None
                self.transport.unblock()
                self.transport.block(addrs, direction)
                self.events.record("partition", blocked=addrs, direction=direction)
                self.reply(conn, req_id, "ok", None)
            elif op == "heal":
                self._fault_injection_allowed()
                assert self.transport is not None
                self.transport.unblock()
                self.events.record("heal")
                self.reply(conn, req_id, "ok", None)
            else:
                self.reply(conn, req_id, "bad_request", {"message": f"unknown op {op}"})
        except PermissionError as exc:
            self.reply(conn, req_id, "not_allowed", {"message": str(exc)})

    def _fault_injection_allowed(self) -> None:
        if not self.cfg.fault_injection:
            raise PermissionError("fault injection is disabled on this node")

    def _check_exists(self, name: str) -> tuple[str, Any]:
        peer_id = str(PeerId.parse(f"{name}@{self.address}"))
        if name in self.peers or peer_log_path(self.cfg.log_dir, peer_id).exists():
            return "already_present", {"message": f"peer {peer_id} already exists"}
        return "ok", None

    def _slow_op(self, op: str, target: Callable[..., None], conn: Any, req_id: int,
                 *args: Any) -> None:
        """Run ``target(conn, req_id, *args)`` on a thread of its own, if fewer than
        MAX_SLOW_OPS run; else refuse this request at once with ``retry`` (the status
        clients back off on and send again, as for ``loading``)."""
        if not self._slow_ops.acquire(blocking=False):
            self.counters["refused_slow_ops"] += 1
            self.reply(conn, req_id, "retry", {"message": f"{op}: node busy ({MAX_SLOW_OPS} "
                                                          "admin requests in progress); retry"})
            return

        def run() -> None:
            try:
                target(conn, req_id, *args)
            finally:
                self._slow_ops.release()
        try:
            threading.Thread(target=run, name=f"zraft-{op}", daemon=True).start()
        except BaseException:
            self._slow_ops.release()
            raise

    def _check_backend(self, backend: str, peer_id: str) -> None:
        """Rule 5: raise ``BackendError`` (``BackendNotAllowed`` or a load error), one line
        naming the backend, this node and the cause, unless a peer here could run it."""
        if not is_allowed(backend, self.cfg.backends):
            raise BackendNotAllowed(
                f"backend {safe_repr(backend)} is not allowed on node {self.address} (its "
                f"[node] backends: {', '.join(self.cfg.backends)}): add it there")
        try:
            probe_backend(backend, self.cfg.backends, peer_id)
        except BackendError as exc:
            raise type(exc)(f"backend {canonical_name(backend)} cannot be loaded on node "
                            f"{self.address}: {exc}") from None

    def _check_exists_with(self, conn: Any, req_id: int, args: list[Any]) -> None:
        """``check_exists [name, backend]``: also whether this node can run the backend."""
        try:
            status, payload = self._check_exists(args[0])
            if status == "ok":
                self._check_backend(args[1], str(PeerId.parse(f"{args[0]}@{self.address}")))
            self.reply(conn, req_id, status, payload)
        except BackendError as exc:
            self.reply(conn, req_id, exc.code, {"message": str(exc)})
        except Exception as exc:
            log.exception("check_exists failed")
            self.reply(conn, req_id, "error", {"message": f"check_exists: internal error "
                                                          f"({type(exc).__name__})"})

    def _create_peer(self, conn: Any, req_id: int, args: list[Any]) -> None:
        try:
            name, backend = args[0], args[1]
            cluster_id = args[2] if len(args) > 2 and args[2] is not None else ""
            if not is_cluster_id(cluster_id):
                raise ValueError("cluster id must be 1-64 letters, digits, '-' or '_'")
            peer_id = str(PeerId.parse(f"{name}@{self.address}"))
            self._check_backend(backend, peer_id)  # before anything exists (rule 5)
            with self._create_lock:
                status, payload = self._check_exists(name)
                if status != "ok":
                    self.reply(conn, req_id, status, payload)
                    return
                self._start_peer(name, peer_id, canonical_name(backend), cluster_id)
            self.reply(conn, req_id, "ok", peer_id)
        except BackendError as exc:
            self.reply(conn, req_id, exc.code, {"message": str(exc)})
        except (IndexError, ValueError) as exc:
            self.reply(conn, req_id, "bad_request", {"message": f"create_peer: {exc}"})
        except Exception as exc:
            log.exception("create_peer failed")
            self.reply(conn, req_id, "error", {"message": f"{type(exc).__name__}: {exc}"})

    def _create_peers(self, conn: Any, req_id: int, args: list[Any]) -> None:
        create_peers(self, conn, req_id, args)

    def _snapshot_read(self, conn: Any, req_id: int, args: list[Any]) -> None:
        """``[peer_name, snapshot, path, offset]``: a chunk of a backup (backup_reads)."""
        entry = self.peers.get(args[0])
        if entry is None:
            self.reply(conn, req_id, "not_found", {"message": "snapshot_read: no such peer"})
            return
        try:
            data = read_chunk(self.cfg.snapshot_dir, entry.peer_id, *args[1:4])
        except SnapshotGone as exc:
            self.reply(conn, req_id, "not_found", {"message": f"snapshot_read: {exc}"})
            return
        self.reply(conn, req_id, "ok", data)

    def _node_status(self, conn: Any, req_id: int) -> None:
        peers = {}
        for name, entry in sorted(self.peers.items()):
            ref = entry.handle.resolve()
            peers[name] = {"peer": entry.peer_id, "running": ref is not None,
                           "fsm": self.sm_stats.get(name), "log_writer": self.log_stats.get(name)}
            if name in self.backend_failures:
                peers[name]["backend_failed"] = self.backend_failures[name]
        status = {
            "node": self.address, "pid": os.getpid(),
            "uptime": round(time.time() - self.started_at, 1),
            "peers": peers,
            "transport": self.transport.status() if self.transport else None,
            "liveness": None if self.liveness is None else {
                "down": self.liveness.down(), "reports": dict(self.liveness.reports)},
            "snapshots": self.snapshots.stats(),
            "refused": dict(self.counters),
            "log_sync": {**self.log_sync.stats(), "open_segment_files": SEGMENT_FILES.open_files},
            "events": self.events.tail()[-20:],
            "threads": self._threads_status(),
        }
        self.reply(conn, req_id, "ok", status)

    def _threads_status(self) -> dict[str, Any]:
        """Threads of the process, the actor pools' workers and the timer's wake-ups."""
        timer = self.timer
        return {"total": threading.active_count(),
                "pools": {name: {"workers": p.threads, "size": p.size,
                                 "spares_started": p.spares_started}
                          for name, p in self.pools.items()},
                "timer_deadlines": len(timer) if timer else 0,
                "timer_wakeups": timer.fired if timer else 0}
