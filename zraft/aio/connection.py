"""asyncio connections to nodes: one authenticated, pipelined connection per node address.

The same contract as ``zraft.client.connection`` (whose pool logic, push routing and frame
helpers it shares), built on asyncio streams instead of threads:

- ``request`` never blocks and never awaits: it packs ``[2, req_id, op, args]``, records
  the callback by ``req_id`` and queues the frame. Frames queued in one pass of the event
  loop go out in one write (``call_soon`` flush), so a burst of calls costs one send.
  Requests never reorder (session writes rely on it).
- A connection is a task: open (bounded by ``connect_timeout``), the cookie handshake (the
  pure steps of ``zraft.transport.handshake``, same deadline), then it reads replies and
  completes each request by calling its callback ``(status, payload)`` on the loop.
  Callbacks must be quick and never block.
- A request whose frame would pass the frame limit is never sent: its callback gets
  ``("too_large", ...)`` at once.
- If the connection cannot be made or breaks, every request still waiting gets
  ``("noproc", ...)`` exactly once and the connection is dead; the pool makes a new one on
  the next request. ``cancel(req_id)`` forgets a request: its reply is dropped, a request
  not yet written (still connecting, or queued in this pass of the loop) is never sent,
  nothing else is touched (the connection and the other calls go on).
- A node that stops reading: once more than ``HIGH_WATER`` bytes wait to be sent, the
  connection watches them drain; ``send_timeout`` without any progress and it dies (the
  blocking client's send timeout).
- Whatever a node sends, a bad frame (or a bug it triggers while read) fails this
  connection only: its calls get ``noproc``, a new connection is made on the next call.
- A pool belongs to the event loop it was made on; using it from another loop or thread
  raises ``RuntimeError`` (asyncio streams are bound to one loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
from typing import Any

from zraft.client.connection import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_SEND_TIMEOUT,
    PUSH_KIND,
    REPLY_KIND,
    REQUEST_KIND,
    PoolBase,
    PushHandler,
    ReplyCallback,
    flat_push,
    unreachable,
)
from zraft.saferepr import safe_repr
from zraft.transport.codec import pack, unpack
from zraft.transport.errors import HandshakeError, TransportError
from zraft.transport.frame_auth import FrameAuth, decoder_limit, for_connection
from zraft.transport.framing import DEFAULT_MAX_FRAME_SIZE as MAX_FRAME_SIZE
from zraft.transport.framing import HEADER, HEADER_SIZE, FrameDecoder
from zraft.transport.handshake import (
    Authenticated,
    check_message_length,
    client_answer,
    client_failure,
    client_finish,
    decode_message,
    encode_message,
)
from zraft.transport.tls import bounded

log = logging.getLogger("zraft.aio.connection")

READ_SIZE = 256 * 1024
HIGH_WATER = 4 * 1024 * 1024  # bytes waiting to be sent before we watch the node drain them


async def _read_message(reader: asyncio.StreamReader) -> list[Any]:
    (length,) = HEADER.unpack(await reader.readexactly(HEADER_SIZE))
    return decode_message(await reader.readexactly(check_message_length(length)))


async def client_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    cookie: bytes,
    client_id: str,
    timeout: float,
    role: str = "client",
) -> Authenticated:
    """The client side of the cookie handshake over asyncio streams, within ``timeout``.
    Any failure is one logged ``HandshakeError`` (as ``handshake.client_handshake``)."""
    peer = _peername(writer)
    try:
        async with asyncio.timeout(timeout):
            auth, proof = client_answer(await _read_message(reader), cookie, client_id, role)
            writer.write(encode_message(auth))
            await writer.drain()
            return client_finish(await _read_message(reader), cookie, proof)
    except TimeoutError:
        raise client_failure(HandshakeError("handshake timed out"), peer) from None
    except asyncio.IncompleteReadError:
        raise client_failure(HandshakeError("connection closed during handshake"),
                             peer) from None
    except Exception as exc:
        failure = client_failure(exc, peer)
        if failure is exc:
            raise
        raise failure from None


def _peername(writer: asyncio.StreamWriter) -> str:
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return f"{name[0]}:{name[1]}"
    return safe_repr(name) if name else "?"


class Connection:
    """One stream to one node, shared by every request to peers on that node."""

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
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, ReplyCallback] = {}
        self._ids = itertools.count(1)
        self._outbox: dict[int, bytes] = {}  # req_id -> frame not written yet, in order
        self._flush_scheduled = False
        self._writer: asyncio.StreamWriter | None = None
        self._auth: FrameAuth | None = None  # set after the handshake, before _writer
        self._draining: asyncio.Task[None] | None = None
        self._dead: str | None = None
        self.requests_sent = 0
        self._task = self._loop.create_task(self._run(), name=f"zraft-aio-conn-{address}")

    @property
    def alive(self) -> bool:
        return self._dead is None

    def in_flight(self) -> int:
        return len(self._pending)

    def request(self, op: str, args: Any, callback: ReplyCallback) -> int:
        """Queue a request; ``callback`` gets exactly one ``(status, payload)`` unless
        cancelled. Returns the req_id (for ``cancel``)."""
        if self._dead is not None:
            callback("noproc", unreachable(self._dead))
            return 0
        req_id = next(self._ids)
        body = pack([REQUEST_KIND, req_id, op, args])
        if len(body) > MAX_FRAME_SIZE:  # the node would drop the connection
            callback("too_large", {"message": f"{op}: the request is {len(body)} bytes, above "
                                              f"the frame limit {MAX_FRAME_SIZE}: not sent",
                                   "size": len(body), "limit": MAX_FRAME_SIZE})
            return 0
        self._pending[req_id] = callback
        self._outbox[req_id] = HEADER.pack(len(body)) + body
        if not self._flush_scheduled and self._writer is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return req_id

    def cancel(self, req_id: int) -> None:
        self._pending.pop(req_id, None)
        self._outbox.pop(req_id, None)  # not written yet: never will be

    def close(self, reason: str = "closed by the client") -> None:
        self._fail(reason)

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    # -- the connection's task ------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        writer = self._writer
        if writer is None or not self._outbox or self._dead is not None:
            return
        frames = self._outbox.values()
        auth = self._auth
        # sealed here, in the order they are written (one loop: nothing interleaves)
        batch = b"".join(frames)
        if auth is not None:
            batch = auth.seal_frames(batch)  # one MAC per 64 KiB of requests
        self.requests_sent += len(self._outbox)
        self._outbox.clear()
        try:
            writer.write(batch)
        except (OSError, RuntimeError) as exc:
            self._fail(f"send to {self.address} failed: {exc}")
            return
        if (self._draining is None and writer.transport.get_write_buffer_size() > HIGH_WATER):
            self._draining = self._loop.create_task(self._drain(writer))

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        waiting = writer.transport.get_write_buffer_size()
        try:
            while True:
                try:
                    async with asyncio.timeout(self._send_timeout):
                        await writer.drain()
                    return
                except TimeoutError:
                    now = writer.transport.get_write_buffer_size()
                    if now >= waiting:
                        self._fail(f"node {self.address} read nothing for "
                                   f"{self._send_timeout}s")
                        return
                    waiting = now  # slow but reading: keep waiting
        except (OSError, RuntimeError) as exc:
            self._fail(f"send to {self.address} failed: {exc}")
        finally:
            self._draining = None

    def _tls_options(self, host: str) -> dict[str, Any]:
        """TLS for asyncio's streams: the node's certificate must name ``host``."""
        if self._tls is None:
            return {}
        return {"ssl": self._tls, "server_hostname": host.strip("[]"),
                "ssl_handshake_timeout": self._connect_timeout}

    async def _run(self) -> None:
        reason = f"node {self.address} closed the connection"
        writer: asyncio.StreamWriter | None = None
        try:
            host, _, port = self.address.rpartition(":")
            try:
                async with asyncio.timeout(self._connect_timeout):
                    reader, writer = await asyncio.open_connection(
                        host.strip("[]"), int(port), limit=READ_SIZE, **self._tls_options(host))
            except ssl.SSLError as exc:  # the node's certificate, or a plaintext node
                reason = (f"cannot reach node {self.address}: TLS handshake failed: "
                          f"{bounded(str(getattr(exc, 'verify_message', None) or exc))}")
                return
            except (OSError, TimeoutError, ValueError) as exc:
                reason = f"cannot reach node {self.address}: {exc or type(exc).__name__}"
                return
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                hello = await client_handshake(reader, writer, self._cookie, self._client_id,
                                               self._connect_timeout)
            except TransportError as exc:
                reason = f"cannot reach node {self.address}: {exc}"
                return
            if self._dead is not None:
                return
            # no frame MAC inside TLS (its records are authenticated; the node agrees)
            auth = self._auth = for_connection(hello.session_key, initiator=True,
                                               enabled=self._tls is None)
            self._writer = writer
            self._flush()
            decoder = FrameDecoder(decoder_limit(MAX_FRAME_SIZE, auth))
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    return
                bodies = decoder.feed(data)
                for body in bodies if auth is None else auth.open_many(bodies):
                    self._dispatch(unpack(body))
        except (OSError, TransportError, ValueError) as exc:
            reason = f"connection to {self.address} failed: {exc}"
        except Exception as exc:  # a bug met while reading: this connection only
            log.exception("reading from %s failed", self.address)
            reason = f"connection to {self.address} failed: {type(exc).__name__}"
        finally:
            self._fail(reason)
            if writer is not None:
                writer.close()

    def _dispatch(self, frame: Any) -> None:
        if type(frame) is not list or not frame:
            raise ValueError(f"malformed frame from {self.address}")
        kind = frame[0]
        if kind == REPLY_KIND and len(frame) == 4:
            callback = self._pending.pop(frame[1], None)
            if callback is not None:
                _safe_call(callback, str(frame[2]), frame[3])
        elif kind == PUSH_KIND:
            try:
                self._on_push(flat_push(frame))
            except Exception:
                log.exception("push handler failed")
        else:
            raise ValueError(f"unexpected frame kind {safe_repr(kind, 20)} from {self.address}")

    def _fail(self, reason: str) -> None:
        if self._dead is not None:
            return
        self._dead = reason
        pending = list(self._pending.values())
        self._pending.clear()
        self._outbox.clear()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if not self._task.done() and asyncio.current_task() is not self._task:
            self._task.cancel()
        log.debug("connection to %s is down: %s", self.address, reason)
        for callback in pending:
            _safe_call(callback, "noproc", unreachable(reason))


def _safe_call(callback: ReplyCallback, status: str, payload: Any) -> None:
    try:
        callback(status, payload)
    except Exception:
        log.exception("reply callback failed")


class ConnectionPool(PoolBase):
    """Connections by node address for one event loop, and push handlers by session id.

    Made inside a running loop (or given ``loop``); every request must come from that
    loop's thread. ``close()`` closes every connection at once; ``await wait_closed()``
    waits for their tasks to end."""

    def __init__(
        self,
        cookie: str | bytes,
        client_id: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(cookie, client_id, connect_timeout, tls=tls)
        self.loop = loop or asyncio.get_running_loop()
        self._all: list[Connection] = []

    def _new_connection(self, address: str) -> Connection:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self.loop:
            raise RuntimeError("this zraft.aio pool belongs to another event loop "
                               "(use it from the loop that made it)")
        self._all = [c for c in self._all if c.alive]
        conn = Connection(address, self.cookie, self.client_id, self._dispatch_push,
                          self.connect_timeout, tls=self.tls)
        self._all.append(conn)
        return conn

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_closed(self) -> None:
        conns, self._all = self._all, []
        for conn in conns:
            await conn.wait_closed()
