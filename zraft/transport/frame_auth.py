"""Frame authentication after the cookie handshake (wire protocol version 2).

The handshake proves both ends know the cookie, but on its own it leaves every later frame
open to an on-path relay: forward the handshake untouched, then rewrite, inject, drop,
reorder, replay or reflect frames. So after the handshake, in both directions, frames travel
inside sealed records that carry a sequence number and a MAC under a key only the two ends
of THIS connection hold:

    record = [length: 4][frames][seq: 8, big-endian][tag: 16]   length = len(frames) + 24
    frames = one or more whole frames as before ([length: 4][msgpack body]), back to back
    tag = BLAKE2b-128(key_s, seq || frames)              if len(frames) <  1024
    tag = HMAC-SHA256(key_l, seq || frames)[:16]        if len(frames) >= 1024

A writer seals what it writes at once (a batch of requests, a batch of replies) as one
record of at most ``RECORD_BYTES`` (64 KiB; a larger frame goes alone), so a pipelined batch
costs one MAC, not one per request.

- Keys: one per direction, derived from the handshake's ``session_key`` (cookie + both
  nonces, so fresh per connection): ``HMAC-SHA256(session_key, label)`` with the labels
  ``zraft-frames initiator->acceptor`` / ``zraft-frames acceptor->initiator``. A frame sent
  back to its sender (reflected) is checked under the other key and fails; a frame copied
  from another connection fails under this one's keys.
- Sequence numbers: per direction, from 0, +1 per record, checked to be exactly the next.
  The MAC is checked first, so a bad tag means the frame was altered, truncated, injected or
  reflected; a good tag with the wrong number means a genuine frame was replayed, dropped or
  reordered.
- Any failure raises ``FrameAuthError``: the connection is closed (one log line, counted as
  ``closed_bad_mac``); nothing of the record is decoded, and no other connection is touched.
  An authenticated record that does not hold whole frames is a ``DecodeError`` (malformed).
- Frames are sealed when they are written to the socket (under the writer's lock), never when
  queued: a queue that drops its oldest frame must not leave a gap in the numbers, and a
  frame queued on a peer link may go out on the link's next connection.
- On or off per connection (``for_connection(..., enabled=...)``), decided after the
  handshake: on in plaintext, off under TLS (its records are authenticated and ordered
  already; both ends know they speak TLS, so they agree): the node's accept side
  (tcp.py), peer links, the blocking and asyncio clients. The snapshot stream keeps its
  few sealed control frames under TLS too.

``key_s`` / ``key_l`` are ``HMAC-SHA256(direction key, "blake2b" / "hmac-sha256")``. Both MACs
run in C from a keyed template that is ``copy()``-ed per frame (no key set-up per call):
BLAKE2b is fastest on small bodies (client requests and replies), SHA-256 (with the CPU's SHA
extensions) on large ones (AppendEntries batches). It is not confidential: without TLS,
anyone on the path reads everything.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable
from typing import Final

from zraft.transport.errors import DecodeError, TransportError
from zraft.transport.framing import HEADER, HEADER_SIZE

TAG_SIZE: Final = 16
SEQ: Final = struct.Struct(">Q")
TRAILER_SIZE: Final = SEQ.size + TAG_SIZE  # bytes added to every record
RECORD_BYTES: Final = 64 * 1024  # frames sealed together in one record, at most (or one)
RECORD_OVERHEAD: Final = HEADER_SIZE + TRAILER_SIZE  # a record of one frame, beyond its body
SEQ_SIZE: Final = SEQ.size
_SMALL: Final = 1024  # bodies below this are MAC'd with BLAKE2b, from it with HMAC-SHA256
_pack_seq = SEQ.pack
_unpack_seq = SEQ.unpack_from
_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from
_INITIATOR_TO_ACCEPTOR: Final = b"zraft-frames initiator->acceptor"
_ACCEPTOR_TO_INITIATOR: Final = b"zraft-frames acceptor->initiator"


class FrameAuthError(TransportError):
    """A frame failed authentication: altered, injected, truncated, reflected, replayed,
    dropped or reordered. The connection it came on is closed."""


def direction_keys(session_key: bytes) -> tuple[bytes, bytes]:
    """(initiator->acceptor, acceptor->initiator) keys of one connection."""
    if len(session_key) < 16:
        raise ValueError("a session key of at least 16 bytes is needed")
    return (hmac.digest(session_key, _INITIATOR_TO_ACCEPTOR, "sha256"),
            hmac.digest(session_key, _ACCEPTOR_TO_INITIATOR, "sha256"))


class _Mac:
    """One direction's MAC: keyed BLAKE2b-128 for bodies under ``_SMALL`` bytes (0.6 us,
    no key set-up per call), HMAC-SHA256 truncated to 128 bits above it (SHA extensions
    make it twice BLAKE2b's speed on large bodies). Each has its own key derived from the
    direction key; the choice is a function of the body length, so both ends agree."""

    __slots__ = ("_large", "small_copy")

    def __init__(self, key: bytes) -> None:
        small = hashlib.blake2b(key=hmac.digest(key, b"blake2b", "sha256"),
                                digest_size=TAG_SIZE)
        # the bound copy of the keyed template: the small-record paths call it directly
        self.small_copy = small.copy
        self._large = hmac.new(hmac.digest(key, b"hmac-sha256", "sha256"), digestmod="sha256")

    def tag(self, seq: bytes, body: bytes | bytearray | memoryview) -> bytes:
        if len(body) < _SMALL:
            h = self.small_copy()
            h.update(seq)
            h.update(body)
            return h.digest()
        m = self._large.copy()
        m.update(seq)
        m.update(body)
        return m.digest()[:TAG_SIZE]


class FrameAuth:
    """Both directions of one connection: ``seal`` what we send, ``open`` what we receive.

    ``seal`` must be called in the order frames go on the wire (the caller holds its write
    lock); ``open`` in the order they arrived (one reader per connection)."""

    __slots__ = ("_recv", "_send", "received", "sent")

    def __init__(self, send_key: bytes, recv_key: bytes) -> None:
        if send_key == recv_key:
            raise ValueError("the two directions need distinct keys (reflection)")
        self._send = _Mac(send_key)
        self._recv = _Mac(recv_key)
        self.sent = 0  # the next sequence number we send
        self.received = 0  # the next sequence number we accept

    @classmethod
    def for_connection(cls, session_key: bytes, initiator: bool) -> FrameAuth:
        """The authenticator of the end that dialed (``initiator``) or accepted."""
        out_key, in_key = direction_keys(session_key)
        return cls(out_key, in_key) if initiator else cls(in_key, out_key)

    def seal(self, frames: bytes | bytearray | memoryview) -> bytes:
        """One or more whole length-prefixed frames (at most ``RECORD_BYTES`` together, or
        one larger frame alone) -> one sealed record: the frames as they were, inside."""
        n = len(frames)
        seq = _pack_seq(self.sent)
        self.sent += 1
        if n < _SMALL:  # a request or a reply alone: W3 seals one per operation, keep it lean
            h = self._send.small_copy()
            h.update(seq)
            h.update(frames)
            tag = h.digest()
        else:
            tag = self._send.tag(seq, frames)
        return b"".join((_pack_header(n + TRAILER_SIZE), frames, seq, tag))  # one copy

    def seal_many(self, frames: Iterable[bytes]) -> list[bytes]:
        """Each frame as a record of its own."""
        return [self.seal(f) for f in frames]

    def seal_frames(self, data: bytes) -> bytes:
        """``data`` is whole length-prefixed frames back to back (a batch of replies, a
        writer's batch): one record per ``RECORD_BYTES`` of them (a larger frame alone),
        so a batch of many requests costs about one MAC. ``ValueError`` if a frame is cut."""
        if len(data) <= RECORD_BYTES:
            return self.seal(data)  # the common case
        view = memoryview(data)
        out: list[bytes] = []
        pos, start, n = 0, 0, len(data)
        while pos < n:
            (length,) = HEADER.unpack_from(view, pos)
            end = pos + HEADER_SIZE + length
            if length == 0 or end > n:
                raise ValueError(f"not whole frames: {n - pos} bytes left at offset {pos}")
            if end - start > RECORD_BYTES and pos > start:
                out.append(self.seal(view[start:pos]))
                start = pos
            pos = end
        out.append(self.seal(view[start:n]))
        return b"".join(out)

    def _open_record(self, body: bytes | bytearray | memoryview) -> bytes | memoryview:
        n = len(body) - TRAILER_SIZE
        if n <= 0:
            raise self._failed(f"{len(body)} bytes, too short for a sequence number and a MAC")
        m = n + SEQ.size
        if n < _SMALL and type(body) is bytes:  # slicing small bytes beats memoryviews
            data: bytes | memoryview = body[:n]
            seq_bytes, tag = body[n:m], body[m:]
        else:
            view = memoryview(body)
            data, seq_bytes, tag = view[:n], bytes(view[n:m]), view[m:]
        if not hmac.compare_digest(self._recv.tag(seq_bytes, data), tag):
            raise self._failed("bad MAC (altered, truncated, injected or reflected)")
        (seq,) = SEQ.unpack(seq_bytes)
        if seq != self.received:
            raise self._failed(f"sequence number {seq} (a genuine frame replayed, dropped or "
                               "reordered)")
        self.received += 1
        return data

    def open_many(self, records: list[bytes]) -> list[bytes]:
        """Received records (frame bodies without their length header) -> the bodies of
        the frames inside, in order; ``FrameAuthError`` if one fails authentication,
        ``DecodeError`` if an authenticated record does not hold whole frames."""
        if len(records) == 1:  # the common case: one small record of one frame
            record = records[0]
            n = len(record) - TRAILER_SIZE
            if HEADER_SIZE < n < _SMALL and type(record) is bytes:
                m = n + SEQ_SIZE
                seq = record[n:m]
                h = self._recv.small_copy()
                h.update(seq)
                h.update(memoryview(record)[:n])
                if (hmac.compare_digest(h.digest(), record[m:])
                        and _unpack_seq(seq)[0] == self.received
                        and _unpack_header(record)[0] + HEADER_SIZE == n):
                    self.received += 1
                    return [record[HEADER_SIZE:n]]
                # else: the general path below says what is wrong (and raises)
        out: list[bytes] = []
        unpack = HEADER.unpack_from
        for record in records:
            data = self._open_record(record)
            if type(data) is not bytes:
                data = bytes(data)  # one copy; slicing bytes beats slicing a memoryview
            size = len(data)
            length = unpack(data)[0] if size >= HEADER_SIZE else 0
            if length and length + HEADER_SIZE == size:  # one frame: the common case
                out.append(data[HEADER_SIZE:])
                continue
            pos = 0
            while pos < size:
                length = unpack(data, pos)[0] if size - pos >= HEADER_SIZE else 0
                end = pos + HEADER_SIZE + length
                if length == 0 or end > size:
                    raise DecodeError(f"record {self.received - 1} does not hold whole frames")
                out.append(data[pos + HEADER_SIZE:end])
                pos = end
        return out

    def open(self, record: bytes | bytearray | memoryview) -> bytes:
        """A record that must hold exactly one frame -> that frame's body."""
        bodies = self.open_many([record])
        if len(bodies) != 1:
            raise DecodeError(f"record {self.received - 1} holds {len(bodies)} frames, not 1")
        return bodies[0]

    def _failed(self, why: str) -> FrameAuthError:
        return FrameAuthError(f"frame {self.received} failed authentication: {why}")



def seal_stream(auth: FrameAuth | None, data: bytes) -> bytes:
    """Seal every complete frame in ``data`` (length-prefixed frames back to back); bytes
    that do not make a complete frame (a bad length, a cut tail) pass through as they are.
    For clients that write raw frames (tests, fuzzers): a hostile client holding the cookie
    can seal anything, so fuzzing must reach the decoder behind the MAC."""
    if auth is None:
        return data
    out: list[bytes] = []
    pos, n = 0, len(data)
    while n - pos >= HEADER_SIZE:
        (length,) = HEADER.unpack_from(data, pos)
        end = pos + HEADER_SIZE + length
        if length == 0 or end > n:
            break
        out.append(auth.seal(data[pos:end]))
        pos = end
    out.append(data[pos:])
    return b"".join(out)


def for_connection(session_key: bytes, initiator: bool, enabled: bool = True) -> FrameAuth | None:
    """What a connection authenticates its frames with after the handshake, or None when
    the caller turned the MAC off (e.g. under TLS; both ends must agree)."""
    return FrameAuth.for_connection(session_key, initiator) if enabled else None


def decoder_limit(max_frame_size: int, auth: FrameAuth | None) -> int:
    """The frame length a decoder accepts so a body of ``max_frame_size`` still fits."""
    if auth is None:
        return max_frame_size
    return min(max_frame_size + RECORD_OVERHEAD, 0xFFFFFFFF)


__all__ = ["RECORD_BYTES", "RECORD_OVERHEAD", "SEQ", "TAG_SIZE", "TRAILER_SIZE", "FrameAuth",
           "FrameAuthError", "decoder_limit", "direction_keys", "for_connection", "seal_stream"]
