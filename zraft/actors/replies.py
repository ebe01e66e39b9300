"""Encoding a reply for its client: a reply never breaks the connection it goes on.

Rules:
- A reply whose frame would pass the frame limit (a read answering more than a frame
  holds: ``["list", ""]`` over a large state) is replaced by ``too_large`` for that request
  only: sent as is, the client would close the connection and every other request on it
  would fail with it.
- A result the codec cannot encode (a backend returning a set, an int above 64 bits, a
  value nested past msgpack's limit) is replaced by ``backend_error`` for that request only.
"""

from __future__ import annotations

import logging

from zraft.transport.codec import ClientReply, encode_frame
from zraft.transport.framing import DEFAULT_MAX_FRAME_SIZE, HEADER

log = logging.getLogger(__name__)

FRAME_LIMIT = DEFAULT_MAX_FRAME_SIZE  # a frame's body, as every node and client reads it


def encode_reply(reply: ClientReply, limit: int | None = None) -> bytes:
    """The length-prefixed frame of ``reply``, or of the error that replaces it."""
    return encode_replies([reply], limit)


def encode_replies(replies: list[ClientReply], limit: int | None = None) -> bytes:
    """Several replies for one connection, as one blob of frames (each checked alone)."""
    if limit is None:
        limit = FRAME_LIMIT
    out = []
    for reply in replies:
        try:
            data = encode_frame(reply)
        except Exception as exc:  # msgpack: TypeError, ValueError, OverflowError...
            data = _unencodable(reply, exc)
        if len(data) > limit + _HEADER:
            data = _too_large(reply, len(data) - _HEADER, limit)
        out.append(data)
    return out[0] if len(out) == 1 else b"".join(out)


_HEADER = HEADER.size


def _unencodable(reply: ClientReply, exc: Exception) -> bytes:
    log.warning("reply %d (%s) cannot be encoded: %s", reply.req_id, reply.status,
                type(exc).__name__)
    return encode_frame(ClientReply(reply.req_id, "backend_error", {
        "message": f"the result cannot be encoded ({type(exc).__name__})"}))


def _too_large(reply: ClientReply, size: int, limit: int) -> bytes:
    log.warning("reply %d (%s) of %d bytes is above the frame limit %d: too_large sent",
                reply.req_id, reply.status, size, limit)
    return encode_frame(ClientReply(reply.req_id, "too_large", {
        "message": f"the reply is {size} bytes, above the frame limit {limit}",
        "size": size, "limit": limit}))
