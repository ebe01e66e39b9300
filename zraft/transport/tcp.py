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
- Malformed input (garbage, truncated or oversized frames, unknown kinds, wrong field types,
  too deep values), a partial frame over the node-wide buffer budget (``max_buffered_bytes``)
  or any other exception while reading it closes that connection only, and is logged; the
  server keeps serving everyone else.
- No thread that serves many connections dies of one: the reactor and the handshake threads
  catch everything per connection, the accept loop survives anything (and backs off on
  EMFILE, see ``limits.py``). Should the reactor or the accept loop die anyway, a new one
  starts; past ``RESTARTS`` restarts in ``RESTART_PERIOD_S``, ``on_fatal(message)`` is called
  (a node exits with code 1): never limping on without them.
- Pending handshakes are capped (``max_handshaking``, the oldest evicted first), client
  connections too (``max_connections``; peer nodes always get in); a node sizes both from
  its fd limit (``limits.py``).
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
``PeerLink`` (one per peer node) lives in ``peer_link.py``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final

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
from zraft.transport.frame_auth import for_connection
from zraft.transport.framing import BufferBudget
from zraft.transport.handshake import cookie_bytes, server_handshake
from zraft.transport.joining import join_started
from zraft.transport.limits import RESOURCE_ERRNOS, AcceptBackoff
from zraft.transport.peer_link import PeerLink
from zraft.transport.reactor import Reactor
from zraft.transport.tls import NodeTls, TlsSocket, accept_tls, wrap_server

log = logging.getLogger("zraft.transport.tcp")

__all__ = [
    "Connection",
    "PeerLink",
    "SendQueue",
    "TcpTransport",
    "TransportConfig",
    "connect",
    "format_addr",
    "parse_addr",
]


