"""One authenticated connection: a reader thread that frames, decodes and delivers, and a
bounded send queue drained by a writer thread.

Rules:
- every frame decoded from ONE socket read is delivered in ONE ``on_frames(conn, frames)``
  call (the node batches on it); a callback exception is logged, never kills the reader;
- malformed input (bad length, bad msgpack, bad fields), a partial frame over the node's
  buffer budget, or ANY exception while reading or decoding closes this connection only
  (logged with bounded values), whether a reader thread or a reactor reads it;
- ``send`` never blocks: when nothing is queued it writes straight to the socket without
  waiting (MSG_DONTWAIT, which saves a thread hop per frame on the latency path); otherwise,
  or for what the kernel did not take, it appends to a ``SendQueue`` that keeps at most N
  frames / B bytes and drops the OLDEST beyond that (counted); a writer thread drains it in
  batches. Every socket write happens under one lock, after everything queued before it,
  so frames never reorder; the unsent tail of a frame is the queue's "head", owned by its
  connection and never dropped (a successor connection discards it instead of sending half
  a frame);
- the socket stays blocking for reads (idle is fine) while ``SO_SNDTIMEO`` bounds writes to
  a peer that stopped reading; ``close`` shuts the socket down, which wakes both threads;
- ``retire`` ends a connection gracefully (finish the batch in hand, half-close, read to EOF)
  so frames already written are never lost; EOF from the other end retires it too. A
  connection with its own queue (a client's) first writes everything queued: those are
  replies to requests it sent before half-closing. A peer link's queue is not drained (the
  link's next connection carries it);
- the writer counts as a user of the socket from ``start_writer`` on, before its thread
  runs, so an EOF read meanwhile retires the connection instead of closing it under the
  queued frames;
- the socket is closed only by the last thread using it, never under a running recv/send.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from zraft.saferepr import safe_repr
from zraft.transport import codec
from zraft.transport.errors import BufferLimitExceeded, DecodeError
from zraft.transport.frame_auth import FrameAuth, FrameAuthError, decoder_limit, for_connection
from zraft.transport.framing import (
    DEFAULT_ALLOWANCE,
    DEFAULT_MAX_BUFFERED,
    DEFAULT_MAX_FRAME_SIZE,
    BufferBudget,
    FrameDecoder,
)
from zraft.transport.handshake import DEFAULT_HANDSHAKE_TIMEOUT, client_handshake, cookie_bytes
from zraft.transport.joining import join_started
from zraft.transport.tls import TlsSocket, connect_tls

log = logging.getLogger("zraft.transport.tcp")

OnFrames = Callable[["Connection", list[codec.Frame]], None]

# Placeholder writer of a retired connection that never had one (blocks start_writer).
_STARTED_NEVER: Any = object()


@dataclass(frozen=True)
class TransportConfig:
    """Knobs of the TCP transport (seconds, bytes, counts)."""

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    connect_timeout: float = 3.0
    write_timeout: float = 10.0
    queue_max_frames: int = 10_000
    queue_max_bytes: int = 64 * 1024 * 1024
    reconnect_initial: float = 0.05
    reconnect_max: float = 2.0
    max_connections: int = 1024  # inbound client connections (peer nodes always get in)
    max_handshaking: int = 256  # pending handshakes; a new one evicts the oldest beyond this
    max_buffered_bytes: int = DEFAULT_MAX_BUFFERED  # node-wide partial frames (framing.py)
    partial_allowance: int = DEFAULT_ALLOWANCE  # per connection, not charged to the above
    recv_size: int = 256 * 1024
    write_batch_bytes: int = 4 * 1024 * 1024
    retire_grace: float = 5.0
    join_timeout: float = 2.0
    client_reactor: bool = True  # one thread reads all client connections (see reactor.py)


def format_addr(host: str, port: int) -> str:
    """``(host, port)`` -> ``"host:port"`` (IPv6 hosts bracketed)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_addr(addr: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; IPv6 hosts may be bracketed."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not a host:port address: {addr!r}")
    return host.strip("[]"), int(port)


