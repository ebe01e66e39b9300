"""Snapshot transfer between nodes: a sender actor per outgoing transfer on the leader's
node, a receiver actor per incoming one on the follower's node (zraft_lib's
zraft_snapshot_sender / zraft_snapshot_receiver).

Protocol (control frames over the normal node connection, files over their own socket):
1. leader core -> SnapshotNeeded -> SnapshotSenderActor sends
   ``SnapshotControl("offer", [tid, target_name, leader_id, term, meta, leader_node,
   cluster_id])``; the follower's node refuses an offer of another cluster than its peer's;
2. the follower's node starts a SnapshotReceiverActor listening on
   ``snapshot_listener_addr:snapshot_listener_port`` and answers ``("accept", [tid, host,
   port])`` (or ``("reject", [tid, reason])``);
3. the sender streams the snapshot directory with kernel sendfile (manifest of sha256s,
   authenticated by the cookie; the sha256s come from the snapshot's own manifest, so the
   leader does not hash 40 MB before the first byte); the receiver verifies every file as
   it arrives, installs the directory into the follower's snapshot store (which compares
   those digests with the snapshot manifest instead of reading the files again) and tells
   the follower peer ``SnapshotArrived`` — the peer's core then installs it (term checks
   happen there);
4. any failure on the leader's side is reported as ``SnapshotSendDone(ok=False)`` so the
   core probes again; nothing partial is ever installed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

import pykka

from zraft.actors.messages import SnapshotArrived, SnapshotSendDone
from zraft.core.entries import SnapshotMeta
from zraft.ids import PeerId
from zraft.saferepr import safe_repr
from zraft.storage import SnapshotStore
from zraft.storage.snapshots import MANIFEST, SnapshotInfo
from zraft.transport import snapshot_stream
from zraft.transport.codec import SnapshotControl
from zraft.transport.snapshot_files import file_digest

if TYPE_CHECKING:
    from zraft.config import NodeConfig
    from zraft.node.events import EventLog
    from zraft.transport.tcp import TcpTransport


class SnapshotHost(Protocol):
    """What the snapshot service needs of its node (``zraft.node.server.Node``); a
    protocol, so that this module does not import the server (which imports it)."""

    address: str
    cfg: NodeConfig
    events: EventLog
    peers: dict[str, Any]
    transport: TcpTransport | None

log = logging.getLogger(__name__)

OFFER_TIMEOUT_S = 10.0


class SnapshotService:
    def __init__(self, node: SnapshotHost) -> None:
        self.node = node
        self._lock = threading.Lock()
        self._offers: dict[str, Future[list[Any]]] = {}
        self._receivers: set[Any] = set()
        self._sending: set[tuple[str, str]] = set()  # (leader peer, target peer) in progress
        self.counters = {"sent": 0, "send_failed": 0, "received": 0, "receive_failed": 0}

    def _count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self.counters)
        out["stream"] = snapshot_stream.STATS.snapshot()
        return out

    def close(self) -> None:
        """Node stop: abandon offers and cancel every receive in progress."""
        with self._lock:
            offers, self._offers = self._offers, {}
            receivers = list(self._receivers)
        for fut in offers.values():
            fut.cancel()
        for receiver in receivers:
            receiver.cancel()

    def _track(self, receiver: Any, active: bool) -> None:
        with self._lock:
            if active:
                self._receivers.add(receiver)
            else:
                self._receivers.discard(receiver)

    # ------------------------------------------------------------------ leader side

    def send(self, leader_ref: Any, leader_id: str, target: str, meta: SnapshotMeta,
             term: int, cluster: str = "") -> None:
        """Start a transfer, unless one to that peer is still running (the core asks again
        when a transfer takes long; the running one will answer it)."""
        with self._lock:
            if (leader_id, target) in self._sending:
                return
            self._sending.add((leader_id, target))
        SnapshotSenderActor.start(self, leader_ref, leader_id, target, meta, term, cluster)

    def _sent(self, leader_id: str, target: str) -> None:
        with self._lock:
            self._sending.discard((leader_id, target))

    def offer(self, target: str, leader_id: str, term: int, meta: SnapshotMeta,
              cluster: str = "") -> list[Any]:
        """Ask the target's node to get ready; returns [host, port] or raises."""
        tid = uuid.uuid4().hex
        fut: Future[list[Any]] = Future()
        with self._lock:
            self._offers[tid] = fut
        try:
            transport = self.node.transport
            assert transport is not None
            pid = PeerId.parse(target)
            transport.send(pid.node, SnapshotControl(
                "offer", [tid, pid.name, leader_id, term, list(meta), self.node.address,
                          cluster]))
            return fut.result(timeout=OFFER_TIMEOUT_S)
        finally:
            with self._lock:
                self._offers.pop(tid, None)

    # ------------------------------------------------------------------ control frames

    def on_control(self, conn: Any, frame: SnapshotControl) -> None:
        """A control frame from another node (or anyone holding the cookie): whatever it
        holds, it fails alone and is logged with bounded values."""
        op, args = frame.op, frame.args
        try:
            if op == "offer":
                self._on_offer(conn, args)
            elif op in ("accept", "reject"):
                with self._lock:
                    fut = self._offers.get(_wire_str(args[0], "tid"))
                if fut is not None and not fut.done():
                    if op == "accept":
                        fut.set_result([_wire_str(args[1], "host"), _wire_int(args[2], "port")])
                    else:
                        fut.set_exception(RuntimeError(
                            f"receiver refused: {safe_repr(args[1], 200)}"))
            else:
                log.warning("unknown snapshot control op %s from %s", safe_repr(op),
                            conn.peer_id)
        except Exception as exc:
            log.warning("bad snapshot control frame %s from %s: %s: %s", safe_repr(op),
                        conn.peer_id, type(exc).__name__, safe_repr(str(exc), 200))

    def _on_offer(self, conn: Any, args: list[Any]) -> None:
        tid, name, leader_id, term, raw_meta, _leader_node = args[:6]
        cluster = _wire_str(args[6], "cluster") if len(args) > 6 else ""
        tid, name = _wire_str(tid, "tid"), _wire_str(name, "peer name")
        leader_id, term = _wire_str(leader_id, "leader id"), _wire_int(term, "term")
        meta = SnapshotMeta.from_wire(raw_meta)
        entry = self.node.peers.get(name)
        if entry is None:
            conn.send(SnapshotControl("reject", [tid, f"no peer {safe_repr(name)} here"]))
            return
        if entry.cluster_id and cluster != entry.cluster_id:
            log.error("SAFETY ALARM refused a snapshot offer for %s from %s of cluster %s "
                      "(ours: %s)", entry.peer_id, safe_repr(leader_id, 80),
                      safe_repr(cluster, 80), entry.cluster_id)
            conn.send(SnapshotControl("reject", [tid, "another cluster"]))
            return
        cfg = self.node.cfg
        # retain=2, as the peer's own store: placing the received snapshot must not delete
        # the local one a restarted peer's state machine has yet to load (it loads it
        # lazily; a message needing the state before the install loaded a deleted
        # snapshot and stopped the peer: backend_failed, seen with the sqlite backend)
        store = SnapshotStore.for_peer(cfg.snapshot_dir, entry.peer_id,
                                       backup=cfg.raft.snapshot_backup, retain=2)
        dest = store.new_tmp_dir()
        dest.rmdir()  # the receiver creates it atomically when the transfer is complete
        bind, advertise = cfg.snapshot_endpoint()
        receiver = snapshot_stream.SnapshotReceiver(
            dest, cfg.resolved_cookie(), self.node.address,
            listen_addr=bind, listen_port=cfg.raft.snapshot_listener_port,
            advertise_addr=advertise,
            accept_timeout=10.0, io_timeout=10.0, tls=_tls(self.node, "server"))
        try:
            host, port = receiver.start()
            self._track(receiver, True)
        except OSError as exc:
            conn.send(SnapshotControl("reject", [tid, f"cannot listen: {exc}"]))
            return
        SnapshotReceiverActor.start(self, receiver, store, entry.name, leader_id, term, meta,
                                    cluster)
        # the start of a catch-up by snapshot (its end: the peer's "snapshot_installed")
        self.node.events.record("snapshot_receiving", peer=entry.peer_id, index=meta.index,
                                leader=leader_id)
        conn.send(SnapshotControl("accept", [tid, host, port]))


