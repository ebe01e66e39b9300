"""How many connections a node may hold, and how it waits when the system runs out.

File descriptors (the rule, also in README "Running nodes"):
- at start a node raises its soft ``RLIMIT_NOFILE`` to the hard limit (at most 2**20);
- it keeps ``reserve = max(64, limit // 4)`` descriptors for everything that is not an
  accepted connection: log segments, metadata and snapshot files of every peer (also peers
  created later), outbound links to peer nodes, snapshot transfer sockets, log files;
- what is left, ``budget = limit - reserve - (descriptors already open at start)``, is
  shared by accepted sockets: pending (unauthenticated) handshakes get
  ``max_handshaking = min(1024, budget // 4)`` (at least 4; one thread each), and a new
  connection beyond that evicts the OLDEST pending handshake, so silent connections can
  never hold a real client off, nor starve storage of descriptors; authenticated client
  connections get ``max_connections = budget - max_handshaking`` (at least 8), a client
  over it is closed right after its handshake (counted ``refused_over_limit``). Peer
  nodes are always admitted: they are few, and covered by the reserve, so clients can
  never lock the cluster's own traffic out.

Accept failures for want of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) back off
exponentially from 10 ms to 1 s, logged once per streak: never a spin, never fatal.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
from typing import Final, NamedTuple

from zraft.transport.connection import TransportConfig

log = logging.getLogger("zraft.transport.tcp")

FD_CEILING: Final = 1 << 20  # the kernel's default nr_open
RESERVE_MIN: Final = 64
HANDSHAKES_MAX: Final = 1024
RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ConnectionCaps(NamedTuple):
    fd_limit: int
    reserve: int
    max_connections: int
    max_handshaking: int


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (capped); return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = FD_CEILING if hard == resource.RLIM_INFINITY else min(hard, FD_CEILING)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return FD_CEILING if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open file limit from %d to %d: %s", soft, target, exc)
        return soft
    return target


def open_fds() -> int:
    """Descriptors this process has open now (0 where /proc is not available)."""
    try:
        return max(0, len(os.listdir("/proc/self/fd")) - 1)  # minus listdir's own
    except OSError:
        return 0


def connection_caps(fd_limit: int, in_use: int = 0) -> ConnectionCaps:
    """The caps of the module rules for a soft fd limit and the descriptors already open."""
    reserve = max(RESERVE_MIN, fd_limit // 4)
    budget = max(12, fd_limit - reserve - in_use)
    max_handshaking = max(4, min(HANDSHAKES_MAX, budget // 4))
    max_connections = max(8, budget - max_handshaking)
    return ConnectionCaps(fd_limit, reserve, max_connections, max_handshaking)


def node_transport_config(max_buffered_bytes: int) -> TransportConfig:
    """A node's transport settings: raise the fd limit, size the caps from it (logged)."""
    caps = connection_caps(raise_fd_limit(), open_fds())
    log.info("open file limit %d: %d kept for storage and links, up to %d connections "
             "(%d pending handshakes)", caps.fd_limit, caps.reserve, caps.max_connections,
             caps.max_handshaking)
    return TransportConfig(max_connections=caps.max_connections,
                           max_handshaking=caps.max_handshaking,
                           max_buffered_bytes=max_buffered_bytes)


class AcceptBackoff:
    """Waits between failed accepts: ``initial`` doubling up to ``maximum``; the first
    failure of a streak is logged, and its end."""

    def __init__(self, initial: float = 0.01, maximum: float = 1.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.streak = 0

    def failed(self, exc: OSError) -> float:
        """The delay before the next accept."""
        self.streak += 1
        if self.streak == 1:
            log.warning("accept failed (%s): backing off until it works again", exc)
        return min(self.maximum, self.initial * 2 ** min(self.streak - 1, 30))

    def succeeded(self) -> None:
        if self.streak:
            log.info("accept works again after %d failed attempts", self.streak)
            self.streak = 0


__all__ = [
    "RESOURCE_ERRNOS",
    "AcceptBackoff",
    "ConnectionCaps",
    "connection_caps",
    "node_transport_config",
    "open_fds",
    "raise_fd_limit",
]
