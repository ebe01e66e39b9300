"""zraft: a Raft consensus library and server for Python (a re-creation of zraft_lib).

The public API is re-exported here lazily (PEP 562), so ``import zraft.core`` stays cheap
and free of threads and sockets::

    import zraft
    zraft.configure(cookie_file="cluster/cookie")
    zraft.create(peers, "dict")
    result, leader = zraft.write(peers[0], ["key", "value"])
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

logging.getLogger("zraft").addHandler(logging.NullHandler())

_EXPORTS: dict[str, str] = {
    # cluster API (zraft_client)
    "configure": "zraft.client", "create": "zraft.client", "light_session": "zraft.client",
    "write": "zraft.client", "query": "zraft.objects.methods", "query_local": "zraft.client",
    "get_conf": "zraft.client", "set_new_conf": "zraft.client",
    "transfer_leader": "zraft.client",
    "check_exists": "zraft.client", "stat": "zraft.client", "create_peer": "zraft.client",
    "bootstrap": "zraft.client", "LightSession": "zraft.client",
    "ConnectionPool": "zraft.client", "tls_client": "zraft.client.connection",
    # actors
    "Client": "zraft.client", "ClientProxy": "zraft.client", "connect": "zraft.client",
    "Session": "zraft.client", "SessionState": "zraft.client", "WatchEvent": "zraft.client",
    # values, ids, errors
    "NOT_FOUND": "zraft.transport.sentinels", "PeerId": "zraft.ids",
    "ZRaftError": "zraft.errors", "Timeout": "zraft.errors", "AllFailed": "zraft.errors",
    "Unreachable": "zraft.errors", "NotLeader": "zraft.errors",
    "LeaderChanged": "zraft.errors", "PeersChanged": "zraft.errors",
    "NotStable": "zraft.errors", "NewerExists": "zraft.errors",
    "ProcessPrevChange": "zraft.errors", "AlreadyPresent": "zraft.errors",
    "SessionExpired": "zraft.errors", "BackendError": "zraft.errors",
    "BadCommand": "zraft.errors", "NoCookie": "zraft.errors",
    "BackendNotAllowed": "zraft.errors", "BackendFailed": "zraft.errors",
    "StorageFailed": "zraft.errors", "TransferFailed": "zraft.errors",
    "BadRequest": "zraft.errors", "TooLarge": "zraft.errors", "NotAllowed": "zraft.errors",
    # state machines
    "Backend": "zraft.fsm", "ApplyResult": "zraft.fsm", "QueryResult": "zraft.fsm",
    "SnapshotJob": "zraft.fsm", "SimpleBackend": "zraft.fsm",
    # local clusters
    "LocalCluster": "zraft.cluster",
    # replicated objects and the embedded node (``query`` above is also the @query marker)
    "replicated": "zraft.objects.methods", "connect_object": "zraft.objects.handle",
    "Node": "zraft.node.embedded",
}

__all__ = sorted(_EXPORTS)


_SUBPACKAGES = frozenset({"objects"})  # ``zraft.objects.Counter`` after a bare ``import zraft``


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"zraft.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'zraft' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
