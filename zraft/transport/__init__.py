"""zraft's wire: msgpack frames over TCP with cookie authentication, and snapshot streaming.

Modules: ``codec`` (frames <-> objects, strict decoder), ``framing`` (length prefix),
``handshake`` (cookie HMAC challenge-response), ``tcp`` (the node's server and outbound
connections), ``snapshot_stream`` (snapshot directories over sendfile), ``sentinels``
(``NOT_FOUND``).
"""

from zraft.transport.errors import (
    DecodeError,
    FrameTooLarge,
    HandshakeError,
    SnapshotTransferError,
    TransportError,
)
from zraft.transport.sentinels import NOT_FOUND

__all__ = [
    "NOT_FOUND",
    "DecodeError",
    "FrameTooLarge",
    "HandshakeError",
    "SnapshotTransferError",
    "TransportError",
]
