"""TLS for every zraft connection (node-to-node, client-to-node, snapshot stream): contexts
from the ``[node] tls_*`` keys, handshakes with a deadline, and ``TlsSocket``, the wrapper
that lets the transport's socket code run unchanged over TLS.

What is verified (only the cluster CA is trusted, never the system's CAs):
- a node's server certificate, by every dialer (peer nodes, clients, the snapshot sender),
  against the cluster CA (``tls_ca``) AND against the host it dialed: the host of a peer id
  ``name@host:port`` (or a node address ``host:port``) must be a subjectAltName of the
  node's certificate, a DNS name or an IP address (Python's ``check_hostname`` matches IP
  SANs for IP hosts). The peer name and the port are not in the certificate: they are
  checked by the cookie handshake, which still runs on top of TLS (defence in depth: a
  stolen CA-signed certificate alone does not let anyone into the cluster);
- with ``tls_verify_client`` (mutual TLS): the certificate every client and peer node must
  present, against the cluster CA (chain, dates; no name: any holder of a CA-signed
  certificate and the cookie may connect, roles are told apart by the cookie handshake).

Non-blocking use: the transport writes from the sending thread with MSG_DONTWAIT and reads
client connections from one reactor thread; an ``SSLSocket`` accepts no flags, raises
``SSLWant{Read,Write}Error`` when non-blocking, and an SSL object must not be used by two
threads at once. ``TlsSocket`` keeps the socket non-blocking, runs every SSL call under one
short lock (never held while waiting), waits with ``poll`` outside the lock, and maps "would
block" to ``BlockingIOError`` for MSG_DONTWAIT callers: the reader/writer code of
``connection.py`` and ``client/connection.py`` works on it as on a plain socket. A read drains
the SSL object into the caller's buffer; ``pending()`` says what a full buffer left behind
(the reactor reads that connection again without waiting for epoll, which cannot see it).
An OpenSSL write that would block must be retried with a buffer that starts with the same
bytes: the callers do that already (the unsent frame becomes the head of the next batch).

Handshakes run on the thread that already does the cookie handshake of that connection (a
node: one short-lived thread per pending handshake; never the reactor), against one deadline.
A node waits ``PLAINTEXT_WAIT`` for the client to speak first (a TLS client sends its hello at
once); a zraft client that waits for the node's plaintext hello instead gets a plaintext
``zraft-denied`` "this node requires TLS", which it shows as its error.

Kernel TLS: ``ssl.OP_ENABLE_KTLS`` (and with it ``SSLSocket.sendfile`` through the kernel)
needs Python 3.12, an OpenSSL built with ktls and the kernel's ``tls`` ULP; with 3.11 a TLS
snapshot is read, encrypted and sent in user space (``snapshot_stream._send_encrypted``;
``SSLSocket.sendfile`` would do the same in 8 KiB blocks), which ``bench/tls_cost.py``
measures.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from zraft.transport.errors import HandshakeError

_DONTWAIT: Final = socket.MSG_DONTWAIT
_DONTWAIT_BIT: Final = int(socket.MSG_DONTWAIT)
PLAINTEXT_WAIT: Final = 0.5  # seconds a node waits for a TLS client hello before refusing
_TLS_HANDSHAKE_RECORD: Final = 0x16
KTLS_AVAILABLE: Final = hasattr(ssl, "OP_ENABLE_KTLS")


class TlsError(ValueError):
    """A TLS setting that cannot work (a file missing, unreadable, not matching)."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: ``cert``/``key`` this end's certificate and private key, ``ca`` the
    cluster CA that signs every certificate. A node needs all three; a client needs ``ca``
    and, when the nodes verify clients, ``cert`` and ``key``."""

    cert: str = ""
    key: str = ""
    ca: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.ca or self.cert)


def _load(ctx: ssl.SSLContext, files: TlsFiles, what: str) -> None:
    if bool(files.cert) != bool(files.key):
        raise TlsError(f"{what}: tls_cert and tls_key go together (one is missing)")
    if files.cert:
        try:
            ctx.load_cert_chain(files.cert, files.key)
        except FileNotFoundError as exc:
            raise TlsError(f"{what}: {exc.filename} not found") from None
        except PermissionError as exc:
            raise TlsError(f"{what}: {exc.filename} is not readable") from None
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"{what}: tls_cert {files.cert} / tls_key {files.key}: "
                           f"{_reason(exc)} (not PEM, or the key does not match)") from None
    if files.ca:
        try:
            ctx.load_verify_locations(cafile=files.ca)
        except FileNotFoundError:
            raise TlsError(f"{what}: tls_ca {files.ca} not found") from None
        except PermissionError:
            raise TlsError(f"{what}: tls_ca {files.ca} is not readable") from None
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f"{what}: tls_ca {files.ca}: {_reason(exc)} "
                           "(not a PEM certificate)") from None


def _base(server: bool) -> ssl.SSLContext:
    # Not ssl.create_default_context: it trusts the system's CAs too, and then any public
    # CA's certificate would pass for a node (or, with mutual TLS, for a client). The
    # cluster CA (tls_ca) is the only CA a zraft context trusts.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # no compression (CRIME); no TLS 1.2 renegotiation (a CPU sink a client could pull on,
    # and a handshake in the middle of a stream two threads use)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return ctx


def server_context(files: TlsFiles, verify_client: bool) -> ssl.SSLContext:
    """A node's listening side; ``TlsError`` (one line) if the files do not work."""
    if not files.cert:
        raise TlsError("node: TLS needs tls_cert and tls_key")
    if not files.ca:
        raise TlsError("node: TLS needs tls_ca (the CA its peers' certificates are checked "
                       "against)")
    ctx = _base(server=True)
    _load(ctx, files, "node")
    ctx.verify_mode = ssl.CERT_REQUIRED if verify_client else ssl.CERT_NONE
    # no TLS 1.3 session tickets: nothing arrives after the handshake that a reader must
    # process while another thread writes (and no resumption to reason about)
    ctx.num_tickets = 0
    return ctx


