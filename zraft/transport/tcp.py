"""TCP transport of one node: a listening server and ONE connection per peer node.

Rules:
- Every connection starts with the cookie handshake (``handshake.py``); until it succeeds no
  frame is read. The dialer says what it is: ``node`` (its id is its advertised
  "host:port", which must be the address peers dial) or ``client``.
- Inbound: every frame decoded from ONE socket read goes to ``on_frames(conn, frames)`` in ONE
  call, so the node can batch (step many messages, then run one Ready). Replies go back on
  the same connection with ``conn.send`` (that is how client connections are answered; on a
  peer node's connection ``conn.send`` feeds the peer's link queue, same as ``send``).
  ``on_frames`` runs on the connection's reader thread (or the reactor's, for clients, as
  ``on_frames_many([(conn, frames), ...])``): hand work off, do not block.
- Outbound: ``send(addr, frame)`` appends to the queue of the ``PeerLink`` for ``addr`` and
  returns at once; it never blocks on a dead or slow peer.
- ONE TCP connection per pair of nodes carries every Raft group on them, both ways
  (messages name their peers): whichever node dials first, the other adopts the inbound
  connection as its link. If both dial at once, both keep the connection dialed by the
  smaller node id and retire the other without losing frames (see ``PeerLink``).
- Queues are bounded (frames and bytes). When full the OLDEST frames are dropped and counted:
  Raft retransmits whatever matters, and the newest messages carry the newest terms, commit
  indexes and heartbeats, so keeping them is what helps the peer once it is reachable again.
- A link with frames to send and no connection dials with exponential backoff and jitter
  (tenacity), capped, until the transport closes. State and counters are in ``status()``.
- ``connect(addrs)`` makes links dial even with nothing queued, until they have a
  connection: a node that restarts calls it for the members of its groups, so a leader
  whose link to it sits in reconnect backoff adopts the fresh inbound connection at once
  (instead of waiting for its next attempt, or for this node's first election message).
  An adopted connection ends the link's backoff.
- Malformed input (garbage, truncated or oversized frames, unknown kinds, wrong field types)
  closes that connection only, and is logged; the server keeps serving everyone else.
- ``block(addrs)`` drops all traffic to and from those node addresses (fault injection).
- ``close()`` stops everything and joins every thread with a timeout.

Threads, and why: node-to-node connections have a reader and a writer thread each (a handful
of them, busy, and a slow peer must never stall another); client connections are all read by
ONE reactor thread (``reactor.py``, epoll): with a thread per client, 64 clients meant 64
threads waking and fighting for the GIL on every request (the W3 benchmark spent more time
handing the GIL around than in Raft), and one round of the reactor becomes one
``on_frames_many`` call, so one ClientBatch per peer. Writes are direct from the sending
thread when the socket takes them (see ``connection.py``), else by a writer thread.
Handshakes run on a short-lived thread each (blocking, with timeouts: simple code).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import tenacity

from zraft.saferepr import safe_repr
from zraft.transport import codec
from zraft.transport.connection import (
    Connection,
    OnFrames,
    SendQueue,
    TransportConfig,
    as_frame_bytes,
    connect,
    format_addr,
    parse_addr,
    tune_socket,
)
from zraft.transport.errors import HandshakeError
from zraft.transport.handshake import client_handshake, cookie_bytes, server_handshake
from zraft.transport.reactor import Reactor

log = logging.getLogger("zraft.transport.tcp")

__all__ = [
    "Connection",
    "PeerLink",
    "TcpTransport",
    "TransportConfig",
    "connect",
    "format_addr",
    "parse_addr",
]


class _Stopped(Exception):
    pass


class PeerLink:
    """Everything this node sends to one peer node: a persistent bounded queue, the ONE
    connection currently carrying it (dialed by us, or adopted from the peer's dial), and a
    thread that dials with backoff whenever there is something to send and no connection.

    Duplicate resolution: if both nodes dial at once, each ends up holding two connections.
    Both keep the one dialed by the node with the smaller id and retire the other, so they
    agree without talking: a retired connection stops writing, half-closes, and is read
    until the other side half-closes too, so frames already written on it still arrive.
    Frames still queued simply go out on the surviving connection.
    """

    def __init__(self, transport: TcpTransport, addr: str) -> None:
        self.addr = addr
        self._transport = transport
        cfg = transport.config
        self.queue = SendQueue(cfg.queue_max_frames, cfg.queue_max_bytes)
        self.conn: Connection | None = None
        self._last_conn: Connection | None = None  # the one stop() closed, for join()
        self.connects = 0
        self.adopted = 0
        self.duplicates_closed = 0
        self.connect_failures = 0
        self.frames_sent_done = 0  # frames written by connections that are gone
        self.last_error: str | None = None
        self._dialing = False
        self._failure_streak = 0
        self._wanted = False  # connect() asked for a connection with nothing queued
        self._cond = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"zraft-link-{addr}", daemon=True)
        self._thread.start()

    # -- used by the transport ------------------------------------------------------------

    @property
    def state(self) -> str:
        if self._stop.is_set():
            return "closed"
        if self._live():
            return "connected"
        if self._dialing:
            return "backoff" if self._failure_streak else "connecting"
        return "disconnected"

    def send(self, data: bytes) -> None:
        conn = self.conn
        if conn is not None and conn.try_send_now(data):
            return
        self.queue.put(data)
        if not self._live():
            with self._cond:
                self._cond.notify_all()  # wake the dialer

    def want_connection(self) -> None:
        """Dial now even with nothing to send (until a connection is up)."""
        with self._cond:
            self._wanted = True
            self._cond.notify_all()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            conn = self.conn
            self._cond.notify_all()
        self.queue.wake()
        if conn is not None:
            self._last_conn = conn
            conn.close()

    def join(self, timeout: float) -> None:
        """Join the dialer and the threads of the connection it carried at ``stop``."""
        deadline = time.monotonic() + timeout
        self._thread.join(timeout)
        conn = self._last_conn
        if conn is not None:
            conn.join(max(0.0, deadline - time.monotonic()))

    def install(self, conn: Connection) -> bool:
        """Offer a fresh connection to this peer (ours or theirs). Returns True if it now
        carries the link; otherwise it is a duplicate and has been retired."""
        loser: Connection | None = None
        with self._cond:
            current = self.conn
            if self._stop.is_set():
                take, loser = False, conn
            elif current is None or current.closed:
                take = True
            elif current.inbound == conn.inbound:
                take, loser = True, current  # a newer connection from the same dialer
            else:
                smaller_dials = self._transport.node_id < conn.peer_id
                # keep the connection dialed by the smaller id: ours if we are smaller
                take = conn.inbound != smaller_dials
                loser = current if take else conn
            if take:
                self.conn = conn
                self.connects += 1
                self._wanted = False
                self._failure_streak = 0  # the dialer's backoff ends (see _pause)
                if conn.inbound:
                    self.adopted += 1
                conn.use_queue(self.queue)
                self._cond.notify_all()
        if loser is not None:
            if self._stop.is_set():
                loser.close()
            else:
                self.duplicates_closed += 1
                log.info("retiring duplicate connection with %s (%s)", self.addr, loser.remote)
                loser.retire(self._transport.config.retire_grace)
        if take:
            conn.start_writer()
        return take

    def connection_closed(self, conn: Connection) -> None:
        with self._cond:
            if self.conn is conn:
                self.conn = None
                self.frames_sent_done += conn.frames_out
                self._cond.notify_all()

    # -- the dialing thread ---------------------------------------------------------------

    def _live(self) -> bool:
        conn = self.conn
        return conn is not None and not conn.closed

    def _should_dial(self) -> bool:
        return (not self._stop.is_set() and not self._live()
                and (self._wanted or len(self.queue) > 0))

    def _pause(self, seconds: float) -> None:
        """Backoff sleep that ends early on stop or when the peer's dial gave us a link."""
        with self._cond:
            self._cond.wait_for(lambda: self._stop.is_set() or self._live(), seconds)

    def _run(self) -> None:
        cfg = self._transport.config
        retrying = tenacity.Retrying(
            # exponential, capped, plus jitter (spelled so that tenacity 8 and 9 agree)
            wait=tenacity.wait_exponential(multiplier=cfg.reconnect_initial, max=cfg.reconnect_max)
            + tenacity.wait_random(0, cfg.reconnect_initial),
            retry=tenacity.retry_if_exception_type((OSError, HandshakeError)),
            stop=lambda _state: not self._should_dial(),
            sleep=self._pause,
            before_sleep=self._note_failure,
            reraise=True,
        )
        while not self._stop.is_set():
            # Dial only when there is something to send and no connection: an idle link to a
            # dead node costs nothing, and Raft heartbeats keep live links busy anyway.
            with self._cond:
                self._cond.wait_for(lambda: self._stop.is_set() or self._should_dial(), 0.5)
            if not self._should_dial():
                continue
            self._dialing = True
            try:
                sock, auth = retrying(self._dial)
            except (OSError, HandshakeError, _Stopped):
                continue  # stopped, or the peer dialed us meanwhile
            finally:
                self._dialing = False
            if self._failure_streak:
                log.info("link to %s up after %d failed attempts", self.addr, self._failure_streak)
            if auth.peer_id != self.addr:
                log.warning(
                    "%s announces itself as %s; use node ids that are the advertised "
                    "host:port so both directions share one connection",
                    self.addr,
                    safe_repr(auth.peer_id),
                )
            conn = Connection(
                sock,
                auth.peer_id,
                inbound=False,
                role="node",
                on_frames=self._transport.on_frames,
                config=cfg,
                queue=self.queue,
                # filter on the address we dialed, whatever id the peer announced
                is_blocked=lambda _peer: self.addr in self._transport.blocked_in,
                on_malformed=self._transport.count_malformed,
                on_close=self.connection_closed,
                label=f"link:{self.addr}",
            )
            self.install(conn)
            conn.start_reader()  # even a retired duplicate is read to its end

    def _dial(self) -> tuple[socket.socket, Any]:
        if not self._should_dial():
            raise _Stopped()
        cfg = self._transport.config
        sock = socket.create_connection(parse_addr(self.addr), timeout=cfg.connect_timeout)
        try:
            auth = client_handshake(
                sock,
                self._transport.cookie,
                self._transport.node_id,
                cfg.handshake_timeout,
                role="node",
            )
            tune_socket(sock, cfg.write_timeout)
        except BaseException:
            sock.close()
            raise
        return sock, auth

    def _note_failure(self, state: tenacity.RetryCallState) -> None:
        self.connect_failures += 1
        self._failure_streak += 1
        exc = state.outcome.exception() if state.outcome else None
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self._failure_streak == 1 or self._failure_streak % 50 == 0:
            log.warning(
                "cannot reach %s (attempt %d): %s", self.addr, self._failure_streak, self.last_error
            )

    def stats(self) -> dict[str, Any]:
        conn = self.conn
        live = conn is not None and not conn.closed
        return {
            "state": self.state,
            "connected": live,
            "direction": (("inbound" if conn.inbound else "outbound") if live and conn else None),
            "local": conn.local if live and conn else None,
            "remote": conn.remote if live and conn else None,
            "connects": self.connects,
            "adopted": self.adopted,
            "duplicates_closed": self.duplicates_closed,
            "connect_failures": self.connect_failures,
            "last_error": self.last_error,
            "queued": len(self.queue),
            "queued_bytes": self.queue.nbytes,
            "dropped": self.queue.dropped,
            "frames_sent": self.frames_sent_done + (conn.frames_out if live and conn else 0),
            "frames_received": conn.frames_in if live and conn else 0,
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
        on_frames_many: Callable[[list[tuple[Connection, list[Any]]]], None] | None = None,
    ) -> None:
        self.cookie = cookie_bytes(cookie)
        self.on_frames = on_frames
        # Client connections are read by one Reactor thread; what one round read from all
        # of them arrives in one on_frames_many call (or one on_frames call per connection).
        self.on_frames_many = on_frames_many or self._each_on_frames
        self._reactor: Reactor | None = None
        self.config = config or TransportConfig()
        self._listen = listen
        self.node_id = node_id or ""
        self.address: str | None = None
        self._lock = threading.Lock()
        self._links: dict[str, PeerLink] = {}
        self._inbound: set[Connection] = set()
        self._handshaking: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        # fault injection: frames from _blocked_in are dropped on arrival, frames to
        # _blocked_out are dropped before sending (a one-way partition blocks one side)
        self._blocked_in: frozenset[str] = frozenset()
        self._blocked_out: frozenset[str] = frozenset()
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

    def start(self, serve: bool = True) -> tuple[str, int] | None:
        """Bind and (unless ``serve`` is false) serve, if ``listen`` was given; returns the
        bound (host, port). ``serve=False`` holds the port (a busy port fails here) but
        refuses connections until `serve`: a node binds, restores its peers, then serves, so
        "it accepts connections" means "its peers are there"."""
        if self._listen is None:
            if not self.node_id:
                raise ValueError("a transport without a listener needs a node_id")
            return None
        lsock = socket.socket(socket.AF_INET6 if ":" in self._listen[0] else socket.AF_INET)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(self._listen)
        lsock.settimeout(0.5)  # the accept loop re-checks for shutdown at least this often
        host, port = lsock.getsockname()[:2]
        self._lsock = lsock
        self.address = format_addr(host, port)
        if not self.node_id:
            self.node_id = self.address
        if serve:
            self.serve()
        return host, port

    def serve(self) -> None:
        """Listen and accept (once; after ``start(serve=False)``)."""
        lsock = self._lsock
        if lsock is None or self._acceptor is not None:
            return
        lsock.listen(1024)
        port = lsock.getsockname()[1]
        if self.config.client_reactor:
            self._reactor = Reactor(self.on_frames_many, name=f"zraft-reactor-{port}")
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"zraft-accept-{port}", daemon=True
        )
        self._acceptor.start()

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
        if self._reactor is not None:
            self._reactor.stop(self.config.join_timeout)
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
        if addr in self._blocked_out:
            self._count("dropped_by_filter")
            return False
        if self._closing.is_set():
            return False
        if addr == self.node_id:
            raise ValueError("a node does not send to itself: deliver local messages directly")
        link = self._links.get(addr)
        if link is None:
            link = self._link(addr)
            if link is None:
                return False
        link.send(as_frame_bytes(frame))
        return True

    def connect(self, addrs: Iterable[str]) -> None:
        """Have a connection to each node in ``addrs`` (dial now, nothing queued needed);
        see the module rules. Our own address and blocked ones are skipped."""
        for addr in addrs:
            if addr == self.node_id or addr in self._blocked_out:
                continue
            link = self._links.get(addr) or self._link(addr)
            if link is not None:
                link.want_connection()

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

    def block(self, addrs: Iterable[str], direction: str = "both") -> None:
        """Drop traffic with these node addresses: ``in`` (what they send us), ``out`` (what
        we send them) or ``both``. Adds to what is already blocked."""
        if direction not in ("in", "out", "both"):
            raise ValueError(f"direction must be in, out or both, not {direction!r}")
        addrs = frozenset(addrs)
        if direction in ("in", "both"):
            self._blocked_in = self._blocked_in | addrs
        if direction in ("out", "both"):
            self._blocked_out = self._blocked_out | addrs

    def unblock(self, addrs: Iterable[str] | None = None) -> None:
        """Stop dropping traffic for ``addrs`` in both directions (all when None)."""
        if addrs is None:
            self._blocked_in = self._blocked_out = frozenset()
        else:
            gone = frozenset(addrs)
            self._blocked_in = self._blocked_in - gone
            self._blocked_out = self._blocked_out - gone

    @property
    def blocked(self) -> frozenset[str]:
        """Every address with traffic dropped in at least one direction."""
        return self._blocked_in | self._blocked_out

    @property
    def blocked_in(self) -> frozenset[str]:
        return self._blocked_in

    @property
    def blocked_out(self) -> frozenset[str]:
        return self._blocked_out

    def is_blocked_id(self, peer_id: str) -> bool:
        return peer_id in self._blocked_in

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
            link: PeerLink | None = None
            if auth.role == "node":
                try:
                    link = self._link(auth.peer_id)
                except ValueError:
                    log.warning("refusing node %s: its id is not host:port",
                                safe_repr(auth.peer_id))
                if link is None:
                    sock.close()
                    return
            elif auth.role != "client":
                log.warning("refusing a %s connection from %s", safe_repr(auth.role),
                        safe_repr(auth.peer_id))
                sock.close()
                return
            conn = Connection(
                sock,
                auth.peer_id,
                inbound=True,
                role=auth.role,
                on_frames=self.on_frames,
                config=cfg,
                is_blocked=self.is_blocked_id,
                on_malformed=self.count_malformed,
                on_close=link.connection_closed if link is not None else self._client_closed,
                # conn.send on any connection of a peer node goes through its link, so a
                # reply sent on a duplicate that is being retired still gets out
                queue=link.queue if link is not None else None,
            )
            with self._lock:
                if self._closing.is_set():
                    conn.close()
                    return
                self._inbound.add(conn)
            if link is not None:
                link.install(conn)  # a losing duplicate is retired: still read to the end
            elif self._reactor is not None and self._reactor.add(conn):
                conn = None  # the reactor reads it; it leaves _inbound when it closes
                return
            conn.read_loop()
            conn.join(cfg.join_timeout)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
                if conn is not None:
                    self._inbound.discard(conn)

    def _client_closed(self, conn: Connection) -> None:
        with self._lock:
            self._inbound.discard(conn)

    def _each_on_frames(self, ready: list[tuple[Connection, list[Any]]]) -> None:
        for conn, frames in ready:
            try:
                self.on_frames(conn, frames)
            except Exception:
                log.exception("on_frames callback failed")

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
            "blocked": sorted(self.blocked),
            "blocked_in": sorted(self._blocked_in),
            "blocked_out": sorted(self._blocked_out),
            "links": {addr: link.stats() for addr, link in links.items()},
            "inbound": [conn.stats() for conn in inbound],
            **self.counters,
        }
