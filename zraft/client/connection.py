"""Client connections to nodes: one authenticated, pipelined connection per node address.

Rules:
- ``request`` never blocks: once connected, and with nothing queued, it writes
  ``[2, req_id, op, args]`` straight to the socket without waiting (MSG_DONTWAIT: no thread
  hop on the latency path) while at most ``_DIRECT_MAX_IN_FLIGHT`` requests are in flight;
  otherwise, or for what the kernel did not take, it queues it and
  returns at once. The connection's writer thread connects (bounded by ``connect_timeout``),
  runs the cookie handshake, then sends queued frames in batches (one ``sendall`` per
  batch). Socket writes hold one lock and queued frames go first: requests never reorder
  (session writes rely on it).
- Replies are read by ONE reactor thread per process for all client connections
  (``zraft.transport.reactor``; with 64 connections, 64 reader threads cost more than the
  requests), which completes each request by calling its callback ``(status, payload)``
  with the reply ``[3, req_id, status, payload]``: ``status`` is ``"ok"`` or an error code of
  ``zraft.errors``. Callbacks run on that thread: they must be quick (tell an actor, set a
  future, send another request) and never wait for another reply.
- A request whose frame would pass the frame limit is never sent: its callback gets
  ``("too_large", {"message": ...})`` at once (sent, the node would close the connection and
  every request on it would fail as unreachable).
- If the connection cannot be made or breaks, every request still waiting gets
  ``("noproc", {"message": ...})`` exactly once and the connection is dead; the pool makes a
  new one on the next request (reconnect on demand). A reply for a request that was cancelled
  (its caller gave up) is dropped.
- Pushes ``[6, kind, [peer_name, sid, ...]]`` go, flattened to ``[kind, peer_name, sid, ...]``,
  to the pool's handler registered for ``sid``.
- Nothing waits without a bound: connect, handshake and send have timeouts; a peer that
  stops reading makes ``sendall`` time out and the connection die.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from zraft.errors import NoCookie
from zraft.ids import PeerId, node_of, peer_str
from zraft.transport.codec import pack, unpack
from zraft.transport.connection import set_send_timeout
from zraft.transport.errors import TransportError
from zraft.transport.frame_auth import FrameAuth, decoder_limit, for_connection
from zraft.transport.framing import DEFAULT_MAX_FRAME_SIZE as MAX_FRAME_SIZE
from zraft.transport.framing import HEADER, FrameDecoder
from zraft.transport.handshake import client_handshake, cookie_bytes
from zraft.transport.reactor import Reactor
from zraft.transport.tls import TlsError, TlsFiles, TlsSocket, client_context, connect_tls

log = logging.getLogger("zraft.client.connection")

ReplyCallback = Callable[[str, Any], None]
PushHandler = Callable[[list[Any]], None]

REQUEST_KIND = 2
REPLY_KIND = 3
PUSH_KIND = 6
DEFAULT_CONNECT_TIMEOUT = 3.0
DEFAULT_SEND_TIMEOUT = 10.0
_READ_SIZE = 256 * 1024
# A request is written directly only while few are in flight: then its latency is what
# counts. Behind a deep pipeline one more request waits anyway, and the writer thread's
# batches (one send for many frames) cost the client and the node far less per request.
_DIRECT_MAX_IN_FLIGHT = 8
_MAX_ADDRESSES = 1024  # remembered peer id -> address pairs per pool


def unreachable(message: str) -> dict[str, Any]:
    return {"message": message}


class Connection:
    """One socket to one node, shared by every request to peers on that node."""

    def __init__(
        self,
        address: str,
        cookie: bytes,
        client_id: str,
        on_push: PushHandler,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.address = address
        self._tls = tls
        self._cookie = cookie
        self._client_id = client_id
        self._on_push = on_push
        self._connect_timeout = connect_timeout
        self._send_timeout = send_timeout
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._outbox: collections.deque[bytes] = collections.deque()  # frames, not sealed
        self._head: bytes | None = None  # sealed rest of a frame the kernel took in part
        self._auth: FrameAuth | None = None  # set with _sock, after the handshake
        self._pending: dict[int, ReplyCallback] = {}
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._wlock = threading.Lock()  # held by whoever writes to the socket
        self.sock: socket.socket | None = None  # registered with the client reactor
        self._dead: str | None = None
        self.requests_sent = 0
        writer = threading.Thread(target=self._write_loop, name=f"zraft-conn-w-{address}")
        writer.daemon = True
        writer.start()

    @property
    def alive(self) -> bool:
        return self._dead is None

    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    def request(self, op: str, args: Any, callback: ReplyCallback) -> int:
        """Queue a request; ``callback`` gets exactly one ``(status, payload)`` unless
        cancelled. Returns the req_id (for ``cancel``)."""
        too_large = 0
        with self._lock:
            dead = self._dead
            if dead is None:
                req_id = next(self._ids)
                body = pack([REQUEST_KIND, req_id, op, args])
                if len(body) > MAX_FRAME_SIZE:  # the node would drop the connection
                    too_large = len(body)
            if dead is None and not too_large:
                self._pending[req_id] = callback
                frame = HEADER.pack(len(body)) + body
                sock = self._sock
                if (sock is None or self._outbox or self._head is not None
                        or len(self._pending) > _DIRECT_MAX_IN_FLIGHT
                        or not self._wlock.acquire(False)):
                    self._outbox.append(frame)
                    self._wakeup.notify()
                    return req_id
        if too_large:
            callback("too_large", {"message": f"{op}: the request is {too_large} bytes, above "
                                              f"the frame limit {MAX_FRAME_SIZE}: not sent",
                                   "size": too_large, "limit": MAX_FRAME_SIZE})
            return 0
        if dead is not None:
            callback("noproc", unreachable(dead))
            return 0
        self._send_now(sock, frame)
        return req_id

    def _send_now(self, sock: socket.socket, frame: bytes) -> None:
        """Write ``frame`` without waiting (``_wlock`` held by the caller, released here);
        the writer thread sends whatever the kernel did not take, before anything else."""
        failed: OSError | None = None
        try:
            if self._auth is not None:
                frame = self._auth.seal(frame)  # under _wlock: sequence numbers in wire order
            try:
                sent = sock.send(frame, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            if sent < len(frame):
                with self._lock:
                    self._head = frame[sent:]
                    self._wakeup.notify()
            else:
                self.requests_sent += 1
        except OSError as exc:
            failed = exc
        finally:
            self._wlock.release()
        if failed is not None:
            self._fail(f"send to {self.address} failed: {failed}")

    def cancel(self, req_id: int) -> None:
        with self._lock:
            self._pending.pop(req_id, None)

    def close(self, reason: str = "closed by the client") -> None:
        self._fail(reason)

    # -- threads ------------------------------------------------------------------------

    def _connect(self) -> tuple[socket.socket, FrameAuth | None]:
        host, _, port = self.address.rpartition(":")
        sock = socket.create_connection((host.strip("[]"), int(port)), self._connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:  # the cookie handshake runs inside TLS
                sock = connect_tls(self._tls, sock, host, self._connect_timeout)
            auth = client_handshake(sock, self._cookie, self._client_id, self._connect_timeout)
        except BaseException:
            sock.close()
            raise
        set_send_timeout(sock, self._send_timeout)
        if self._tls is not None:
            sock = TlsSocket(sock, self._send_timeout)  # type: ignore[arg-type, assignment]
        # TLS authenticates and orders its records: no frame MAC inside it (the node agrees)
        return sock, for_connection(auth.session_key, initiator=True, enabled=self._tls is None)

    def _write_loop(self) -> None:
        try:
            sock, auth = self._connect()
        except (OSError, TransportError, ValueError) as exc:
            self._fail(f"cannot reach node {self.address}: {exc}")
            return
        with self._lock:
            if self._dead is not None:
                sock.close()
                return
            self._auth = auth  # before _sock: a direct send seals from the first frame
            self._sock = sock
            self.sock = sock  # the reactor's (it closes it once unregistered)
        if not client_reactor().add(self):
            with self._lock:
                self.sock = None
                dead = self._dead is not None
            if dead:
                sock.close()
                return
            reader = threading.Thread(target=self._read_loop, args=(sock,), daemon=True)
            reader.name = f"zraft-conn-r-{self.address}"
            reader.start()
        while True:
            with self._lock:
                while not self._outbox and self._head is None and self._dead is None:
                    self._wakeup.wait()
                if self._dead is not None:
                    return
            with self._wlock:
                with self._lock:
                    frames = list(self._outbox)
                    self._outbox.clear()
                    head, self._head = self._head, None
                sent = len(frames) + (head is not None)
                batch = b"".join(frames)
                if auth is not None and batch:  # under _wlock: sequence numbers in wire order
                    batch = auth.seal_frames(batch)  # one MAC per 64 KiB of requests
                if head is not None:
                    batch = head + batch
                if not batch:
                    continue
                try:
                    sock.sendall(batch)
                except OSError as exc:
                    failed: OSError | None = exc
                else:
                    failed = None
                    self.requests_sent += sent  # under _wlock, as _send_now counts
            if failed is not None:
                self._fail(f"send to {self.address} failed: {failed}")
                return

    def _bodies(self, decoder: FrameDecoder, data: memoryview) -> list[Any]:
        """The frame bodies ``data`` completed, authenticated (FrameAuthError if not)."""
        bodies = decoder.feed(data)
        auth = self._auth
        return auth.open_many(bodies) if auth is not None and bodies else bodies

    def _read_loop(self, sock: socket.socket) -> None:
        decoder = FrameDecoder(decoder_limit(MAX_FRAME_SIZE, self._auth))
        reason = f"node {self.address} closed the connection"
        try:
            # one buffer for the reader's life (a fresh 256 KiB recv costs ~15 us a read)
            rbuf = bytearray(_READ_SIZE)
            rview = memoryview(rbuf)
            recv_into = sock.recv_into
            while self._dead is None:
                n = recv_into(rbuf)
                if not n:
                    break
                for body in self._bodies(decoder, rview[:n]):
                    self._dispatch(unpack(body))
        except (OSError, TransportError, ValueError) as exc:
            reason = f"connection to {self.address} failed: {exc}"
        self._fail(reason)

    # -- reading through the process's client reactor ----------------------------------

    def reactor_attach(self) -> bool:
        self._decoder = FrameDecoder(decoder_limit(MAX_FRAME_SIZE, self._auth))
        self.reactor_eof = False
        self._read_end = f"node {self.address} closed the connection"
        return self._dead is None

    def reactor_read(self, rbuf: bytearray, rview: memoryview) -> list[Any] | None:
        """Read what is there into the reactor's buffer and complete its requests
        (callbacks run here); None once the connection is finished."""
        sock = self.sock
        if sock is None:
            return None
        try:
            n = sock.recv_into(rbuf, min(_READ_SIZE, len(rbuf)), socket.MSG_DONTWAIT)
            data = rview[:n]
        except (BlockingIOError, InterruptedError):
            return []
        except OSError as exc:
            self._read_end = f"connection to {self.address} failed: {exc}"
            return None
        if not data:
            self.reactor_eof = True
            return None
        try:
            for body in self._bodies(self._decoder, data):
                self._dispatch(unpack(body))
        except (TransportError, ValueError) as exc:
            self._read_end = f"connection to {self.address} failed: {exc}"
            return None
        return []

    def reactor_detach(self, eof: bool) -> None:
        del eof
        self._fail(self._read_end)
        sock, self.sock = self.sock, None
        if sock is not None:
            with self._wlock:
                sock.close()

    def _dispatch(self, frame: Any) -> None:
        if type(frame) is not list or not frame:
            raise ValueError(f"malformed frame from {self.address}")
        kind = frame[0]
        if kind == REPLY_KIND and len(frame) == 4:
            with self._lock:
                callback = self._pending.pop(frame[1], None)
            if callback is not None:
                _safe_call(callback, str(frame[2]), frame[3])
        elif kind == PUSH_KIND:
            try:
                self._on_push(flat_push(frame))
            except Exception:
                log.exception("push handler failed")
        else:
            raise ValueError(f"unexpected frame kind {kind!r} from {self.address}")

    def _fail(self, reason: str) -> None:
        with self._lock:
            if self._dead is not None:
                return
            self._dead = reason
            pending = list(self._pending.values())
            self._pending.clear()
            self._outbox.clear()
            self._head = None
            sock, self._sock = self._sock, None
            self._wakeup.notify_all()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv, sendall, the reactor
            if sock is not self.sock:  # a reactor's socket is closed once unregistered
                with self._wlock:  # never close under a writer: its fd could be reused
                    sock.close()
        log.debug("connection to %s is down: %s", self.address, reason)
        for callback in pending:
            _safe_call(callback, "noproc", unreachable(reason))


_reactor: Reactor | None = None
_reactor_lock = threading.Lock()


def client_reactor() -> Reactor:
    """The process's one reader thread for every client connection (made on first use)."""
    global _reactor
    with _reactor_lock:
        if _reactor is None or not _reactor.alive:  # made anew should it ever have died
            _reactor = Reactor(lambda _ready: None, name="zraft-client-reactor")
        return _reactor