def client_context(files: TlsFiles, what: str = "client") -> ssl.SSLContext:
    """A dialer's side (a client, or a node dialing a peer): the server's certificate is
    checked against ``files.ca`` and the dialed host; ``files.cert`` is presented if set."""
    if not files.ca:
        raise TlsError(f"{what}: TLS needs a CA file (tls_ca) to check the node's certificate")
    ctx = _base(server=False)
    _load(ctx, files, what)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@dataclass(frozen=True)
class NodeTls:
    """A node's two contexts: accepting (servers) and dialing its peers (clients)."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    verify_client: bool

    @classmethod
    def build(cls, files: TlsFiles, verify_client: bool) -> NodeTls:
        return cls(server_context(files, verify_client), client_context(files, "node"),
                   verify_client)


def _reason(exc: BaseException) -> str:
    """OpenSSL's reason, bounded and printable (it may quote what the peer sent)."""
    reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
    return bounded(str(reason or exc))


def bounded(text: str, limit: int = 160) -> str:
    """``text`` cut to ``limit`` characters, non-printable ones replaced (no repr quotes:
    safe_repr would cut a string to 20 characters)."""
    cut = text[:limit] + ("..." if len(text) > limit else "")
    return "".join(c if c.isprintable() else "?" for c in cut)


def _wait(fd: int, events: int, timeout: float | None) -> bool:
    """Wait for ``events`` on ``fd`` (poll: no FD_SETSIZE limit); False on timeout."""
    poller = select.poll()
    poller.register(fd, events)
    ms = None if timeout is None else max(0, int(timeout * 1000))
    while True:
        try:
            return bool(poller.poll(ms))
        except InterruptedError:
            continue


def _handshake(ssock: ssl.SSLSocket, deadline: float) -> None:
    """``do_handshake`` non-blocking, against ``deadline``: a silent or trickling peer
    costs this thread at most the deadline."""
    ssock.setblocking(False)
    while True:
        try:
            ssock.do_handshake()
            return
        except ssl.SSLWantReadError:
            events = select.POLLIN
        except ssl.SSLWantWriteError:
            events = select.POLLOUT
        left = deadline - time.monotonic()
        if left <= 0 or not _wait(ssock.fileno(), events, left):
            raise HandshakeError("TLS handshake timed out")


def wrap_server(ctx: ssl.SSLContext, sock: socket.socket) -> ssl.SSLSocket:
    """Wrap an accepted socket (no I/O yet: ``accept_tls`` does the handshake)."""
    return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)


