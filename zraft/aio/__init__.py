"""zraft's asyncio client: the cluster API, a Client and Sessions as coroutines.

    import zraft.aio

    async def main():
        zraft.aio.configure(cookie_file="cluster/cookie")
        result, leader = await zraft.aio.write(peers[0], ["key", "value"])
        async with zraft.aio.connect(peers) as client:
            await asyncio.gather(*(client.write([f"k{i}", i]) for i in range(1000)))
        async with zraft.aio.Session.start(peers, 10.0) as session:
            await session.write(["lock", session.sid], temporary=True)

The same calls, arguments, defaults, results, exceptions (``zraft.errors``) and deadline
rules as the blocking client, built on asyncio streams: one pipelined connection per node
and event loop, a reader task per connection, no thread per call (none at all). Every call
is cancellation-safe. Modules: ``connection`` (streams, pool), ``calls`` (the blocking
client's retrying calls driven by the loop), ``api`` (module functions), ``client``
(``Client``), ``session`` (``Session``, ``DataWatch``).
"""

from zraft.aio.api import (
    bootstrap,
    check_exists,
    configure,
    create,
    create_peer,
    default_pool,
    get_conf,
    light_session,
    query,
    query_local,
    set_new_conf,
    stat,
    transfer_leader,
    write,
)
from zraft.aio.client import Client, connect
from zraft.aio.connection import ConnectionPool
from zraft.aio.session import DataWatch, Session, WatchUpdate
from zraft.client.light_session import LightSession
from zraft.client.watcher import SessionState, WatchEvent

__all__ = [
    "Client",
    "ConnectionPool",
    "DataWatch",
    "LightSession",
    "Session",
    "SessionState",
    "WatchEvent",
    "WatchUpdate",
    "bootstrap",
    "check_exists",
    "configure",
    "connect",
    "create",
    "create_peer",
    "default_pool",
    "get_conf",
    "light_session",
    "query",
    "query_local",
    "set_new_conf",
    "stat",
    "transfer_leader",
    "write",
]