RESTARTS: Final = 3  # of the reactor / accept loop, within RESTART_PERIOD_S, then fatal
RESTART_PERIOD_S: Final = 60.0


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
        on_fatal: Callable[[str], None] | None = None,
        on_shrink: Callable[[], object] | None = None,
        tls: NodeTls | None = None,
        client_cookie: str | bytes | None = None,
    ) -> None:
        """``client_cookie``: a second secret admitting unprivileged clients only
        (``handshake.server_handshake``); ``on_fatal(message)``: a serving thread kept
        dying (see the module rules);
        ``on_shrink()``: a large partial frame's memory was freed (e.g. trim the heap);
        ``tls``: every connection, both ways, is TLS (``tls.py``), the cookie on top."""
        self.cookie = cookie_bytes(cookie)
        self.client_cookie = cookie_bytes(client_cookie) if client_cookie else None
        self.tls = tls
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
        # pending handshakes, oldest first (dicts keep insertion order): evicted in order
        self._handshaking: dict[socket.socket, float] = {}
        self._threads: set[threading.Thread] = set()
        self.buffers = BufferBudget(self.config.max_buffered_bytes)
        self._on_shrink = on_shrink
        self._on_fatal = on_fatal
        self.fatal: str | None = None
        self._restarts: deque[float] = deque()
        self._dead_reactors: weakref.WeakSet[Reactor] = weakref.WeakSet()
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
            "handshakes_evicted": 0,
            "closed_over_buffer_budget": 0,
            "closed_bad_mac": 0,
            "accept_errors": 0,
            "thread_restarts": 0,
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
        if self.config.client_reactor:
            self._start_reactor()
        self._start_acceptor()

    def _start_reactor(self) -> None:
        port = self._lsock.getsockname()[1] if self._lsock is not None else 0
        reactor = Reactor(self.on_frames_many, name=f"zraft-reactor-{port}",
                          on_exit=self._reactor_died, start=False)
        self._reactor = reactor
        reactor.start()

    def _start_acceptor(self) -> None:
        port = self._lsock.getsockname()[1] if self._lsock is not None else 0
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"zraft-accept-{port}", daemon=True
        )
        self._acceptor.start()

    # -- keeping the serving threads alive ------------------------------------------------

    def _may_restart(self, what: str, exc: BaseException) -> bool:
        """Count a restart of ``what``; False (and ``on_fatal``) past the budget."""
        now = time.monotonic()
        with self._lock:
            if self._closing.is_set():
                return False
            while self._restarts and now - self._restarts[0] > RESTART_PERIOD_S:
                self._restarts.popleft()
            self._restarts.append(now)
            over = len(self._restarts) > RESTARTS
        if not over:
            self._count("thread_restarts")
            log.error("transport: %s died (%s): starting a new one", what, type(exc).__name__)
            return True
        message = (f"transport {what} died {len(self._restarts)} times within "
                   f"{RESTART_PERIOD_S:.0f}s, last: {type(exc).__name__}: "
                   f"{safe_repr(str(exc), 120)}")
        self.fatal = message
        log.critical("%s: giving up", message)
        if self._on_fatal is not None:
            self._on_fatal(message)
        return False

    def _reactor_died(self, reactor: Reactor, exc: BaseException) -> None:
        """On the dying reactor's thread, after it closed its connections (or from the
        watchdog): each reactor is replaced once."""
        with self._lock:
            if reactor is not self._reactor or reactor in self._dead_reactors:
                return
            self._dead_reactors.add(reactor)
        if self._may_restart("reactor", exc):
            self._start_reactor()

    def check_threads(self) -> None:
        """Restart the reactor or the accept loop if one ended without saying so (a
        watchdog; each reports its own death, this covers the unforeseen)."""
        if self._closing.is_set() or self.fatal is not None:
            return
        reactor = self._reactor
        if reactor is not None and not reactor.thread_alive:
            self._reactor_died(reactor, RuntimeError("reactor thread gone"))
        acceptor = self._acceptor
        if (acceptor is not None and not acceptor.is_alive()
                and self._may_restart("accept loop", RuntimeError("accept thread gone"))):
            self._start_acceptor()

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
        join_started([self._acceptor], deadline)
        for link in links:
            link.join(max(0.0, deadline - time.monotonic()))
        for conn in inbound:
            conn.join(max(0.0, deadline - time.monotonic()))
        join_started(threads, deadline)  # a serve thread may be registered, not yet started

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
        backoff = AcceptBackoff()
        failure: BaseException | None = None
        try:
            while not self._closing.is_set():
                try:
                    self._accept_one(lsock, backoff)
                except Exception as exc:  # never let one connection end the accept loop
                    log.error("accept loop: %s: %s", type(exc).__name__,
                              safe_repr(str(exc), 200), exc_info=exc)
                    self._closing.wait(0.05)
        except BaseException as exc:  # logged here, and a new accept loop takes over
            failure = exc
            log.critical("accept loop failed: %s: %s", type(exc).__name__,
                         safe_repr(str(exc), 200), exc_info=exc)
        finally:
            if not self._closing.is_set() and self._may_restart(
                    "accept loop", failure or RuntimeError("accept loop ended")):
                self._start_acceptor()

    def _accept_one(self, lsock: socket.socket, backoff: AcceptBackoff) -> None:
        try:
            sock, _ = lsock.accept()
        except TimeoutError:
            self.check_threads()
            return
        except OSError as exc:
            if self._closing.is_set():
                return
            self._count("accept_errors")
            if exc.errno in RESOURCE_ERRNOS:
                self._evict_handshakes(1)  # frees a descriptor for whoever comes next
                self._closing.wait(backoff.failed(exc))
            else:
                log.warning("accept failed: %s", exc)
                self._closing.wait(0.05)
            return
        backoff.succeeded()
        if self.tls is not None:  # no I/O here: the handshake thread does the handshake
            sock = wrap_server(self.tls.server, sock)
        self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        """Start the handshake of a fresh socket, within the caps (see ``limits.py``)."""
        cfg = self.config
        evict: socket.socket | None = None
        thread: threading.Thread | None = None
        with self._lock:
            if len(self._handshaking) >= cfg.max_handshaking:
                evict = next(iter(self._handshaking))  # the oldest pending handshake
                del self._handshaking[evict]
            self._handshaking[sock] = time.monotonic()
            thread = threading.Thread(
                target=self._serve, args=(sock,), name="zraft-serve", daemon=True
            )
            self._threads.add(thread)
        if evict is not None:
            self._count("handshakes_evicted")
            with contextlib.suppress(OSError):
                evict.shutdown(socket.SHUT_RDWR)  # its handshake thread fails and closes it
        self._count("accepted")
        try:
            thread.start()
        except BaseException:  # cannot start a thread (out of memory, thread limit)
            with self._lock:
                self._handshaking.pop(sock, None)
                self._threads.discard(thread)
            sock.close()
            raise

    def _evict_handshakes(self, n: int) -> None:
        with self._lock:
            victims = list(self._handshaking)[:n]
            for sock in victims:
                del self._handshaking[sock]
        for sock in victims:
            self._count("handshakes_evicted")
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def reading_options(self) -> dict[str, Any]:
        """What every connection of this transport reads with: the shared buffer budget and
        the counters of what closed it."""
        return {
            "budget": self.buffers,
            "on_malformed": self.count_malformed,
            "on_over_budget": lambda: self._count("closed_over_buffer_budget"),
            "on_bad_mac": lambda: self._count("closed_bad_mac"),
            "on_shrink": self._on_shrink,
        }

    def _serve(self, sock: socket.socket) -> None:
        """A handshake thread; then, for connections no reactor reads, their reader."""
        conn: Connection | None = None
        try:
            conn = self._authenticate(sock)
            if conn is not None:
                conn.read_loop()
                conn.join(self.config.join_timeout)
        except Exception as exc:  # this connection's problem only, whatever it was
            log.error("serving a connection failed: %s: %s", type(exc).__name__,
                      safe_repr(str(exc), 200), exc_info=exc)
            if conn is not None:
                conn.close()
            with contextlib.suppress(OSError):
                sock.close()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
                self._handshaking.pop(sock, None)
                if conn is not None:
                    self._inbound.discard(conn)

    def _authenticate(self, sock: socket.socket) -> Connection | None:
        """Handshake, then hand the connection to its link or the reactor. Returns it if
        this thread must read it, else None (refused, or read elsewhere)."""
        cfg = self.config
        try:
            if self.tls is not None:
                accept_tls(sock, time.monotonic() + cfg.handshake_timeout)  # type: ignore[arg-type]
            auth = server_handshake(sock, self.cookie, self.node_id, cfg.handshake_timeout,
                                    self.client_cookie)
            tune_socket(sock, cfg.write_timeout)
        except HandshakeError as exc:
            if self.tls is not None and "TLS" in str(exc):
                log.warning("refused connection from %s: %s", _peer_of(sock), exc)
            with self._lock:
                evicted = self._handshaking.pop(sock, None) is None
            if not evicted:
                self._count("auth_failures")
            sock.close()
            return None
        link: PeerLink | None = None
        if auth.role == "node":
            try:
                link = self._link(auth.peer_id)
            except ValueError:
                log.warning("refusing node %s: its id is not host:port",
                            safe_repr(auth.peer_id))
            if link is None:
                sock.close()
                return None
        elif auth.role != "client":
            log.warning("refusing a %s connection from %s", safe_repr(auth.role),
                        safe_repr(auth.peer_id))
            sock.close()
            return None
        if link is None and self._client_count() >= cfg.max_connections:
            # a client over the cap; peer nodes always get in (few, and in the fd reserve)
            self._count("refused_over_limit")
            log.warning("refusing client %s: %d client connections open",
                        safe_repr(auth.peer_id), cfg.max_connections)
            sock.close()
            return None
        conn = Connection(
            TlsSocket(sock, cfg.write_timeout) if self.tls is not None else sock,  # type: ignore[arg-type]
            auth.peer_id,
            inbound=True,
            role=auth.role,
            privileged=auth.privileged,
            on_frames=self.on_frames,
            config=cfg,
            is_blocked=self.is_blocked_id,
            on_close=link.connection_closed if link is not None else self._client_closed,
            # conn.send on any connection of a peer node goes through its link, so a
            # reply sent on a duplicate that is being retired still gets out
            queue=link.queue if link is not None else None,
            # under TLS the records are authenticated and ordered already: no MAC (both
            # ends know they speak TLS)
            frame_auth=for_connection(auth.session_key, initiator=False,
                                      enabled=self.tls is None),
            **self.reading_options(),
        )
        with self._lock:
            # from pending to inbound in one step: the caps never miss it
            self._handshaking.pop(sock, None)
            closing = self._closing.is_set()
            if not closing:
                self._inbound.add(conn)
        if closing:
            conn.close()  # outside the lock: on_close takes it
            return None
        if link is not None:
            link.install(conn)  # a losing duplicate is retired: still read to the end
            return conn
        reactor = self._reactor
        if reactor is not None and reactor.add(conn):
            return None  # the reactor reads it; it leaves _inbound when it closes
        return conn

    def _client_count(self) -> int:
        with self._lock:
            return sum(1 for conn in self._inbound if conn.role != "node")

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

    def link_addrs(self) -> list[str]:
        """The nodes this node has a link to (sent to, or dialed at start)."""
        return list(self._links)

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
            "handshaking": len(self._handshaking),
            "max_connections": self.config.max_connections,
            "max_handshaking": self.config.max_handshaking,
            "buffered_bytes": self.buffers.used,
            "buffered_bytes_peak": self.buffers.peak,
            "max_buffered_bytes": self.buffers.limit,
            "fatal": self.fatal,
            **self.counters,
        }


def _peer_of(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except (OSError, ValueError):
        return "?"
    return format_addr(host, port)