def _forget_reactor_after_fork() -> None:
    global _reactor, _reactor_lock
    _reactor, _reactor_lock = None, threading.Lock()  # its thread did not survive the fork


os.register_at_fork(after_in_child=_forget_reactor_after_fork)


def _safe_call(callback: ReplyCallback, status: str, payload: Any) -> None:
    try:
        callback(status, payload)
    except Exception:
        log.exception("reply callback failed")


class ClientConnection(Protocol):
    """What a pool needs of a connection (the blocking one here, ``zraft.aio``'s too)."""

    @property
    def alive(self) -> bool: ...

    def request(self, op: str, args: Any, callback: ReplyCallback) -> int: ...

    def cancel(self, req_id: int) -> None: ...

    def close(self, reason: str = ...) -> None: ...


def address_of(peer: PeerId | str) -> str:
    """The node address of a peer id (a bare ``host:port`` is its own address)."""
    if isinstance(peer, PeerId):
        return peer.node
    return node_of(peer_str(peer)) if "@" in peer else peer


def flat_push(frame: list[Any]) -> list[Any]:
    """A push frame ``[6, kind, [peer_name, sid, ...]]`` (``transport.codec.Push``; a flat
    ``[6, kind, peer_name, sid, ...]`` is accepted too) as ``[kind, peer_name, sid, ...]``."""
    if len(frame) == 3 and isinstance(frame[2], list):
        return [frame[1], *frame[2]]
    return frame[1:]