def accept_tls(ssock: ssl.SSLSocket, deadline: float, plaintext_wait: float = PLAINTEXT_WAIT
               ) -> None:
    """The node's side of the TLS handshake. ``HandshakeError`` with a bounded reason if the
    peer speaks plaintext, sends no valid certificate (mutual TLS) or is too slow."""
    fd = ssock.fileno()
    wait = min(plaintext_wait, max(0.0, deadline - time.monotonic()))
    try:
        if not _wait(fd, select.POLLIN, wait):
            # a zraft client speaking plaintext waits for our hello: tell it, in its terms
            _deny_plaintext(ssock)
            raise HandshakeError("the client sent no TLS hello: plaintext client refused")
        first = socket.socket.recv(ssock, 1, socket.MSG_PEEK)
        if first and first[0] != _TLS_HANDSHAKE_RECORD:
            _deny_plaintext(ssock)
            raise HandshakeError(f"not TLS (first byte 0x{first[0]:02x}): refused")
        _handshake(ssock, deadline)
    except ssl.SSLError as exc:
        raise HandshakeError(f"TLS handshake failed: {_reason(exc)}") from None
    except OSError as exc:
        raise HandshakeError(f"TLS handshake failed: {bounded(str(exc))}") from None
    except AttributeError:  # SSLSocket.shutdown (eviction) dropped the SSL object
        raise HandshakeError("TLS handshake interrupted") from None


def _deny_plaintext(ssock: ssl.SSLSocket) -> None:
    from zraft.transport.handshake import encode_message  # handshake imports nothing of ours

    message = encode_message(["zraft-denied", "this node requires TLS: give the client "
                                              "the cluster CA (tls_ca / --tls-ca)"])
    with contextlib.suppress(OSError):
        socket.socket.send(ssock, message, socket.MSG_DONTWAIT)


def connect_tls(ctx: ssl.SSLContext, sock: socket.socket, host: str, timeout: float
                ) -> ssl.SSLSocket:
    """The dialer's side: wrap ``sock``, handshake within ``timeout`` checking the node's
    certificate for ``host``. ``HandshakeError`` says why it failed, in one line."""
    deadline = time.monotonic() + timeout
    try:
        ssock = ctx.wrap_socket(sock, server_hostname=host.strip("[]"),
                                do_handshake_on_connect=False)
    except (ssl.SSLError, ValueError) as exc:
        raise HandshakeError(f"TLS to {bounded(host, 80)}: {_reason(exc)}") from None
    try:
        _handshake(ssock, deadline)
    except ssl.SSLCertVerificationError as exc:
        ssock.close()
        raise HandshakeError(f"TLS: the certificate of node {bounded(host, 80)} is not "
                             f"trusted: {_reason(exc)} (wrong tls_ca?)") from None
    except ssl.SSLError as exc:
        ssock.close()
        hint = (" (is the node plaintext?)" if "WRONG_VERSION" in str(exc).upper()
                or "record layer" in str(exc) else "")
        raise HandshakeError(f"TLS handshake with {bounded(host, 80)} failed: "
                             f"{_reason(exc)}{hint}") from None
    except BaseException:
        ssock.close()
        raise
    ssock.setblocking(True)
    return ssock


def describe_refusal(exc: BaseException) -> str:
    """An SSL error met after the handshake (TLS 1.3: the node checks a client certificate
    after the client's handshake ended, and answers with an alert) in one line."""
    return f"TLS refused by the node: {_reason(exc)}"


def _dontwait(flags: int) -> bool:
    # ``flags & socket.MSG_DONTWAIT`` goes through enum.Flag.__and__ (1.7 us a call, as
    # much as OpenSSL's own work on a small record): callers pass the member itself
    return flags is _DONTWAIT or (flags != 0 and int(flags) & _DONTWAIT_BIT != 0)


