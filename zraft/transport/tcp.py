"""TCP transport of one node: a listening server plus one outbound connection per peer node.

Rules:
- Every connection starts with the cookie handshake (``handshake.py``); until it succeeds no
  frame is read. Then each side reads length-prefixed frames decoded by the strict codec.
- Inbound: every frame decoded from ONE socket read goes to ``on_frames(conn, frames)`` in ONE
  call, so the node can batch (step many messages, then run one Ready). Replies go back on
  the same connection with ``conn.send`` (that is how client connections are answered).
- Outbound: ``send(addr, frame)`` appends to the queue of the link for ``addr`` ("host:port")
  and returns at once; it never blocks on a dead or slow peer. ONE link per peer node carries
  the traffic of every Raft group on this node to that node (messages name their peers).
  A node pair therefore uses two TCP connections, one dialed by each side (see below).
- Queues are bounded (frames and bytes). When full the OLDEST frames are dropped and counted:
  Raft retransmits whatever matters, and the newest messages carry the newest terms, commit
  indexes and heartbeats, so keeping them is what helps the peer once it is reachable again.
- A link reconnects with exponential backoff and jitter (tenacity), capped, forever, until the
  transport closes. Its state and counters are visible in ``status()``.
- Malformed input (garbage, truncated or oversized frames, unknown kinds, wrong field types)
  closes that connection only, and is logged; the server keeps serving everyone else.
- ``block(addrs)`` drops all traffic to and from those node addresses (fault injection).
- ``close()`` stops everything and joins every thread with a timeout.

Threads, and why: one reader thread per connection and one writer thread per connection
(lazily started for inbound ones, which mostly only read). A node has a handful of peers and
some clients; blocking ``recv``/``sendall`` release the GIL, handshakes with timeouts stay
simple straight-line code, a slow connection can never stall another one, and there is no
selector loop to become the single hot thread. Connection counts in the thousands would call
for a selector; a Raft node does not have them.

Why two connections per node pair and not one shared bidirectional one: each side's queue,
writer and reconnect loop then belong to exactly one connection that this side dialed, and
there is no simultaneous-connect race to arbitrate. All groups are still multiplexed, which
is what keeps the connection count at O(nodes), not O(groups).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

import tenacity

from zraft.transport import codec
from zraft.transport.connection import (
    Connection,
    OnFrames,
    SendQueue,
    TransportConfig,
    as_frame_bytes,
    connect,
    parse_addr,
    tune_socket,
)
from zraft.transport.errors import HandshakeError
from zraft.transport.handshake import client_handshake, cookie_bytes, server_handshake

log = logging.getLogger("zraft.transport.tcp")

__all__ = ["Connection", "PeerLink", "TcpTransport", "TransportConfig", "connect", "parse_addr"]


class _Stopped(Exception):
    pass


class PeerLink:
    """The outbound side towards one peer node: a persistent queue and a thread that dials
    (with backoff), writes until the connection breaks, and dials again."""

    def __init__(self, transport: TcpTransport, addr: str) -> None:
        self.addr = addr
        self._transport = transport
        cfg = transport.config
        self.queue = SendQueue(cfg.queue_max_frames, cfg.queue_max_bytes)
        self.state = "disconnected"
        self.conn: Connection | None = None
        self.connects = 0
        self.connect_failures = 0
        self.frames_sent_total = 0
        self.last_error: str | None = None
        self._failure_streak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"zraft-link-{addr}", daemon=True)
        self._thread.start()

    def send(self, data: bytes) -> None:
        self.queue.put(data)

    def stop(self) -> None:
        self._stop.set()
        self.queue.wake()
        conn = self.conn
        if conn is not None:
            conn.close()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        cfg = self._transport.config
        retrying = tenacity.Retrying(
            # exponential, capped, plus jitter (spelled so that tenacity 8 and 9 agree)
            wait=tenacity.wait_exponential(multiplier=cfg.reconnect_initial, max=cfg.reconnect_max)
            + tenacity.wait_random(0, cfg.reconnect_initial),
            retry=tenacity.retry_if_exception_type((OSError, HandshakeError)),
            stop=lambda _state: self._stop.is_set(),
            sleep=self._stop.wait,
            before_sleep=self._note_failure,
            reraise=True,
        )
        while not self._stop.is_set():
            # Dial only when there is something to send: an idle link to a dead node costs
            # nothing, and Raft heartbeats keep live links busy anyway.
            if not self.queue.wait_nonempty(0.5):
                continue
            self.state = "connecting"
            try:
                sock, peer_id = retrying(self._dial)
            except (OSError, HandshakeError, _Stopped):
                break
            conn = Connection(
                sock,
                peer_id,
                inbound=False,
                on_frames=self._transport.on_frames,
                config=cfg,
                queue=self.queue,
                # filter on the address we dialed, whatever id the peer announced
                is_blocked=lambda _peer: self.addr in self._transport.blocked,
                on_malformed=self._transport.count_malformed,
                label=f"link:{self.addr}",
            )
            self.conn = conn
            self.state = "connected"
            self.connects += 1
            if self._failure_streak:
                log.info("link to %s up after %d failed attempts", self.addr, self._failure_streak)
            self._failure_streak = 0
            conn.start_reader()
            conn.write_loop()  # returns when the connection breaks or the link stops
            conn.join(cfg.join_timeout)
            self.frames_sent_total += conn.frames_out
            self.conn = None
            self.state = "disconnected"
        self.state = "closed"

    def _dial(self) -> tuple[socket.socket, str]:
        if self._stop.is_set():
            raise _Stopped()
        cfg = self._transport.config
        sock = socket.create_connection(parse_addr(self.addr), timeout=cfg.connect_timeout)
        try:
            auth = client_handshake(
                sock, self._transport.cookie, self._transport.node_id, cfg.handshake_timeout
            )
            tune_socket(sock, cfg.write_timeout)
        except BaseException:
            sock.close()
            raise
        return sock, auth.peer_id

    def _note_failure(self, state: tenacity.RetryCallState) -> None:
        self.connect_failures += 1
        self._failure_streak += 1
        exc = state.outcome.exception() if state.outcome else None
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.state = "backoff"
        if self._failure_streak == 1 or self._failure_streak % 50 == 0:
            log.warning(
                "cannot reach %s (attempt %d): %s", self.addr, self._failure_streak, self.last_error
            )

    def stats(self) -> dict[str, Any]:
        conn = self.conn
        return {
            "state": self.state,
            "connected": self.state == "connected",
            "connects": self.connects,
            "connect_failures": self.connect_failures,
            "last_error": self.last_error,
            "queued": len(self.queue),
            "queued_bytes": self.queue.nbytes,
            "dropped": self.queue.dropped,
            "frames_sent": self.frames_sent_total + (conn.frames_out if conn else 0),
            "frames_received": conn.frames_in if conn else 0,
        }


class TcpTransport:
    """A node's transport. ``start()`` binds and returns the listen address; ``node_id``
    (default: the bound "host:port") is the id proved to peers in handshakes."""

    def __init__(
        self,
        cookie: str | bytes,
        on_frames: OnFrames,
        *,
        listen: tuple[str, int] | None = ("127.0.0.1", 0),
        node_id: str | None = None,
        config: TransportConfig | None = None,
    ) -> None:
        self.cookie = cookie_bytes(cookie)
        self.on_frames = on_frames
        self.config = config or TransportConfig()
        self._listen = listen
        self.node_id = node_id or ""
        self.address: str | None = None
        self._lock = threading.Lock()
        self._links: dict[str, PeerLink] = {}
        self._inbound: set[Connection] = set()
        self._handshaking: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._blocked: frozenset[str] = frozenset()
        self._closing = threading.Event()
        self._lsock: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._counter_lock = threading.Lock()
        self.counters = {
            "accepted": 0,
            "auth_failures": 0,
            "malformed": 0,
            "refused_over_limit": 0,
            "dropped_by_filter": 0,
        }

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> tuple[str, int] | None:
        """Bind and serve (if ``listen`` was given); returns the bound (host, port)."""
        if self._listen is None:
            if not self.node_id:
                raise ValueError("a transport without a listener needs a node_id")
            return None
        lsock = socket.socket(socket.AF_INET6 if ":" in self._listen[0] else socket.AF_INET)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(self._listen)
        lsock.listen(1024)
        lsock.settimeout(0.5)  # the accept loop re-checks for shutdown at least this often
        host, port = lsock.getsockname()[:2]
        self._lsock = lsock
        self.address = f"{host}:{port}"
        if not self.node_id:
            self.node_id = self.address
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"zraft-accept-{port}", daemon=True
        )
        self._acceptor.start()
        return host, port

    def close(self) -> None:
        """Stop accepting, close every connection and link, join threads (bounded)."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._lsock is not None:
            with contextlib.suppress(OSError):
                self._lsock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self._lsock.close()
        with self._lock:
            links = list(self._links.values())
            inbound = list(self._inbound)
            threads = list(self._threads)
            handshaking = list(self._handshaking)
        for sock in handshaking:  # wake handshakes blocked on a silent peer
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for link in links:
            link.stop()
        for conn in inbound:
            conn.close()
        deadline = time.monotonic() + self.config.join_timeout
        if self._acceptor is not None:
            self._acceptor.join(max(0.0, deadline - time.monotonic()))
        for link in links:
            link.join(max(0.0, deadline - time.monotonic()))
        for conn in inbound:
            conn.join(max(0.0, deadline - time.monotonic()))
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> TcpTransport:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending --------------------------------------------------------------------------

    def send(self, addr: str, frame: codec.Frame | bytes) -> bool:
        """Queue ``frame`` for node ``addr``; never blocks. False if dropped by the filter or
        the transport is closed. Bytes must be complete frames from ``codec.encode_frame``."""
        if addr in self._blocked:
            self._count("dropped_by_filter")
            return False
        if self._closing.is_set():
            return False
        link = self._links.get(addr)
        if link is None:
            link = self._link(addr)
            if link is None:
                return False
        link.send(as_frame_bytes(frame))
        return True

    def send_many(self, addr: str, frames: Iterable[codec.Frame | bytes]) -> bool:
        ok = True
        for frame in frames:
            ok = self.send(addr, frame) and ok
        return ok

    def _link(self, addr: str) -> PeerLink | None:
        parse_addr(addr)  # fail fast on a bad address, in the caller's thread
        with self._lock:
            if self._closing.is_set():
                return None
            link = self._links.get(addr)
            if link is None:
                link = self._links[addr] = PeerLink(self, addr)
            return link

    def forget(self, addr: str) -> None:
        """Drop the link to a node that left the cluster."""
        with self._lock:
            link = self._links.pop(addr, None)
        if link is not None:
            link.stop()
            link.join(self.config.join_timeout)

    # -- fault injection ------------------------------------------------------------------

    def block(self, addrs: Iterable[str]) -> None:
        """Drop all traffic to and from these node addresses (adds to the blocked set)."""
        self._blocked = self._blocked | frozenset(addrs)

    def unblock(self, addrs: Iterable[str] | None = None) -> None:
        """Stop dropping traffic for ``addrs`` (all when None)."""
        self._blocked = frozenset() if addrs is None else self._blocked - frozenset(addrs)

    @property
    def blocked(self) -> frozenset[str]:
        return self._blocked

    def is_blocked_id(self, peer_id: str) -> bool:
        return peer_id in self._blocked

    def count_malformed(self) -> None:
        self._count("malformed")

    def _count(self, name: str) -> None:
        with self._counter_lock:  # += on a dict item is not atomic across threads
            self.counters[name] += 1

    # -- serving --------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        lsock = self._lsock
        assert lsock is not None
        while not self._closing.is_set():
            try:
                sock, _ = lsock.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._closing.is_set():
                    break
                log.warning("accept failed: %s", exc)
                self._closing.wait(0.05)  # e.g. out of file descriptors: do not spin
                continue
            with self._lock:
                over = len(self._threads) >= self.config.max_connections
                if not over:
                    thread = threading.Thread(
                        target=self._serve, args=(sock,), name="zraft-serve", daemon=True
                    )
                    self._threads.add(thread)
            if over:
                self._count("refused_over_limit")
                log.warning("refusing a connection: %d open", self.config.max_connections)
                sock.close()
                continue
            self._count("accepted")
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        cfg = self.config
        conn: Connection | None = None
        try:
            with self._lock:
                self._handshaking.add(sock)
            try:
                auth = server_handshake(sock, self.cookie, self.node_id, cfg.handshake_timeout)
                tune_socket(sock, cfg.write_timeout)
            except HandshakeError:
                self._count("auth_failures")
                sock.close()
                return
            finally:
                with self._lock:
                    self._handshaking.discard(sock)
            conn = Connection(
                sock,
                auth.peer_id,
                inbound=True,
                on_frames=self.on_frames,
                config=cfg,
                is_blocked=self.is_blocked_id,
                on_malformed=self.count_malformed,
            )
            with self._lock:
                if self._closing.is_set():
                    conn.close()
                    return
                self._inbound.add(conn)
            conn.read_loop()
            conn.join(cfg.join_timeout)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
                if conn is not None:
                    self._inbound.discard(conn)

    # -- status ---------------------------------------------------------------------------

    def link_state(self, addr: str) -> dict[str, Any] | None:
        link = self._links.get(addr)
        return link.stats() if link else None

    def inbound_connections(self) -> list[Connection]:
        with self._lock:
            return list(self._inbound)

    def status(self) -> dict[str, Any]:
        with self._lock:
            links = dict(self._links)
            inbound = list(self._inbound)
        return {
            "node_id": self.node_id,
            "address": self.address,
            "blocked": sorted(self._blocked),
            "links": {addr: link.stats() for addr, link in links.items()},
            "inbound": [conn.stats() for conn in inbound],
            **self.counters,
        }