class PoolBase:
    """Connections by node address (created on demand, replaced once dead) and push
    handlers by session id; subclasses say how a connection is made."""

    def __init__(
        self,
        cookie: str | bytes,
        client_id: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: a client context (``zraft.transport.tls.client_context``): every
        connection is TLS, the node's certificate checked against its CA and address."""
        self.cookie = cookie_bytes(cookie)
        self.tls = tls
        self.client_id = client_id or f"client-{os.getpid()}-{id(self):x}"
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._conns: dict[str, ClientConnection] = {}
        self._push_handlers: dict[str, PushHandler] = {}
        self._addresses: dict[str, str] = {}  # peer id -> node address (parsed once)
        self._closed = False

    def _new_connection(self, address: str) -> ClientConnection:
        raise NotImplementedError

    def connection(self, address: str) -> ClientConnection:
        with self._lock:
            conn = self._conns.get(address)
            if conn is None or not conn.alive:
                if self._closed:
                    raise RuntimeError("connection pool is closed")
                conn = self._new_connection(address)
                self._conns[address] = conn
            return conn

    def request(
        self, peer: PeerId | str, op: str, args: Any, callback: ReplyCallback
    ) -> Callable[[], None]:
        """Send ``op`` to the node hosting ``peer``; returns a function that cancels it."""
        address = self._addresses.get(peer) if type(peer) is str else None
        if address is None:  # parsing a peer id costs microseconds: once per peer id
            address = address_of(peer)
            if type(peer) is str:
                if len(self._addresses) >= _MAX_ADDRESSES:
                    self._addresses.clear()
                self._addresses[peer] = address
        try:
            conn = self.connection(address)
        except RuntimeError as exc:
            callback("noproc", unreachable(str(exc)))
            return lambda: None
        req_id = conn.request(op, args, callback)
        return lambda: conn.cancel(req_id)

    def add_push_handler(self, sid: str, handler: PushHandler) -> None:
        with self._lock:
            self._push_handlers[sid] = handler

    def remove_push_handler(self, sid: str) -> None:
        with self._lock:
            self._push_handlers.pop(sid, None)

    def _dispatch_push(self, push: list[Any]) -> None:
        # push = [kind, peer_name, sid, ...]
        sid = push[2] if len(push) >= 3 else None
        with self._lock:
            handler = self._push_handlers.get(sid) if isinstance(sid, str) else None
        if handler is None:
            log.debug("push for unknown session %r dropped", sid)
            return
        handler(push)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = list(self._conns.values())
            self._conns.clear()
        for conn in conns:
            conn.close()


class ConnectionPool(PoolBase):
    """The blocking client's pool: a ``Connection`` (writer thread, reactor reads) per node."""

    def _new_connection(self, address: str) -> Connection:
        return Connection(address, self.cookie, self.client_id, self._dispatch_push,
                          self.connect_timeout, tls=self.tls)


_HOW_TO_GIVE_A_COOKIE = (
    "give one with zraft.configure(cookie_file=...) or configure(cookie=...), a cookie= / "
    "cookie_file= argument, or the ZRAFT_COOKIE_FILE / ZRAFT_COOKIE environment variables "
    "(the CLI: --cookie-file, --cookie or --dir)"
)


def resolve_cookie(cookie: str | bytes | None = None, cookie_file: str | None = None) -> bytes:
    """The cookie: ``cookie`` if given, else the first line of ``cookie_file``, else the
    ``ZRAFT_COOKIE`` / ``ZRAFT_COOKIE_FILE`` environment variables. ``NoCookie`` (a
    ZRaftError and a ValueError) if there is none, or the file is unreadable or empty."""
    if cookie:
        return cookie_bytes(cookie)
    path = cookie_file or os.environ.get("ZRAFT_COOKIE_FILE")
    if not cookie_file and os.environ.get("ZRAFT_COOKIE"):
        return cookie_bytes(os.environ["ZRAFT_COOKIE"])
    if path:
        try:
            lines = Path(path).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise NoCookie(f"cannot read the cookie file {path!r} ({exc.__class__.__name__}: "
                           f"{getattr(exc, 'strerror', None) or exc})") from None
        text = lines[0].strip() if lines else ""
        if not text:
            raise NoCookie(f"the cookie file {path!r} is empty")
        return text.encode()
    raise NoCookie(f"no cluster cookie: {_HOW_TO_GIVE_A_COOKIE}")


def resolve_tls(ca: str | None = None, cert: str | None = None, key: str | None = None,
                found: dict[str, str] | None = None) -> ssl.SSLContext | None:
    """A client TLS context: the files given, else ``$ZRAFT_TLS_CA`` / ``$ZRAFT_TLS_CERT`` /
    ``$ZRAFT_TLS_KEY``, else ``found`` (a cluster directory's); None (plaintext) without a
    CA. ``TlsError`` (a ValueError, one line) if the files do not work."""
    env = os.environ
    found = found or {}
    ca = ca or env.get("ZRAFT_TLS_CA") or found.get("ca")
    cert = cert or env.get("ZRAFT_TLS_CERT") or found.get("cert")
    key = key or env.get("ZRAFT_TLS_KEY") or found.get("key")
    if not ca:
        if cert or key:
            raise TlsError("a TLS client certificate needs the cluster CA too (tls_ca)")
        return None
    return client_context(TlsFiles(cert or "", key or "", ca))


def tls_client(ca: str, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A client TLS context for ``zraft.configure(tls=...)`` / ``ConnectionPool(tls=...)``:
    the nodes' certificates are checked against ``ca`` and the address dialed; ``cert`` and
    ``key`` are presented to nodes that verify clients (``tls_verify_client``)."""
    return client_context(TlsFiles(cert or "", key or "", ca))
