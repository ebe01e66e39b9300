"""Snapshot directory transfer over TCP with kernel sendfile (zraft_lib's receiver, made safe).

Flow (one transfer = one receiver = one listening port, so transfers run side by side):

1. The follower builds a ``SnapshotReceiver(dest_dir, ...)``; ``start()`` binds
   ``(listen_addr, listen_port)`` (port 0 = any free port) and returns the (addr, port) the
   leader must connect to.
2. The leader calls ``send_snapshot(snapshot_dir, addr, port, ...)``: connect (timeout), cookie
   handshake (the leader is the client), then a MANIFEST frame ``[files, mac]`` where
   ``files`` is ``[[relative_path, size], ...]`` in sorted path order and ``mac`` is
   HMAC-SHA256 under the handshake's session key. The receiver answers ``["ready"]`` or
   ``["error", reason]``. (A manifest given by the caller may carry each file's sha256 as
   a third item: ``[relative_path, size, sha256]``.)
3. For each file: a header frame ``[relative_path, size]`` (must match the manifest), then
   exactly ``size`` raw bytes sent with ``os.sendfile``. The sender hashes the files on a
   second thread meanwhile; the receiver hashes what it gets on a second thread too.
4. ``["done", digests, mac]``: the sha256 of every file in manifest order, authenticated
   by an HMAC under the session key (just ``["done"]`` if the manifest had them), so every
   byte is authenticated. The receiver has written everything into a temp dir next to
   ``dest_dir`` and fsynced every file and directory; if every digest matches what it
   hashed it renames the temp dir to ``dest_dir`` (atomic), fsyncs the parent, and answers
   ``["ok"]``; otherwise ``["error", reason]``.

Rules:
- Nothing partial is ever visible: any failure (timeout, disconnect, bad hash, bad path,
  too much data) deletes the temp dir; ``dest_dir`` appears complete or not at all. A failed
  transfer is retried with a new receiver.
- Every blocking step has a timeout: accept (``accept_timeout``), handshake, each read and
  write (``io_timeout`` of silence), the sender's connect (``connect_timeout``).
- Paths in the manifest are relative, normalised, free of ``..``; empty files are files
  (zraft_lib turned them into directories); empty directories are not transferred.
- A connection that fails the cookie handshake is refused and logged; the receiver keeps
  waiting for the real sender until ``accept_timeout``.
- ``STATS`` counts transfers and the bytes that went through sendfile, for node status.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import selectors
import shutil
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import msgpack

from zraft.saferepr import safe_repr
from zraft.transport.codec import check_nesting
from zraft.transport.errors import DecodeError, HandshakeError, SnapshotTransferError
from zraft.transport.frame_auth import FrameAuth, FrameAuthError, decoder_limit
from zraft.transport.framing import HEADER, HEADER_SIZE
from zraft.transport.handshake import client_handshake, cookie_bytes, server_handshake
from zraft.transport.snapshot_files import DigestsOf, file_digest, receive_file
from zraft.transport.tls import accept_tls, connect_tls, wrap_server

log = logging.getLogger("zraft.transport.snapshot")

Progress = Callable[[int, int], None]  # (bytes done, bytes total)

MAX_CONTROL_FRAME = 16 * 1024 * 1024
SENDFILE_CHUNK = 8 * 1024 * 1024
MAX_PATH_LENGTH = 4096


class ManifestEntry(NamedTuple):
    path: str  # relative, "/"-separated
    size: int
    sha256: bytes | None  # None: sent after the data, in the done frame


class TransferResult(NamedTuple):
    files: int
    bytes: int
    seconds: float
    # receiver side: relative path -> sha256 of the bytes received and written
    digests: dict[str, bytes] = {}  # shared default: never mutated

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


class SnapshotStats:
    """Process-wide counters (thread-safe) for node status ("sendfile transfers").

    Seconds are totals over transfers, so a rate over an interval is the difference of
    bytes over the difference of seconds: ``sendfile_seconds`` is time spent in the
    sendfile loops (the transfer itself), ``manifest_seconds`` hashing files before a
    send, ``send_seconds`` whole sends (connect to the receiver's "ok");
    ``receive_seconds`` whole receives (authenticated connection to "ok", so verifying
    and fsyncing included) and ``receive_sync_seconds`` the fsyncs and rename of them."""

    COUNTS = ("sends_started", "sends_ok", "sends_failed", "sendfile_bytes", "files_sent",
              "receives_ok", "receives_failed", "bytes_received",
              "tls_sent_bytes")  # sent through TLS: read and encrypted in user space
    SECONDS = ("manifest_seconds", "sendfile_seconds", "send_seconds", "receive_seconds",
               "receive_sync_seconds")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = dict.fromkeys(self.COUNTS + self.SECONDS, 0)

    def add(self, name: str, amount: float = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {k: round(v, 6) if k in self.SECONDS else v for k, v in self._values.items()}


STATS = SnapshotStats()


# ---------------------------------------------------------------------------------------
# Shared helpers


def _send_frame(sock: socket.socket, obj: Any, fa: FrameAuth | None = None) -> None:
    body = msgpack.packb(obj, use_bin_type=True)
    data = HEADER.pack(len(body)) + body
    sock.sendall(data if fa is None else fa.seal(data))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if not k:
            raise SnapshotTransferError("connection closed mid-transfer")
        got += k
    return bytes(buf)


def _recv_frame(sock: socket.socket, fa: FrameAuth | None = None) -> Any:
    """One control frame (authenticated with ``fa``: every control frame after the
    handshake is; the file bytes between them are covered by the digests instead)."""
    (length,) = HEADER.unpack(_recv_exact(sock, HEADER_SIZE))
    if not 0 < length <= decoder_limit(MAX_CONTROL_FRAME, fa):
        raise SnapshotTransferError(f"control frame length {length} not allowed")
    body = _recv_exact(sock, length)
    if fa is not None:
        try:
            body = fa.open(body)
        except FrameAuthError as exc:
            raise SnapshotTransferError(str(exc)) from None
    try:
        obj = msgpack.unpackb(body, raw=False)
    except Exception as exc:
        raise SnapshotTransferError(f"bad control frame: {type(exc).__name__}") from None
    try:  # control frames hold lists of [path, size, digest]: never deep
        return check_nesting(obj, "control frame", limit=4)
    except DecodeError as exc:
        raise SnapshotTransferError(str(exc)) from None


def _manifest_mac(session_key: bytes, files: list[list[Any]]) -> bytes:
    payload = msgpack.packb(files, use_bin_type=True)
    return hmac.new(session_key, b"zraft-manifest" + payload, hashlib.sha256).digest()


def list_files(snapshot_dir: str | Path) -> list[tuple[str, Path, int]]:
    """Every regular file under ``snapshot_dir`` as (relative path, path, size), sorted by
    relative path. Symlinks and special files are refused (a snapshot holds plain files)."""
    root = Path(snapshot_dir)
    if not root.is_dir():
        raise SnapshotTransferError(f"{root} is not a directory")
    found: list[tuple[str, Path, int]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            if (Path(dirpath) / name).is_symlink():
                raise SnapshotTransferError(f"symlink in snapshot: {Path(dirpath) / name}")
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                raise SnapshotTransferError(f"not a regular file: {path}")
            found.append((path.relative_to(root).as_posix(), path, path.stat().st_size))
    return sorted(found)


def build_manifest(snapshot_dir: str | Path) -> list[ManifestEntry]:
    """Every regular file under ``snapshot_dir``, sorted by relative path, with size and
    sha256 (see ``list_files``)."""
    return [ManifestEntry(rel, size, file_digest(path, size))
            for rel, path, size in list_files(snapshot_dir)]


def _check_manifest(raw: Any, max_total: int | None) -> list[ManifestEntry]:
    """Entries are ``[path, size, sha256]`` or ``[path, size]`` (the sha256 then comes in
    the done frame); ``sha256`` is None in the latter."""
    if type(raw) is not list:
        raise SnapshotTransferError("manifest must be a list")
    entries: list[ManifestEntry] = []
    seen: set[str] = set()
    total = 0
    for item in raw:
        if type(item) is not list or len(item) not in (2, 3):
            raise SnapshotTransferError("manifest entry must be [path, size(, sha256)]")
        path, size = item[0], item[1]
        digest = item[2] if len(item) == 3 else None
        if type(size) is not int or size < 0:
            raise SnapshotTransferError("manifest size must be an int >= 0")
        if digest is not None and (type(digest) is not bytes or len(digest) != 32):
            raise SnapshotTransferError("manifest sha256 must be 32 bytes")
        _check_path(path)
        if path in seen:
            raise SnapshotTransferError(f"duplicate path {safe_repr(path)}")
        seen.add(path)
        total += size
        entries.append(ManifestEntry(path, size, digest))
    if max_total is not None and total > max_total:
        raise SnapshotTransferError(f"snapshot of {total} bytes exceeds {max_total}")
    return entries


def _digests_mac(session_key: bytes, digests: list[bytes]) -> bytes:
    payload = msgpack.packb(digests, use_bin_type=True)
    return hmac.new(session_key, b"zraft-digests" + payload, hashlib.sha256).digest()


def _check_path(path: Any) -> None:
    if type(path) is not str or not 0 < len(path) <= MAX_PATH_LENGTH or "\x00" in path:
        raise SnapshotTransferError("bad path in manifest")
    pure = PurePosixPath(path)
    if (
        pure.is_absolute()
        or "\\" in path
        or pure.as_posix() != path
        or any(part in ("", ".", "..") for part in pure.parts)
    ):
        raise SnapshotTransferError(f"unsafe path in manifest: {safe_repr(path)}")


# ---------------------------------------------------------------------------------------
# Sender (leader side)


def _wait_writable(sock: socket.socket, timeout: float) -> None:
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_WRITE)
        if not sel.select(timeout):
            raise SnapshotTransferError(f"receiver stalled for {timeout}s")


def _sendfile(
    sock: socket.socket, path: Path, size: int, timeout: float, on_chunk: Callable[[int], None]
) -> int:
    """Send exactly ``size`` bytes of ``path`` with ``os.sendfile``; returns bytes sent.
    ``on_chunk(n)`` is called after every chunk the kernel accepted."""
    if isinstance(sock, ssl.SSLSocket):
        return _send_encrypted(sock, path, size, on_chunk)
    sent = 0
    with path.open("rb") as f:
        out_fd, in_fd = sock.fileno(), f.fileno()
        while sent < size:
            try:
                n = os.sendfile(out_fd, in_fd, sent, min(SENDFILE_CHUNK, size - sent))
            except BlockingIOError:
                _wait_writable(sock, timeout)
                continue
            if n == 0:
                raise SnapshotTransferError(f"{path} shrank while being sent")
            sent += n
            STATS.add("sendfile_bytes", n)
            on_chunk(n)
    return sent


def _send_encrypted(sock: ssl.SSLSocket, path: Path, size: int,
                    on_chunk: Callable[[int], None]) -> int:
    """What replaces sendfile under TLS (the kernel cannot encrypt here: no kTLS before
    Python 3.12, see tls.py): read a chunk into one reused buffer, ``sendall`` it through
    the SSL object (records of 16 KiB; ``SSLSocket.sendfile`` would send 8 KiB blocks)."""
    sent = 0
    buf = bytearray(SENDFILE_CHUNK)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        while sent < size:
            n = f.readinto(view[:min(SENDFILE_CHUNK, size - sent)])
            if not n:
                raise SnapshotTransferError(f"{path} shrank while being sent")
            sock.sendall(view[:n])  # the socket's timeout bounds a stalled receiver
            sent += n
            STATS.add("tls_sent_bytes", n)
            on_chunk(n)
    return sent


def send_snapshot(
    snapshot_dir: str | Path,
    addr: str,
    port: int,
    cookie: str | bytes,
    node_id: str,
    *,
    connect_timeout: float = 5.0,
    handshake_timeout: float = 5.0,
    io_timeout: float = 10.0,
    on_progress: Progress | None = None,
    manifest: list[ManifestEntry] | None = None,
    tls: ssl.SSLContext | None = None,
) -> TransferResult:
    """Stream ``snapshot_dir`` to the receiver at (addr, port). Raises
    ``SnapshotTransferError`` on any failure (the receiver then keeps nothing). ``tls``: a
    client context; the receiver's certificate must name ``addr``."""
    root = Path(snapshot_dir)
    started = time.monotonic()
    STATS.add("sends_started")
    try:
        hashing: DigestsOf | None = None
        if manifest is not None:
            entries = manifest
        else:  # hashed while being sent; the digests follow the data
            listed = list_files(root)
            entries = [ManifestEntry(rel, size, None) for rel, _p, size in listed]
            hashing = DigestsOf(listed)
        connecting = time.monotonic()
        STATS.add("manifest_seconds", connecting - started)
        total = sum(e.size for e in entries)
        try:
            sock = socket.create_connection((addr, port), timeout=connect_timeout)
        except OSError as exc:
            raise SnapshotTransferError(f"cannot connect to {addr}:{port}: {exc}") from exc
        if tls is not None:
            try:
                sock = connect_tls(tls, sock, addr, handshake_timeout)
            except BaseException:
                sock.close()
                raise
        with sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            auth = client_handshake(
                sock, cookie_bytes(cookie), node_id, handshake_timeout, role="snapshot"
            )
            sock.settimeout(io_timeout)  # non-blocking fd + timeouts for every later step
            fa = FrameAuth.for_connection(auth.session_key, initiator=True)
            files = [[e.path, e.size] if e.sha256 is None else [e.path, e.size, e.sha256]
                     for e in entries]
            _send_frame(sock, [files, _manifest_mac(auth.session_key, files)], fa)
            _expect(_recv_frame(sock, fa), "ready")
            done = 0

            def advance(n: int) -> None:
                nonlocal done
                done += n
                if on_progress is not None:
                    on_progress(done, total)

            for entry in entries:
                _send_frame(sock, [entry.path, entry.size], fa)
                if entry.size:
                    t = time.monotonic()
                    _sendfile(sock, root / entry.path, entry.size, io_timeout, advance)
                    STATS.add("sendfile_seconds", time.monotonic() - t)
                STATS.add("files_sent")
            if hashing is None:
                _send_frame(sock, ["done"], fa)
            else:
                t = time.monotonic()
                digests = hashing.result(io_timeout)
                STATS.add("manifest_seconds", time.monotonic() - t)  # only the wait shows
                _send_frame(sock, ["done", digests, _digests_mac(auth.session_key, digests)], fa)
            _expect(_recv_frame(sock, fa), "ok")
    except SnapshotTransferError:
        STATS.add("sends_failed")
        raise
    except (OSError, HandshakeError) as exc:
        STATS.add("sends_failed")
        raise SnapshotTransferError(f"snapshot send to {addr}:{port} failed: {exc}") from exc
    STATS.add("sends_ok")
    STATS.add("send_seconds", time.monotonic() - connecting)
    return TransferResult(len(entries), total, time.monotonic() - started)


def _expect(reply: Any, word: str) -> None:
    if reply == [word]:
        return
    if type(reply) is list and reply and reply[0] == "error":
        raise SnapshotTransferError(f"receiver refused: {safe_repr(reply[1:], 200)}")
    raise SnapshotTransferError(f"expected {word!r}, got {safe_repr(reply)}")


# ---------------------------------------------------------------------------------------
# Receiver (follower side)


class SnapshotReceiver:
    """Receives one snapshot into ``dest_dir`` (which must not exist yet)."""

    def __init__(
        self,
        dest_dir: str | Path,
        cookie: str | bytes,
        node_id: str,
        *,
        listen_addr: str = "0.0.0.0",
        listen_port: int = 0,
        advertise_addr: str | None = None,
        accept_timeout: float = 30.0,
        handshake_timeout: float = 5.0,
        io_timeout: float = 10.0,
        max_total_bytes: int | None = None,
        on_progress: Progress | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: a server context (the node's): the sender must speak TLS."""
        self.dest_dir = Path(dest_dir)
        self._tls = tls
        if self.dest_dir.exists():
            raise FileExistsError(f"{self.dest_dir} already exists")
        self._cookie = cookie_bytes(cookie)
        self._node_id = node_id
        self._listen = (listen_addr, listen_port)
        self._advertise = advertise_addr
        self._accept_timeout = accept_timeout
        self._handshake_timeout = handshake_timeout
        self._io_timeout = io_timeout
        self._max_total = max_total_bytes
        self._on_progress = on_progress
        self._tmp = self.dest_dir.with_name(f".{self.dest_dir.name}.tmp-{uuid.uuid4().hex[:12]}")
        self._lsock: socket.socket | None = None
        self._active: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._cancelled = threading.Event()
        self._done = threading.Event()
        self.result: TransferResult | None = None
        self.error: str | None = None
        self.refused = 0  # connections that failed the handshake
        self._sync_seconds = 0.0  # fsyncs and the rename of this transfer

    @property
    def temp_dir(self) -> Path:
        return self._tmp

    def start(self) -> tuple[str, int]:
        """Bind and start waiting for the sender; returns the (addr, port) to advertise."""
        lsock = socket.socket(socket.AF_INET6 if ":" in self._listen[0] else socket.AF_INET)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(self._listen)
        lsock.listen(16)
        self._lsock = lsock
        host, port = lsock.getsockname()[:2]
        self._thread = threading.Thread(
            target=self._run, name=f"zraft-snap-recv-{port}", daemon=True
        )
        self._thread.start()
        return self._advertised_host(host), port

    def _advertised_host(self, bound: str) -> str:
        if self._advertise:
            return self._advertise
        if bound not in ("0.0.0.0", "::", ""):
            return bound
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"

    def wait(self, timeout: float | None = None) -> TransferResult:
        """Block until the transfer ends; returns its result or raises
        ``SnapshotTransferError`` (also on ``timeout``, after cancelling)."""
        if not self._done.wait(timeout):
            self.cancel()
            self._done.wait(self._io_timeout)
            raise SnapshotTransferError("snapshot receive timed out")
        if self.result is None:
            raise SnapshotTransferError(self.error or "snapshot receive failed")
        return self.result

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Abort: the receiving thread stops, the temp dir goes away."""
        self._cancelled.set()
        for sock in (self._lsock, self._active):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the receiving thread -------------------------------------------------------------

    def _run(self) -> None:
        started = time.monotonic()
        try:
            sock, session_key = self._accept_authenticated()
            connected = time.monotonic()
            with sock:
                self._active = sock
                self.result = self._receive(sock, session_key, started)
            STATS.add("receives_ok")
            STATS.add("receive_seconds", time.monotonic() - connected)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            STATS.add("receives_failed")
            log.warning("snapshot receive into %s failed: %s", self.dest_dir, self.error)
            shutil.rmtree(self._tmp, ignore_errors=True)
        finally:
            if self._lsock is not None:
                with contextlib.suppress(OSError):
                    self._lsock.close()
            self._done.set()

    def _accept_authenticated(self) -> tuple[socket.socket, bytes]:
        lsock = self._lsock
        assert lsock is not None
        deadline = time.monotonic() + self._accept_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self._cancelled.is_set():
                raise SnapshotTransferError("no authenticated sender before the accept timeout")
            lsock.settimeout(min(left, 0.5))
            try:
                sock, _ = lsock.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                raise SnapshotTransferError(f"listener failed: {exc}") from exc
            try:
                if self._tls is not None:
                    sock = wrap_server(self._tls, sock)
                    accept_tls(sock, time.monotonic() + self._handshake_timeout)  # type: ignore[arg-type]
                auth = server_handshake(sock, self._cookie, self._node_id, self._handshake_timeout)
            except HandshakeError as exc:
                if self._tls is not None:
                    log.warning("snapshot receiver refused a sender: %s", exc)
                self.refused += 1
                sock.close()
                continue
            sock.settimeout(self._io_timeout)
            return sock, auth.session_key

    def _receive(self, sock: socket.socket, session_key: bytes, started: float) -> TransferResult:
        fa = FrameAuth.for_connection(session_key, initiator=False)
        try:
            frame = _recv_frame(sock, fa)
            if type(frame) is not list or len(frame) != 2:
                raise SnapshotTransferError("manifest frame must be [files, mac]")
            files, mac = frame
            expected = _manifest_mac(session_key, files) if type(files) is list else b""
            if type(mac) is not bytes or not hmac.compare_digest(mac, expected):
                raise SnapshotTransferError("manifest MAC does not verify")
            entries = _check_manifest(files, self._max_total)
            self._tmp.mkdir(parents=True)
            _send_frame(sock, ["ready"], fa)
            total = sum(e.size for e in entries)
            done = 0
            received: list[bytes] = []
            for entry in entries:
                header = _recv_frame(sock, fa)
                if header != [entry.path, entry.size]:
                    raise SnapshotTransferError(
                        f"file header {safe_repr(header)} is not {entry.path}")
                digest = self._receive_file(sock, entry)
                if entry.sha256 is not None and not hmac.compare_digest(digest, entry.sha256):
                    raise SnapshotTransferError(f"{entry.path}: sha256 mismatch (corrupted)")
                received.append(digest)
                done += entry.size
                if self._on_progress is not None:
                    self._on_progress(done, total)
                if self._cancelled.is_set():
                    raise SnapshotTransferError("cancelled")
            self._check_done(_recv_frame(sock, fa), entries, received, session_key)
            self._install()
            STATS.add("receive_sync_seconds", self._sync_seconds)
            STATS.add("bytes_received", total)
            _send_frame(sock, ["ok"], fa)
            return TransferResult(len(entries), total, time.monotonic() - started,
                                  {e.path: d for e, d in zip(entries, received, strict=True)})
        except SnapshotTransferError as exc:
            with contextlib.suppress(OSError):
                _send_frame(sock, ["error", str(exc)], fa)
            raise

    @staticmethod
    def _check_done(frame: Any, entries: list[ManifestEntry], received: list[bytes],
                    session_key: bytes) -> None:
        """``["done"]`` when the manifest had every sha256, else ``["done", digests, mac]``
        with the sender's sha256 of each file (authenticated), which must match ours."""
        if all(e.sha256 is not None for e in entries) and frame == ["done"]:
            return
        if type(frame) is not list or len(frame) != 3 or frame[0] != "done":
            raise SnapshotTransferError("expected the done frame with the file digests")
        _, digests, mac = frame
        if (type(digests) is not list or len(digests) != len(entries)
                or not all(type(d) is bytes and len(d) == 32 for d in digests)):
            raise SnapshotTransferError("malformed file digests")
        if type(mac) is not bytes or not hmac.compare_digest(
                mac, _digests_mac(session_key, digests)):
            raise SnapshotTransferError("file digests MAC does not verify")
        for entry, theirs, ours in zip(entries, digests, received, strict=True):
            if not hmac.compare_digest(theirs, ours):
                raise SnapshotTransferError(f"{entry.path}: sha256 mismatch (corrupted)")

    def _receive_file(self, sock: socket.socket, entry: ManifestEntry) -> bytes:
        path = self._tmp / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        received = receive_file(sock, path, entry.size, entry.path, self._cancelled)
        self._sync_seconds += received.fsync_seconds
        return received.sha256

    def _install(self) -> None:
        t = time.monotonic()
        for dirpath, _, _ in os.walk(self._tmp, topdown=False):
            _fsync_dir(Path(dirpath))
        os.rename(self._tmp, self.dest_dir)
        _fsync_dir(self.dest_dir.parent)
        self._sync_seconds += time.monotonic() - t


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "STATS",
    "ManifestEntry",
    "SnapshotReceiver",
    "TransferResult",
    "build_manifest",
    "send_snapshot",
]