class TlsSocket:
    """A connected, handshaken ``SSLSocket`` with the plain-socket API the transport uses:
    ``recv_into``/``send`` honour ``MSG_DONTWAIT`` (``BlockingIOError``), ``sendall`` waits at
    most ``write_timeout`` without progress (``TimeoutError``, as SO_SNDTIMEO would),
    ``shutdown`` acts on the TCP socket (wakes blocked readers and writers) and every SSL call
    is serialised by one lock (see the module notes)."""

    def __init__(self, ssock: ssl.SSLSocket, write_timeout: float) -> None:
        ssock.setblocking(False)
        self._ssl = ssock
        self._fd = ssock.fileno()
        self._lock = threading.Lock()
        self._write_timeout = write_timeout
        self._eof = False

    # -- what callers ask of a socket -----------------------------------------------------

    def fileno(self) -> int:
        return self._ssl.fileno()

    def getpeername(self) -> Any:
        return self._ssl.getpeername()

    def getsockname(self) -> Any:
        return self._ssl.getsockname()

    def getpeercert(self) -> Any:
        return self._ssl.getpeercert()

    def version(self) -> str | None:
        return self._ssl.version()

    def setsockopt(self, *args: Any) -> None:
        socket.socket.setsockopt(self._ssl, *args)

    def settimeout(self, value: float | None) -> None:
        """Ignored: the socket stays non-blocking (writes are bounded by write_timeout)."""

    def gettimeout(self) -> float | None:
        return self._write_timeout

    def pending(self) -> int:
        """Decrypted bytes held by the SSL object (invisible to epoll)."""
        with self._lock:
            return self._ssl.pending() if not self._eof else 0

    def shutdown(self, how: int) -> None:
        # socket.socket's, not SSLSocket's (which drops the SSL object under other threads)
        socket.socket.shutdown(self._ssl, how)

    def close(self) -> None:
        self._ssl.close()

    # -- reading --------------------------------------------------------------------------

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        nbytes = min(nbytes or len(view), len(view))
        while True:
            got, want = self._read_some(view, nbytes)
            if got is not None:
                return got
            if _dontwait(flags):
                raise BlockingIOError("TLS: no complete record yet")
            _wait(self._fd, want, None)  # a shutdown (close) wakes it

    def _read_some(self, view: memoryview, nbytes: int) -> tuple[int | None, int]:
        """Drain the SSL object into ``view[:nbytes]``: (bytes, 0), (0, 0) at EOF, or
        (None, poll events to wait for) when nothing could be read."""
        got = 0
        with self._lock:
            if self._eof:
                return 0, 0
            while got < nbytes:
                try:
                    n = self._ssl.recv_into(view[got:nbytes], nbytes - got)
                except ssl.SSLWantReadError:
                    want = select.POLLIN
                    break
                except ssl.SSLWantWriteError:
                    want = select.POLLOUT
                    break
                except ssl.SSLError as exc:
                    raise ConnectionError(describe_refusal(exc)) from None
                if not n:
                    self._eof = True  # the other end closed (a bare TCP FIN counts)
                    break
                got += n
            else:
                return got, 0
        if got or self._eof:
            return got, 0
        return None, want

    # -- writing --------------------------------------------------------------------------

    def send(self, data: Any, flags: int = 0) -> int:
        """All of ``data`` or, with MSG_DONTWAIT, ``BlockingIOError`` (retry with a buffer
        starting with the same bytes: OpenSSL may have taken part of it)."""
        if _dontwait(flags):
            with self._lock:
                try:
                    return self._ssl.send(data)
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    raise BlockingIOError("TLS: the socket is full") from None
                except ssl.SSLError as exc:
                    raise ConnectionError(describe_refusal(exc)) from None
        self.sendall(data)
        return len(data)

    def sendall(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        while view:
            with self._lock:
                try:
                    n = self._ssl.send(view)
                    want = 0
                except ssl.SSLWantWriteError:
                    n, want = 0, select.POLLOUT
                except ssl.SSLWantReadError:
                    n, want = 0, select.POLLIN
                except ssl.SSLError as exc:
                    raise ConnectionError(describe_refusal(exc)) from None
            if n:
                view = view[n:]
            elif not _wait(self._fd, want, self._write_timeout):
                raise TimeoutError(f"TLS write made no progress for {self._write_timeout}s")


__all__ = [
    "KTLS_AVAILABLE",
    "PLAINTEXT_WAIT",
    "NodeTls",
    "TlsError",
    "TlsFiles",
    "TlsSocket",
    "accept_tls",
    "client_context",
    "connect_tls",
    "server_context",
    "wrap_server",
]