def _tls(node: object, side: str) -> Any:
    """The node's TLS context for one side of a snapshot stream (None: plaintext)."""
    tls = getattr(node, "tls", None)
    return None if tls is None else getattr(tls, side)


def _wire_str(value: Any, what: str) -> str:
    if type(value) is not str:
        raise ValueError(f"{what} must be a string, not {safe_repr(value, 40)}")
    return value


def _wire_int(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{what} must be an int >= 0, not {safe_repr(value, 40)}")
    return value


def stream_manifest(info: SnapshotInfo) -> list[snapshot_stream.ManifestEntry]:
    """The transfer manifest of a local snapshot from the sha256s its own manifest holds
    (hashed when it was committed, and the receiver checks every byte against them), so
    the leader does not read the snapshot once more before sending it. The files on disk
    must be exactly the listed ones plus the manifest file, else the directory is hashed."""
    listed = {f.path: f for f in info.files}
    on_disk = snapshot_stream.list_files(info.path)
    if {rel for rel, _p, _s in on_disk} != {*listed, MANIFEST}:
        return snapshot_stream.build_manifest(info.path)
    entries = []
    for rel, path, size in on_disk:
        known = listed.get(rel)
        if known is not None and known.size == size:
            entries.append(snapshot_stream.ManifestEntry(rel, size, bytes.fromhex(known.sha256)))
        elif known is None:  # the manifest file itself: small
            entries.append(snapshot_stream.ManifestEntry(rel, size, file_digest(path, size)))
        else:
            return snapshot_stream.build_manifest(info.path)
    return entries


class SnapshotSenderActor(pykka.ThreadingActor):
    """One outgoing transfer (temporary: never restarted; the core retries)."""

    def __init__(self, service: SnapshotService, leader_ref: Any, leader_id: str,
                 target: str, meta: SnapshotMeta, term: int, cluster: str = "") -> None:
        super().__init__()
        self.service, self.leader_ref, self.leader_id = service, leader_ref, leader_id
        self.target, self.meta, self.term = target, meta, term
        self.cluster = cluster

    def on_start(self) -> None:
        self.actor_ref.tell("run")

    def on_receive(self, message: Any) -> Any:
        if message == "run":
            try:
                self._run()
            finally:
                self.service._sent(self.leader_id, self.target)
                self.stop()
        return None

    def _run(self) -> None:
        node = self.service.node
        cfg = node.cfg
        try:
            # The newest local snapshot covers at least what the core asked for, and its
            # manifest carries the full meta (index, term, config) the follower installs.
            info = SnapshotStore.for_peer(cfg.snapshot_dir, self.leader_id).latest()
            if info is None or info.meta.index < self.meta.index:
                raise RuntimeError(f"no local snapshot at or after {self.meta.index}")
            self.meta = info.meta
            host, port = self.service.offer(self.target, self.leader_id, self.term, self.meta,
                                            self.cluster)
            log.info("sending snapshot %d to %s at %s:%d", self.meta.index, self.target, host, port)

            def progress(done: int, total: int) -> None:
                if total and done == total:
                    log.info("snapshot %d to %s: %d bytes sent", self.meta.index,
                             self.target, total)

            result = snapshot_stream.send_snapshot(
                info.path, host, port, cfg.resolved_cookie(), node.address,
                on_progress=progress, manifest=stream_manifest(info),
                tls=_tls(node, "client"))
            log.info("snapshot %d sent to %s: %d files, %d bytes, %.1f MB/s",
                     self.meta.index, self.target, result.files, result.bytes,
                     result.mb_per_s)
            self.service._count("sent")
            node.events.record("snapshot_sent", peer=self.leader_id, to=self.target,
                               index=self.meta.index, bytes=result.bytes)
        except Exception as exc:
            self.service._count("send_failed")
            log.warning("snapshot %d to %s failed: %s", self.meta.index, self.target, exc)
            with contextlib.suppress(pykka.ActorDeadError):
                self.leader_ref.tell(SnapshotSendDone(self.target, False, str(exc)))


class SnapshotReceiverActor(pykka.ThreadingActor):
    """One incoming transfer: wait for the files, verify, install, tell the peer."""

    def __init__(self, service: SnapshotService, receiver: Any, store: SnapshotStore,
                 peer_name: str, leader_id: str, term: int, meta: SnapshotMeta,
                 cluster: str = "") -> None:
        super().__init__()
        self.cluster = cluster
        self.service, self.receiver, self.store = service, receiver, store
        self.peer_name, self.leader_id, self.term, self.meta = peer_name, leader_id, term, meta

    def on_start(self) -> None:
        self.actor_ref.tell("run")

    def on_receive(self, message: Any) -> Any:
        if message == "run":
            try:
                self._run()
            finally:
                self.stop()
        return None

    def _run(self) -> None:
        try:
            result = self.receiver.wait(timeout=120)
            placing = time.monotonic()
            # every byte was hashed on the way in: the store compares, it does not re-read
            info = self.store.install(self.receiver.dest_dir, known_digests=result.digests)
            log.info("snapshot %d from %s received: %d bytes in %.3f s (%.0f MB/s, verified "
                     "and fsynced), placed in the store in %.3f s", self.meta.index,
                     self.leader_id, result.bytes, result.seconds, result.mb_per_s,
                     time.monotonic() - placing)
        except Exception as exc:
            self.service._count("receive_failed")
            log.warning("snapshot %d from %s not received: %s", self.meta.index,
                        self.leader_id, exc)
            self.receiver.cancel()
            return
        finally:
            self.service._track(self.receiver, False)
        self.service._count("received")
        entry = self.service.node.peers.get(self.peer_name)
        ref = entry.handle.resolve() if entry is not None else None
        if ref is not None:
            ref.tell(SnapshotArrived(self.term, self.leader_id, self.meta, str(info.path),
                                     self.cluster))
