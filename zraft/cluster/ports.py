"""Free loopback ports that stay free until the node binds them.

Binding port 0 and releasing it (the usual trick) picks a port from the kernel's ephemeral
range, the same range every outgoing connection takes its local port from: between the
choice and the node's bind, any client connection on the machine may take the port, and
the node then exits 2 ("Address already in use"). Two rules close that race:

- ports are chosen below (or above) the ephemeral range, where the kernel never puts an
  outgoing connection, and checked bindable;
- each chosen port is reserved across processes by an exclusive ``flock`` on a file named
  after it, held by this process (the last ``MAX_RESERVED`` ports), so two processes picking
  ports at once (pytest-xdist workers, two `zraft cluster up`) never pick the same one,
  including a port whose node is down between a kill and its restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import tempfile
from collections import OrderedDict
from pathlib import Path

LOWEST_PORT = 10000  # below it: well-known and registered services
MAX_RESERVED = 1024  # reservations held by this process (oldest released first)
_DEFAULT_EPHEMERAL = (32768, 60999)
_reserved: OrderedDict[int, int] = OrderedDict()  # port -> fd holding its lock


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux; a default elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL


def candidate_ranges() -> list[range]:
    """Port ranges outside the ephemeral range (empty if it covers everything usable)."""
    low, high = ephemeral_range()
    ranges = [range(LOWEST_PORT, low), range(high + 1, 65536)]
    return [r for r in ranges if len(r) >= 100]


def _lock_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"zraft-ports-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _reserve(port: int) -> bool:
    """Take the cross-process reservation of ``port``; False if another process holds it."""
    if port in _reserved:
        return False
    fd = os.open(_lock_dir() / str(port), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _reserved[port] = fd
    while len(_reserved) > MAX_RESERVED:
        _release(next(iter(_reserved)))
    return True


def _release(port: int) -> None:
    fd = _reserved.pop(port, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing the last descriptor drops the flock


def _bindable(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` now (with SO_REUSEADDR, as nodes bind)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _kernel_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that is free now, outside the ephemeral range and reserved by this
    process (see the module's doc). Falls back to a kernel-chosen port only when no range
    outside the ephemeral one exists."""
    ranges = candidate_ranges()
    if not ranges:
        return _kernel_port(host)
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.choice(rng.choice(ranges))
        if not _reserve(port):
            continue
        if _bindable(host, port):
            return port
        _release(port)
    raise OSError(f"no free port on {host} outside the ephemeral range after 1000 tries")
