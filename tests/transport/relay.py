"""An on-path attacker for tests: a TCP relay that forwards the cookie handshake untouched,
then may rewrite, replace or inject frames from the dialing side (client or peer node)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

from zraft.transport.framing import HEADER, HEADER_SIZE

# (data frame index on this connection, the frame as read) -> the bytes to forward instead
Tamper = Callable[[int, bytes], bytes]


class FrameRelay:
    """Listens on 127.0.0.1:``port``, relays to ``target``. On the first ``tampered``
    connections, frames the dialer sends after its one handshake message go through
    ``tamper``; later connections are forwarded untouched (``later="forward"``) or closed at
    once (``later="refuse"``: the attacker keeps the victim from a clean retry)."""

    def __init__(self, target: tuple[str, int], tamper: Tamper, tampered: int = 1,
                 later: str = "forward") -> None:
        self.target = target
        self.tamper = tamper
        self.tampered = tampered
        self.later = later
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.accepted = 0
        self.closed_by_target = threading.Event()  # a tampered connection was closed
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._start(self._accept_loop)

    def _start(self, target: Callable[..., None], *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            self.accepted += 1
            with self._lock:
                self._socks.append(client)
            if self.accepted > self.tampered and self.later == "refuse":
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._socks.append(upstream)
            tampering = self.accepted <= self.tampered
            self._start(self._back, upstream, client, tampering)
            self._start(self._forth, client, upstream, tampering)

    def _back(self, src: socket.socket, dst: socket.socket, tampering: bool) -> None:
        """Listener -> dialer: untouched; notes when the listener ends a tampered link."""
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        if tampering:
            self.closed_by_target.set()
        _shut(dst)

    def _forth(self, src: socket.socket, dst: socket.socket, tampering: bool) -> None:
        """Dialer -> listener, frame by frame: the handshake message, then data frames."""
        buf = b""
        index = -1  # the auth message of the handshake
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not tampering:
                    dst.sendall(data)
                    continue
                buf += data
                out = []
                while len(buf) >= HEADER_SIZE:
                    end = HEADER_SIZE + HEADER.unpack_from(buf)[0]
                    if len(buf) < end:
                        break
                    one, buf = buf[:end], buf[end:]
                    out.append(one if index < 0 else self.tamper(index, one))
                    index += 1
                if out:
                    dst.sendall(b"".join(out))
        _shut(dst)

    def close(self) -> None:
        _shut(self.lsock)  # wakes the accept (a close alone does not, on Linux)
        with contextlib.suppress(OSError):
            self.lsock.close()
        with self._lock:
            socks, threads = list(self._socks), list(self._threads)
        for s in socks:
            _shut(s)
        for t in threads:
            t.join(5)
        for s in socks:
            s.close()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def flip_in(frame: bytes, needle: bytes) -> bytes:
    """``frame`` with one byte of the first ``needle`` in it changed (the relay's rewrite)."""
    at = frame.index(needle) + len(needle) - 1
    return frame[:at] + bytes([frame[at] ^ 0x01]) + frame[at + 1:]
