"""Host names the controller of a test resolves without touching the machine's /etc/hosts.

Nodes in network namespaces resolve each other's names through per-namespace hosts files
(``/etc/netns/<ns>/hosts``, which ``ip netns exec`` mounts over /etc/hosts). The controller
(the test process: clients, nemesis) runs in the machine's own namespace, where those
names mean nothing, and its /etc/hosts is not ours to edit. So it resolves them through
its own mapping: ``socket.getaddrinfo`` (what ``socket.create_connection`` uses) is wrapped
once, and each ``NameMap`` adds its names while installed. A name in no installed map goes
to the system resolver unchanged; lookups are case-insensitive, as DNS is.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

_lock = threading.Lock()
_maps: list[dict[str, str]] = []
_system_getaddrinfo = socket.getaddrinfo


def _lookup(host: Any) -> Any:
    if isinstance(host, bytes):
        text = host.decode("ascii", "replace")
    elif isinstance(host, str):
        text = host
    else:
        return host
    key = text.lower().rstrip(".")
    with _lock:
        for mapping in reversed(_maps):
            if key in mapping:
                return mapping[key]
    return host


def _getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
    return _system_getaddrinfo(_lookup(host), *args, **kw)


class NameMap:
    """``{name: address}`` resolved in this process while installed (see module doc)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = {k.lower().rstrip("."): v for k, v in names.items()}
        self.installed = False

    def install(self) -> NameMap:
        with _lock:
            if not self.installed:
                _maps.append(self.names)
                self.installed = True
            socket.getaddrinfo = _getaddrinfo  # type: ignore[assignment]
        return self

    def uninstall(self) -> None:
        with _lock:
            if self.installed:
                _maps.remove(self.names)
                self.installed = False
            if not _maps:
                socket.getaddrinfo = _system_getaddrinfo

    def __enter__(self) -> NameMap:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


def hosts_file(names: dict[str, str]) -> str:
    """The text of a hosts file: loopback, then one line per name."""
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    lines += [f"{address} {name}" for name, address in sorted(names.items())]
    return "\n".join(lines) + "\n"


__all__ = ["NameMap", "hosts_file"]
