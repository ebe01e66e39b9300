"""Reactor: one thread reads every client connection of a node (epoll via ``selectors``).

Why: with a reader thread per connection, 64 clients meant 64 threads waking and fighting
for the GIL on every request, and one ClientBatch (one actor message, one Ready) per frame.
One reactor thread reads all the sockets that are ready, then hands every frame of the round
to ``on_round([(conn, frames), ...])`` in ONE call, so the node can make one ClientBatch per
peer for the whole round.

Rules:
- Only reading moves here; writing stays with ``Connection.send`` (direct or its writer).
- A connection is attached with ``Connection.reactor_attach`` (it counts as a user of its
  socket) and detached with ``reactor_detach`` after its fd left the selector, so the socket
  is never closed while registered, and a reused fd number can never be confused.
- EOF, a socket error, malformed input or ANY exception while reading one connection ends
  that connection only, exactly as its own reader thread would (``Connection.reactor_detach``
  shares that code); the round goes on with the others.
- ``on_round`` runs on the reactor thread; an exception there is logged, never fatal.
- Should the thread die anyway (a bug outside any one connection), it closes every
  connection it held, refuses new ones (``add`` returns False: the caller serves the
  connection itself) and calls ``on_exit(reactor, exc)``: the transport starts a new reactor
  or, past its restart budget, reports the node as failed.
- ``add`` may be called from any thread; the selector is touched only by the reactor thread
  (new connections are handed over through a queue and a wake-up socket).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zraft.saferepr import safe_repr
from zraft.transport.tls import TlsSocket

if TYPE_CHECKING:
    from zraft.transport.connection import Connection

log = logging.getLogger("zraft.transport.tcp")

OnRound = Callable[[list[tuple["Connection", list[Any]]]], None]
OnExit = Callable[["Reactor", BaseException], None]



READ_BUFFER = 256 * 1024  # the most one read takes (TransportConfig.recv_size)

class Reactor:
    def __init__(self, on_round: OnRound, name: str = "zraft-reactor",
                 on_exit: OnExit | None = None, start: bool = True) -> None:
        """``start=False``: call ``start()`` once the owner holds the reference (a thread
        that dies at once reports to an owner that already knows it)."""
        self._on_round = on_round
        self._on_exit = on_exit
        # every read of this thread lands here (Connection.reactor_read copies what it
        # keeps): a recv of 256 KiB into a fresh bytes object costs ~15 us on its own
        self._rbuf = bytearray(READ_BUFFER)
        self._rview = memoryview(self._rbuf)
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._incoming: deque[Connection] = deque()
        self._conns: set[Connection] = set()
        # TLS connections whose SSL object still holds decrypted bytes after a full read:
        # epoll cannot see those, so the next round reads them without waiting (tls.py)
        self._again: set[Any] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        if start:
            self._thread.start()

    def start(self) -> None:
        self._thread.start()

    def add(self, conn: Connection) -> bool:
        """Start reading ``conn`` here; False if the reactor is stopping (the caller keeps
        the connection and must close it)."""
        if self._stopping.is_set() or not conn.reactor_attach():
            return False
        self._incoming.append(conn)
        if self._stopping.is_set():
            # stopped meanwhile: if the thread's last _admit did not take it, it is ours
            try:
                self._incoming.remove(conn)
            except ValueError:
                return True  # taken, and closed, by the thread on its way out
            conn.reactor_cancel()
            return False
        self._wake()
        return True

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping.is_set()

    @property
    def thread_alive(self) -> bool:
        """False once the thread has ended (after ``on_exit``, if it failed)."""
        return self._thread.is_alive()

    def __len__(self) -> int:
        return len(self._conns) + len(self._incoming)

    def stop(self, timeout: float) -> None:
        """Detach every connection (each is closed) and end the thread."""
        self._stopping.set()
        self._wake()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    # -- the reactor thread --------------------------------------------------------------

    def _run(self) -> None:
        failure: BaseException | None = None
        try:
            while not self._stopping.is_set():
                self._round()
        except BaseException as exc:
            failure = exc
            log.critical("reactor thread failed: %s: %s", type(exc).__name__,
                         safe_repr(str(exc), 200), exc_info=exc)
        finally:
            self._stopping.set()  # add() refuses from now on
            self._admit()
            for conn in list(self._conns):
                with contextlib.suppress(Exception):
                    self._drop(conn, finished=False)
            with contextlib.suppress(OSError):
                self._sel.close()
            self._wake_r.close()
            self._wake_w.close()
            if failure is not None and self._on_exit is not None:
                self._on_exit(self, failure)

    def _round(self) -> None:
        self._admit()
        again, self._again = self._again, set()
        events = self._sel.select(0 if again else 0.5)
        ready: list[tuple[Connection, list[Any]]] = []
        conns = [key.data for key, _mask in events]
        conns += [conn for conn in again if conn in self._conns and conn not in conns]
        for conn in conns:
            if conn is None:
                with contextlib.suppress(BlockingIOError, OSError):
                    while self._wake_r.recv(4096):
                        pass
                continue
            try:
                frames = conn.reactor_read(self._rbuf, self._rview)
            except Exception as exc:  # reactor_read handles its own; this is a last resort
                log.error("reactor: reading %s failed, closing it: %s: %s", conn.remote,
                          type(exc).__name__, safe_repr(str(exc), 200), exc_info=exc)
                self._drop(conn, finished=False)
                continue
            if frames is None:
                self._drop(conn, finished=True)
            else:
                if frames:
                    ready.append((conn, frames))
                sock = conn.sock
                if type(sock) is TlsSocket and sock.pending():  # (a plaintext read: 1 check)
                    self._again.add(conn)
        if ready:
            try:
                self._on_round(ready)
            except Exception:
                log.exception("reactor: on_round callback failed")

    def _admit(self) -> None:
        while self._incoming:
            conn = self._incoming.popleft()
            if self._stopping.is_set():
                self._conns.add(conn)  # dropped (and closed) by the caller's cleanup
                continue
            try:
                self._sel.register(conn.sock, selectors.EVENT_READ, conn)
            except (ValueError, OSError) as exc:  # closed meanwhile
                log.info("reactor: cannot watch %s: %s", conn.remote, exc)
                conn.reactor_detach(eof=False)
                continue
            self._conns.add(conn)

    def _drop(self, conn: Connection, finished: bool) -> None:
        """Unregister, then let the connection finish (EOF/error: as its reader would)."""
        self._conns.discard(conn)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._sel.unregister(conn.sock)
        if not finished:
            conn.close()
        conn.reactor_detach(eof=conn.reactor_eof)