def tune_socket(sock: socket.socket, write_timeout: float) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    set_send_timeout(sock, write_timeout)


def set_send_timeout(sock: socket.socket, seconds: float) -> None:
    """Keep the socket blocking (no Python timeout, so MSG_DONTWAIT writes never wait and
    an idle reader's recv is fine) and bound a sendall to a peer that stopped reading with
    SO_SNDTIMEO."""
    sock.settimeout(None)
    secs = int(seconds)
    usecs = int((seconds - secs) * 1e6)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", secs, usecs))


class SendQueue:
    """Bounded FIFO of encoded frames; drops the oldest when full."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self._frames: deque[bytes] = deque()
        self._head: bytes | None = None  # unsent tail of a directly written frame
        self._head_owner: object = None
        self._bytes = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._cond = threading.Condition(threading.Lock())
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._frames) + (self._head is not None)

    def idle(self) -> bool:
        return not self._frames and self._head is None

    def put_head(self, data: bytes, owner: object) -> None:
        """The rest of a frame ``owner`` started writing: it goes out before anything else,
        on ``owner`` only."""
        with self._cond:
            self._head, self._head_owner = data, owner
            self._bytes += len(data)
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for something to send."""
        with self._cond:
            if self._head is None and not self._frames:
                self._cond.wait(timeout)
            return self._head is not None or bool(self._frames)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def put(self, data: bytes) -> None:
        with self._cond:
            frames = self._frames
            frames.append(data)
            self._bytes += len(data)
            while len(frames) > 1 and (
                len(frames) > self._max_frames or self._bytes > self._max_bytes
            ):
                self._bytes -= len(frames.popleft())
                self.dropped += 1
            # all waiters: during a connection switch two writers may share a link's queue
            self._cond.notify_all()

    def put_many(self, items: Iterable[bytes]) -> None:
        for data in items:
            self.put(data)

    def take(self, timeout: float, max_bytes: int, owner: object = None,
             seal: Callable[[bytes], bytes] | None = None) -> list[bytes]:
        """Wait up to ``timeout`` for frames; return a batch of about ``max_bytes``, led by
        the head if ``owner`` owns it (a head of another owner is dropped: half a frame).
        ``seal`` (frame_auth) is applied to each frame taken, not to the head (sealed when
        it was first written)."""
        with self._cond:
            if not self._frames and self._head is None:
                self._cond.wait(timeout)
            out: list[bytes] = []
            size = 0
            head = self._head
            if head is not None:
                self._head = None
                self._bytes -= len(head)
                if self._head_owner is owner:
                    out.append(head)
                    size = len(head)
            frames = self._frames
            taken = 0
            while frames and (not out or size + len(frames[0]) <= max_bytes):
                data = frames.popleft()
                size += len(data)
                taken += len(data)
                out.append(data if seal is None else seal(data))
            self._bytes -= taken
            return out

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def clear(self) -> int:
        with self._cond:
            n = len(self._frames) + (self._head is not None)
            self._frames.clear()
            self._head = None
            self._bytes = 0
            return n


def as_frame_bytes(frame: codec.Frame | bytes | bytearray | memoryview) -> bytes:
    """A length-prefixed frame: bytes pass through (they must come from ``encode_frame``)."""
    if isinstance(frame, bytes):
        return frame
    if isinstance(frame, (bytearray, memoryview)):
        return bytes(frame)
    return codec.encode_frame(frame)


