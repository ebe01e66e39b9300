"""Exceptions raised by the transport. All derive from ``TransportError``.

A ``DecodeError`` (or its ``FrameTooLarge``) on a connection means that connection is closed;
it never affects other connections.
"""

from __future__ import annotations


class TransportError(Exception):
    """Base class of every transport failure."""


class DecodeError(TransportError, ValueError):
    """Bytes that are not a well-formed frame: bad msgpack, unknown kind/code, wrong field
    type or range. The peer that sent them is broken or hostile."""


class FrameTooLarge(DecodeError):
    """A frame header announced a length above the configured maximum (or zero)."""


class BufferLimitExceeded(DecodeError):
    """A connection's partial frame would take the node-wide partial-frame memory past its
    cap (``max_buffered_bytes``): the connection is closed, the frame was not malformed."""


class HandshakeError(TransportError):
    """Cookie authentication failed: wrong cookie, wrong version, replay, timeout, garbage."""


class SnapshotTransferError(TransportError):
    """A snapshot transfer failed; the receiver left nothing behind and it can be retried."""
