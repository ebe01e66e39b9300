"""Peer ids: ``name@host:port``, zraft_lib's ``{Name, Node}``.

``name`` names a Raft peer inside a node process (one node may host peers of many clusters);
``host:port`` is that node's listen address. The core only sees the string form.
"""

from __future__ import annotations

import re
import secrets
from typing import NamedTuple

from zraft.saferepr import safe_repr

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class PeerId(NamedTuple):
    name: str
    host: str
    port: int

    @staticmethod
    def parse(text: str) -> PeerId:
        """Parse ``name@host:port``; raise ValueError with a message that says what is wrong."""
        if not isinstance(text, str) or "@" not in text:
            raise ValueError(f"bad peer id {safe_repr(text)}: expected name@host:port")
        name, _, address = text.partition("@")
        host, sep, port_text = address.rpartition(":")
        if not sep or not host:
            raise ValueError(f"bad peer id {safe_repr(text)}: expected name@host:port")
        if not _NAME.match(name):
            raise ValueError(f"bad peer id {safe_repr(text)}: name must be 1-64 of [A-Za-z0-9_.-]")
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"bad peer id {safe_repr(text)}: port {safe_repr(port_text, 20)} "
                             "is not a number") from None
        if not 0 < port < 65536:
            raise ValueError(f"bad peer id {safe_repr(text)}: port {port} out of range")
        return PeerId(name, host.strip("[]"), port)

    @property
    def node(self) -> str:
        """The node address ``host:port`` this peer lives on."""
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.name}@{self.host}:{self.port}"


def peer_str(peer: PeerId | str) -> str:
    """Normalise a PeerId or a peer-id string to the canonical string form."""
    return str(PeerId.parse(peer)) if isinstance(peer, str) else str(peer)


def node_of(peer: str) -> str:
    """``host:port`` of a peer id string."""
    return peer.partition("@")[2]


_CLUSTER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_cluster_id() -> str:
    """A fresh cluster identity (64 random bits, hex), made once by ``create``."""
    return secrets.token_hex(8)


def is_cluster_id(value: object) -> bool:
    """Empty (a peer made before clusters had an identity) or 1-64 of [A-Za-z0-9_-]."""
    return value == "" or (isinstance(value, str) and _CLUSTER_ID.fullmatch(value) is not None)
