"""PeerLink: everything a node sends to one peer node (see ``tcp.py``'s module rules).

A persistent bounded queue, the ONE connection currently carrying it (dialed by us or
adopted from the peer's dial), and a thread that dials with backoff (tenacity) whenever
there is something to send and no connection. Its transport is reached through the
``LinkHost`` protocol, so this module does not import ``tcp.py`` (which imports it).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, Protocol

import tenacity

from zraft.saferepr import safe_repr
from zraft.transport.connection import (
    Connection,
    OnFrames,
    SendQueue,
    TransportConfig,
    parse_addr,
    tune_socket,
)
from zraft.transport.errors import HandshakeError
from zraft.transport.frame_auth import for_connection
from zraft.transport.handshake import client_handshake
from zraft.transport.tls import NodeTls, TlsSocket, connect_tls

log = logging.getLogger("zraft.transport.tcp")


class LinkHost(Protocol):
    """What a PeerLink uses of its transport (``TcpTransport``)."""

    config: TransportConfig
    node_id: str
    cookie: bytes
    on_frames: OnFrames
    tls: NodeTls | None

    @property
    def blocked_in(self) -> frozenset[str]: ...

    def reading_options(self) -> dict[str, Any]: ...


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

    def __init__(self, transport: LinkHost, addr: str) -> None:
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
        self.bytes_sent_done = 0  # ... and bytes they wrote and read (metrics)
        self.bytes_received_done = 0
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
                if current is not None and current is not conn:
                    self._retire_counts(current)
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
                self._retire_counts(conn)
                self._cond.notify_all()

    def _retire_counts(self, conn: Connection) -> None:
        """Keep what a connection that stops carrying the link moved (under ``_cond``)."""
        self.frames_sent_done += conn.frames_out
        self.bytes_sent_done += conn.bytes_out
        self.bytes_received_done += conn.bytes_in

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
                on_close=self.connection_closed,
                label=f"link:{self.addr}",
                frame_auth=for_connection(auth.session_key, initiator=True,  # none under TLS
                                          enabled=not isinstance(sock, TlsSocket)),
                **self._transport.reading_options(),
            )
            self.install(conn)
            conn.start_reader()  # even a retired duplicate is read to its end

    def _dial(self) -> tuple[socket.socket, Any]:
        if not self._should_dial():
            raise _Stopped()
        cfg = self._transport.config
        host, port = parse_addr(self.addr)
        sock = socket.create_connection((host, port), timeout=cfg.connect_timeout)
        tls = self._transport.tls
        try:
            if tls is not None:  # the peer's certificate must name the host we dial
                sock = connect_tls(tls.client, sock, host, cfg.handshake_timeout)
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
        if tls is not None:
            return TlsSocket(sock, cfg.write_timeout), auth  # type: ignore[arg-type]
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
            "bytes_sent": self.bytes_sent_done + (conn.bytes_out if conn else 0),
            "bytes_received": self.bytes_received_done + (conn.bytes_in if conn else 0),
        }


__all__ = ["LinkHost", "PeerLink"]
