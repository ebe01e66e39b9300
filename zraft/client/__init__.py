"""zraft's client side: the cluster API (zraft_client), the Client actor and sessions.

Modules: ``light_session`` (the leader-tracking ring), ``connection`` (pipelined, cookie
authenticated connections), ``calls`` (retrying calls with fixed deadlines), ``api``
(blocking module functions), ``client_actor`` (``Client``), ``session`` (``Session``) over
``session_actor``, ``watcher`` (delivery of watch triggers and listener states off the
session thread), ``commands`` (the ``zraft`` command's client subcommands).
"""

from zraft.client.api import (
    bootstrap,
    check_exists,
    configure,
    create,
    create_peer,
    get_conf,
    light_session,
    query,
    query_local,
    set_new_conf,
    stat,
    transfer_leader,
    write,
)
from zraft.client.client_actor import Client, ClientProxy, connect
from zraft.client.connection import ConnectionPool
from zraft.client.light_session import LightSession
from zraft.client.session import Session
from zraft.client.watcher import SessionState, WatchEvent

__all__ = [
    "Client",
    "ClientProxy",
    "ConnectionPool",
    "LightSession",
    "Session",
    "SessionState",
    "WatchEvent",
    "bootstrap",
    "check_exists",
    "configure",
    "connect",
    "create",
    "create_peer",
    "get_conf",
    "light_session",
    "query",
    "query_local",
    "set_new_conf",
    "stat",
    "transfer_leader",
    "write",
]