class Connection:
    """One authenticated socket: a reader delivering decoded frames and a queued writer.

    ``peer_id`` is the id the other end proved in the handshake (a node's "host:port", or a
    client's id); ``role`` is what it claimed to be (``node`` or ``client``). ``send`` never
    blocks. The socket is closed by whichever of close()/reader/writer finishes last, so no
    thread ever uses a closed file descriptor.
    """

    def __init__(
        self,
        sock: socket.socket,
        peer_id: str,
        *,
        inbound: bool,
        on_frames: OnFrames,
        config: TransportConfig,
        role: str = "client",
        privileged: bool = True,
        queue: SendQueue | None = None,
        is_blocked: Callable[[str], bool] = lambda _: False,
        on_malformed: Callable[[], None] = lambda: None,
        on_close: Callable[[Connection], None] = lambda _: None,
        label: str = "",
        budget: BufferBudget | None = None,
        on_over_budget: Callable[[], None] = lambda: None,
        on_shrink: Callable[[], object] | None = None,
        frame_auth: FrameAuth | None = None,
        on_bad_mac: Callable[[], None] = lambda: None,
    ) -> None:
        self.sock = sock
        # frames after the handshake are sealed when written and opened when read (None:
        # not authenticated, e.g. under TLS, or a socket that had no handshake)
        self._auth = frame_auth
        self._seal = frame_auth.seal_frames if frame_auth is not None else None
        self._on_bad_mac = on_bad_mac
        self.peer_id = peer_id
        self.role = role
        # False: a client admitted by the client cookie (no operator ops; handshake.py)
        self.privileged = privileged
        self.inbound = inbound
        self.remote = _remote_name(sock)
        self.local = _local_name(sock)
        self._on_frames = on_frames
        self._config = config
        self._queue = queue or SendQueue(config.queue_max_frames, config.queue_max_bytes)
        self._drain_on_retire = queue is None  # a private queue holds our replies only
        self._budget = budget
        self._on_over_budget = on_over_budget
        self._on_shrink = on_shrink
        self._is_blocked = is_blocked
        self._on_malformed = on_malformed
        self._on_close = on_close
        self._label = label or f"{'in' if inbound else 'out'}:{peer_id}"
        self._lock = threading.Lock()
        self._wlock = threading.Lock()  # held by whoever writes to the socket
        self._closed = threading.Event()
        self._users = 0  # threads inside read_loop / write_loop
        self._retired = False
        self._reader_done = False
        self._writer_active = False
        self._reader: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._decoder: FrameDecoder | None = None
        self.reactor_eof = False
        self.frames_in = 0
        self.bytes_in = 0
        self.frames_out = 0
        self.bytes_out = 0
        self.dropped_in = 0
        self.opened_at = time.monotonic()

    @property
    def frame_auth(self) -> FrameAuth | None:
        """The connection's frame authenticator (None: frames are not authenticated)."""
        return self._auth

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def use_queue(self, queue: SendQueue) -> None:
        """Write from ``queue`` (a peer link's) instead of a private one; call before the
        writer starts. Frames already queued privately move over."""
        with self._lock:
            if self._queue is queue:
                return
            if self._writer is not None:
                raise RuntimeError("writer already running")
            old, self._queue = self._queue, queue
            self._drain_on_retire = False
        old_frames = old.take(0, 1 << 62) if len(old) else []
        queue.put_many(old_frames)

    def start_reader(self) -> None:
        reader = threading.Thread(
            target=self.read_loop, name=f"zraft-read-{self._label}", daemon=True
        )
        reader.start()
        self._reader = reader  # join() sees no thread or a started one

    def start_writer(self) -> None:
        with self._lock:
            if self._writer is not None or self._closed.is_set():
                return
            # a user of the socket from now on, not from when the thread gets to run
            self._users += 1
            self._writer_active = True
            writer = threading.Thread(
                target=self.write_loop, name=f"zraft-write-{self._label}", daemon=True
            )
            # started under the lock, so join() never meets a thread that is not started
            # yet (a close racing the start raised "cannot join thread before it is started")
            try:
                writer.start()
                self._writer = writer
                return
            except RuntimeError:  # no thread to be had: this connection cannot write
                self._writer_active = False
        log.error("%s: cannot start a writer thread, closing", self._label)
        self._leave()

    def close(self) -> None:
        """Stop both directions (idempotent)."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            idle = self._users == 0
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv / sendall
        self._queue.wake()
        if idle:
            with contextlib.suppress(OSError):
                self.sock.close()
        try:
            self._on_close(self)
        except Exception:
            log.exception("%s: on_close callback failed", self._label)

    def retire(self, grace: float | None = None) -> None:
        """Finish gracefully: stop writing once the batch in hand is written, half-close,
        and keep reading until the other end half-closes too, so nothing already written is
        lost either way. Used for a duplicate peer connection that lost the tie-break (with a
        ``grace`` in seconds after which it is closed regardless, should the other end never
        half-close), and when the other end half-closed first (no grace needed: our writer
        ends within its batch, bounded by the write timeout)."""
        with self._lock:
            if self._retired or self._closed.is_set():
                return
            self._retired = True
            if self._writer is None:
                self._writer = _STARTED_NEVER  # no writer may start any more
            writer_running = self._writer_active
            reader_done = self._reader_done
        self._queue.wake()
        if not writer_running:
            with self._wlock, contextlib.suppress(OSError):  # after any direct write
                self.sock.shutdown(socket.SHUT_WR)
            if reader_done:
                self.close()
                return
        if grace is not None:
            timer = threading.Timer(grace, self.close)
            timer.daemon = True
            timer.start()

    @property
    def retired(self) -> bool:
        return self._retired

    def _enter(self) -> bool:
        with self._lock:
            if self._closed.is_set():
                return False
            self._users += 1
            return True

    def _leave(self, close: bool = True) -> None:
        if close:
            self.close()
        with self._lock:
            self._users -= 1
            last = self._users == 0 and self._closed.is_set()
        if last:
            with contextlib.suppress(OSError):
                self.sock.close()

    def join(self, timeout: float) -> None:
        join_started([self._reader, self._writer], time.monotonic() + timeout)

    # -- sending --------------------------------------------------------------------------

    def send(self, frame: codec.Frame | bytes) -> bool:
        """Send one frame (an object, or bytes from ``codec.encode_frame``) without
        blocking: straight to the socket when possible, else through the queue."""
        if self._closed.is_set():
            return False
        data = as_frame_bytes(frame)
        if self.try_send_now(data):
            return True
        self._queue.put(data)
        if self._writer is None:
            self.start_writer()
        return True

    def try_send_now(self, data: bytes) -> bool:
        """Write ``data`` (whole frames) from the calling thread if nothing is queued and
        no one is writing; what the kernel does not take at once becomes the queue's head
        for the writer thread. False (nothing done) if the frame must be queued instead."""
        if not isinstance(self._writer, threading.Thread) or not self._wlock.acquire(False):
            return False
        failed: OSError | None = None
        try:
            if self._retired or self._closed.is_set() or not self._queue.idle():
                return False
            if self._seal is not None:
                data = self._seal(data)  # under _wlock: sequence numbers in wire order
            try:
                sent = self.sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                failed = exc
                return True  # lost with the connection, as a queued frame would be
            self.bytes_out += sent
            if sent < len(data):
                self._queue.put_head(data[sent:], self)  # the writer counts the frame
            else:
                self.frames_out += 1
            return True
        finally:
            self._wlock.release()
            if failed is not None and not self._closed.is_set():
                log.info("%s: write failed, closing: %s", self._label, failed)
                self.close()

    def write_loop(self) -> None:
        """The writer thread (``start_writer`` counted it as a user): drain the queue into
        the socket until the connection closes or a write fails; when retired, half-close
        after the batch in hand, or once a private queue is empty (closing fully if reading
        is over too)."""
        queue, sock, cfg = self._queue, self.sock, self._config
        half_close = False
        try:
            while not self._closed.is_set():
                if self._retired and not (self._drain_on_retire and not queue.idle()):
                    with self._wlock:
                        sock.shutdown(socket.SHUT_WR)  # the reader carries on until EOF
                    half_close = True
                    break
                if not queue.wait(0.5):
                    continue
                with self._wlock:
                    batch = queue.take(0, cfg.write_batch_bytes, self, self._seal)
                    if not batch:
                        continue
                    data = batch[0] if len(batch) == 1 else b"".join(batch)
                    sock.sendall(data)
                    # under the lock, as the direct writes count theirs: no lost update
                    self.frames_out += len(batch)
                    self.bytes_out += len(data)  # of a head, only its unsent rest
        except OSError as exc:
            if not self._closed.is_set():
                log.info("%s: write failed, closing: %s", self._label, exc)
        except Exception:
            log.exception("%s: writer failed, closing", self._label)
        finally:
            with self._lock:
                self._writer_active = False
                reader_done = self._reader_done
            self._leave(close=not half_close or reader_done)

    # -- receiving ------------------------------------------------------------------------

    def read_loop(self) -> None:
        """Read, frame, decode, deliver; close on EOF, socket error or malformed input."""
        if not self._enter():
            return
        decoder = self._decoder = self._new_decoder()
        # one buffer for the life of the reader, filled with recv_into: a fresh recv(256
        # KiB) allocates (mmaps) and frees that much per read, 15 us of a small read's 18
        rbuf = bytearray(self._config.recv_size)
        rview = memoryview(rbuf)
        recv_into = self.sock.recv_into
        eof = False
        try:
            while True:
                n = recv_into(rbuf)
                if not n:
                    eof = True
                    self._warn_truncated(decoder)
                    break
                self.bytes_in += n
                bodies = decoder.feed(rview[:n])  # copies what it keeps
                if not bodies:
                    continue
                if self._auth is not None:
                    bodies = self._auth.open_many(bodies)
                frames = self._accept_frames(codec.decode_many(bodies))
                if not frames:
                    continue
                try:
                    self._on_frames(self, frames)
                except Exception:
                    log.exception("%s: on_frames callback failed", self._label)
        except OSError as exc:
            if not self._closed.is_set():
                log.info("%s: read failed: %s", self._label, exc)
        except Exception as exc:
            self._bad_input(exc)
        finally:
            self._finish_reading(eof)

    def _new_decoder(self) -> FrameDecoder:
        cfg = self._config
        return FrameDecoder(decoder_limit(cfg.max_frame_size, self._auth), self._budget,
                            cfg.partial_allowance, self._on_shrink)

    def _bad_input(self, exc: Exception) -> None:
        """Whatever went wrong reading or decoding closes this connection only."""
        if isinstance(exc, BufferLimitExceeded):
            log.warning("%s (%s): partial frames over the node's buffer budget, closing: %s",
                        self._label, self.remote, exc)
            self._on_over_budget()
        elif isinstance(exc, FrameAuthError):
            log.warning("%s (%s): frame authentication failed, closing: %s", self._label,
                        self.remote, exc)
            self._on_bad_mac()
        elif isinstance(exc, DecodeError):
            log.warning("%s (%s): malformed input, closing: %s", self._label, self.remote,
                        safe_repr(str(exc), 200))
            self._on_malformed()
        else:  # a bug, or input nothing above foresaw: still this connection's problem only
            log.error("%s (%s): reading failed, closing: %s: %s", self._label, self.remote,
                      type(exc).__name__, safe_repr(str(exc), 200), exc_info=exc)
            self._on_malformed()

    def _warn_truncated(self, decoder: FrameDecoder) -> None:
        if decoder.pending():
            log.warning("%s (%s): connection closed in the middle of a frame (%d bytes "
                        "pending): truncated stream", self._label, self.remote,
                        decoder.pending())

    def _accept_frames(self, frames: list[codec.Frame]) -> list[codec.Frame]:
        self.frames_in += len(frames)
        if self._is_blocked(self.peer_id):
            self.dropped_in += len(frames)
            return []
        return frames

    def _finish_reading(self, eof: bool) -> None:
        decoder = self._decoder
        if decoder is not None:
            decoder.release()  # give the node-wide buffer budget back
        with self._lock:
            self._reader_done = True
            writer_running = self._writer_active
        if eof and writer_running and not self._closed.is_set():
            # The other end half-closed (it retired this connection, or a client is done
            # sending): let our writer finish its batch, half-close, then close.
            self.retire()
            self._leave(close=False)
        else:
            self._leave()

    # -- receiving through a Reactor (one thread for many connections) --------------------

    def reactor_attach(self) -> bool:
        """Become readable by a reactor instead of a reader thread (counts as a user of
        the socket until ``reactor_detach``)."""
        if not self._enter():
            return False
        self._decoder = self._new_decoder()
        self.reactor_eof = False
        return True

    def reactor_cancel(self) -> None:
        """Undo ``reactor_attach`` (the reactor never watched it): the caller reads it."""
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            decoder.release()
        self._leave(close=False)

    def reactor_read(self, rbuf: bytearray, rview: memoryview) -> list[codec.Frame] | None:
        """One non-blocking read into the reactor's buffer (``rview`` views ``rbuf``; one
        per reactor thread, see read_loop for why): the frames it completed ([] if none),
        or None when this connection is finished (EOF, error, malformed input)."""
        decoder = self._decoder
        assert decoder is not None, "reactor_attach first"
        try:
            n = self.sock.recv_into(rbuf, min(self._config.recv_size, len(rbuf)),
                                    socket.MSG_DONTWAIT)
            data = rview[:n]
        except (BlockingIOError, InterruptedError):
            return []
        except OSError as exc:
            if not self._closed.is_set():
                log.info("%s: read failed: %s", self._label, exc)
            return None
        if not data:
            self.reactor_eof = True
            self._warn_truncated(decoder)
            return None
        self.bytes_in += len(data)
        try:
            bodies = decoder.feed(data)
            if not bodies:
                return []
            if self._auth is not None:
                bodies = self._auth.open_many(bodies)
            return self._accept_frames(codec.decode_many(bodies))
        except Exception as exc:
            self._bad_input(exc)
            return None

    def reactor_detach(self, eof: bool) -> None:
        """The reactor stopped watching this socket: finish as a reader thread would."""
        self._finish_reading(eof)

    def stats(self) -> dict[str, Any]:
        return {
            "peer": self.peer_id,
            "role": self.role,
            "remote": self.remote,
            "local": self.local,
            "retired": self._retired,
            "inbound": self.inbound,
            "open": not self.closed,
            "frames_in": self.frames_in,
            "bytes_in": self.bytes_in,
            "frames_out": self.frames_out,
            "bytes_out": self.bytes_out,
            "dropped_in": self.dropped_in,
            "queued": len(self._queue),
            "dropped_out": self._queue.dropped,
        }


def _local_name(sock: socket.socket) -> str:
    try:
        name = sock.getsockname()
    except OSError:
        return "?"
    if isinstance(name, tuple) and len(name) >= 2:
        return f"{name[0]}:{name[1]}"
    return str(name) or "local"


def _remote_name(sock: socket.socket) -> str:
    try:
        name = sock.getpeername()
    except OSError:
        return "?"
    if isinstance(name, tuple) and len(name) >= 2:
        return f"{name[0]}:{name[1]}"
    return str(name) or "local"


def connect(
    addr: str,
    cookie: str | bytes,
    client_id: str,
    on_frames: OnFrames,
    config: TransportConfig | None = None,
    on_close: Callable[[Connection], None] | None = None,
    tls: ssl.SSLContext | None = None,
) -> Connection:
    """Open an authenticated client connection to a node (blocking, with timeouts); replies
    and pushes arrive through ``on_frames`` (on the connection's reader thread), and
    ``on_close(conn)`` runs once when the connection ends for any reason. Raises ``OSError``
    or ``HandshakeError``."""
    cfg = config or TransportConfig()
    host, port = parse_addr(addr)
    sock = socket.create_connection((host, port), timeout=cfg.connect_timeout)
    try:
        if tls is not None:
            sock = connect_tls(tls, sock, host, cfg.handshake_timeout)
        auth = client_handshake(sock, cookie_bytes(cookie), client_id, cfg.handshake_timeout)
        tune_socket(sock, cfg.write_timeout)
    except BaseException:
        sock.close()
        raise
    conn = Connection(
        TlsSocket(sock, cfg.write_timeout) if tls is not None else sock,  # type: ignore[arg-type]
        auth.peer_id,
        inbound=False,
        on_frames=on_frames,
        config=cfg,
        on_close=on_close or (lambda _c: None),
        label=f"client:{addr}",
        frame_auth=for_connection(auth.session_key, initiator=True, enabled=tls is None),
    )
    conn.start_reader()
    return conn
