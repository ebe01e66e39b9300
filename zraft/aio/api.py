"""The cluster API as coroutines: ``zraft.client.api``'s functions for asyncio programs.

Rules: the same names, arguments, defaults, result shapes, exceptions and deadline rules as
the blocking functions (a timeout is checked before anything is sent; a redirect never
extends the deadline), because each one runs the blocking client's own call state machine
(``zraft.client.calls``) on the running loop (``zraft.aio.calls``). Nothing here starts a
thread. Cancelling a call (``task.cancel()``, ``asyncio.timeout``) stops it at once and
leaves the connection and every other call untouched; a cancelled ``write`` may still be
applied. Composite calls (``set_new_conf``, ``create``, ``light_session`` of one peer) keep
one deadline across their steps, as the blocking ones do.

Connections: ``pool=`` (a ``zraft.aio.ConnectionPool``), else the default pool of the
running loop, whose cookie is ``zraft.aio.configure``'s, else ``zraft.configure``'s, else
the ``ZRAFT_COOKIE(_FILE)`` environment (``NoCookie`` when there is none).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from zraft.aio import calls
from zraft.aio.connection import ConnectionPool
from zraft.client import api as blocking
from zraft.client.api import DEFAULT_TIMEOUT, Peer, conf_change, conf_done
from zraft.client.calls import PeerCall
from zraft.client.checks import check_timeout
from zraft.client.connection import resolve_cookie, resolve_tls
from zraft.client.light_session import LightSession
from zraft.errors import NoPeers, ZRaftError
from zraft.ids import PeerId, is_cluster_id, new_cluster_id, peer_str

_cookie: bytes | None = None
_tls: ssl.SSLContext | None = None
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ConnectionPool] = (
    weakref.WeakKeyDictionary())
_lock = threading.Lock()


def configure(cookie: str | bytes | None = None, cookie_file: str | None = None,
              tls: ssl.SSLContext | None = None) -> None:
    """Set the cookie of the default pools (one per event loop; those made before are
    closed). ``NoCookie`` if neither argument is given and the environment names none.
    ``tls``: as ``zraft.configure``'s (default: ``$ZRAFT_TLS_*``, else plaintext)."""
    global _cookie, _tls
    new = resolve_cookie(cookie, cookie_file)
    new_tls = tls or resolve_tls()
    with _lock:
        _cookie = new
        _tls = new_tls
        old = list(_pools.values())
        _pools.clear()
    for pool in old:
        if not pool.loop.is_closed():
            pool.loop.call_soon_threadsafe(pool.close)


def default_pool() -> ConnectionPool:
    """The running loop's default pool (made on first use)."""
    loop = asyncio.get_running_loop()
    with _lock:
        pool = _pools.get(loop)
        if pool is None or pool.closed:
            cookie = _cookie or blocking.configured_cookie() or resolve_cookie()
            tls = (_tls if _cookie else blocking.configured_tls()) or resolve_tls()
            pool = _pools[loop] = ConnectionPool(cookie, loop=loop, tls=tls)
        return pool


def pool_for(pool: ConnectionPool | None, cookie: str | bytes | None,
             cookie_file: str | None) -> tuple[ConnectionPool, bool]:
    """``(pool, owned)``: the given pool; else an own pool when a cookie or cookie file is
    given (closed with its owner); else the running loop's default pool."""
    if pool is not None:
        return pool, False
    if cookie is None and cookie_file is None:
        return default_pool(), False
    return ConnectionPool(resolve_cookie(cookie, cookie_file), tls=resolve_tls()), True


def _pool(pool: ConnectionPool | None) -> ConnectionPool:
    return pool if pool is not None else default_pool()


# -- light sessions -------------------------------------------------------------------


async def light_session(
    peer_or_peers: Peer | Sequence[Peer],
    fail_timeout: float | None = None,
    election_timeout: float | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    pool: ConnectionPool | None = None,
) -> LightSession:
    """A light session. A list of peers is used as given (leader = its first element, no
    network); a single peer id is asked for the configuration (leader at the head)."""
    check_timeout(timeout)
    if isinstance(peer_or_peers, (str, PeerId)):
        leader, peers = await get_conf(peer_or_peers, timeout, pool=pool)
        return LightSession.new(peers, fail_timeout, election_timeout, leader=leader)
    peers = list(peer_or_peers)
    if not peers:
        raise NoPeers("a light session needs at least one peer")
    return LightSession.new(peers, fail_timeout, election_timeout)


# -- write / query ---------------------------------------------------------------------


async def _run(target: Peer | LightSession, op: str, args_fn: Any, timeout: float,
               pool: ConnectionPool | None) -> tuple[Any, Any]:
    timeout = check_timeout(timeout)
    call, cell = blocking.target_call(_pool(pool), target, op, args_fn, timeout,
                                      **calls.call_kwargs())
    result = await calls.run(call)
    return result if cell is None else (result, cell.session)


async def write(target: Peer | LightSession, data: Any, timeout: float = DEFAULT_TIMEOUT,
                *, pool: ConnectionPool | None = None) -> tuple[Any, Any]:
    """Apply ``data`` through the leader: ``(result, leader)`` or ``(result, session)``.
    At-least-once, as the blocking ``write`` (use a Session for exactly-once)."""
    return await _run(target, "propose", blocking.write_args(data), timeout, pool)


async def query(target: Peer | LightSession, query: Any, timeout: float = DEFAULT_TIMEOUT,
                *, pool: ConnectionPool | None = None) -> tuple[Any, Any]:
    """Linearizable read through the leader: ``(result, leader)`` or ``(result, session)``."""
    return await _run(target, "query", blocking.query_args(query), timeout, pool)


async def query_local(peer: Peer, query: Any, timeout: float = DEFAULT_TIMEOUT,
                      *, pool: ConnectionPool | None = None) -> Any:
    """Read ``peer``'s own state without a leadership check (may be stale)."""
    return await _single(peer, "query_local", lambda name: [name, query], timeout, pool)


# -- configuration ---------------------------------------------------------------------


async def _get_conf_full(peer: Peer, timeout: float, pool: ConnectionPool | None
                         ) -> tuple[str, int, list[str]]:
    timeout = check_timeout(timeout)
    call = blocking.get_conf_call(_pool(pool), peer, timeout, **calls.call_kwargs())
    return await calls.run(call)


async def get_conf(peer: Peer, timeout: float = DEFAULT_TIMEOUT,
                   *, pool: ConnectionPool | None = None) -> tuple[str, list[str]]:
    """``(leader, sorted peers)`` of the stable committed configuration, asked of the leader."""
    leader, _index, peers = await _get_conf_full(peer, timeout, pool)
    return leader, peers


async def set_new_conf(peer: Peer, new_peers: Iterable[Peer], old_peers: Iterable[Peer],
                       timeout: float = DEFAULT_TIMEOUT,
                       *, pool: ConnectionPool | None = None) -> list[str]:
    """Change the membership to ``new_peers`` (joint consensus). ``old_peers`` must equal the
    current stable committed configuration (``PeersChanged`` otherwise); already applied ->
    returns at once (idempotent). Returns the sorted new peer list."""
    timeout = check_timeout(timeout)
    deadline = time.monotonic() + timeout
    new, old = conf_change(new_peers, old_peers)
    leader, index, current = await _get_conf_full(peer, timeout, pool)
    if conf_done(current, new, old):
        return new
    await calls.run(blocking.set_conf_call(_pool(pool), leader, index, new, deadline,
                                           **calls.call_kwargs()))
    return new


async def transfer_leader(peer: Peer, to: Peer | None = None, timeout: float = DEFAULT_TIMEOUT,
                          *, pool: ConnectionPool | None = None) -> str:
    """Hand leadership to ``to`` (None: the most up-to-date voting member) and return the
    new leader, as ``zraft.transfer_leader`` (same errors: ``TransferFailed``, ``Timeout``)."""
    timeout = check_timeout(timeout)
    deadline = time.monotonic() + timeout
    target = peer_str(to) if to is not None else None

    def args(name: str) -> list[Any]:
        return [name, target, max(1, int((deadline - time.monotonic()) * 1000))]

    payload, answered = await calls.run(PeerCall(_pool(pool), peer, "transfer_leader", args,
                                                 timeout, ok_fn=blocking.peer_result,
                                                 **calls.call_kwargs()))
    leader = payload.get("leader") if isinstance(payload, dict) else None
    return leader if isinstance(leader, str) else answered


# -- single-peer operations ------------------------------------------------------------


async def _single(peer: Peer, op: str, args_fn: Any, timeout: float,
                  pool: ConnectionPool | None) -> Any:
    timeout = check_timeout(timeout)
    return await calls.run(PeerCall(_pool(pool), peer, op, args_fn, timeout,
                                    **calls.call_kwargs()))


async def check_exists(peer: Peer, timeout: float = DEFAULT_TIMEOUT,
                       *, pool: ConnectionPool | None = None, backend: str | None = None) -> None:
    """None if ``peer`` can be created on its node; ``AlreadyPresent`` if it exists. With
    ``backend``, also whether its node could run it (as ``zraft.check_exists``)."""
    args = [backend] if backend is not None else []
    await _single(peer, "check_exists", lambda name: [name, *args], timeout, pool)


async def create_peer(peer: Peer, backend: str, timeout: float = DEFAULT_TIMEOUT,
                      *, pool: ConnectionPool | None = None,
                      cluster_id: str | None = None) -> None:
    """Start a blank peer on its node (``cluster_id``: see ``zraft.create_peer``)."""
    if cluster_id is not None and not is_cluster_id(cluster_id):
        raise ValueError(f"not a cluster id: {cluster_id!r:.80}")
    await _single(peer, "create_peer", lambda name: [name, backend, cluster_id], timeout, pool)


async def bootstrap(peer: Peer, timeout: float = DEFAULT_TIMEOUT,
                    *, pool: ConnectionPool | None = None) -> None:
    """Make a blank peer a one-member cluster (``Initialized`` if it is not blank)."""
    await _single(peer, "bootstrap", lambda name: [name], timeout, pool)


async def stat(peer: Peer, timeout: float = DEFAULT_TIMEOUT,
               *, pool: ConnectionPool | None = None) -> dict[str, Any]:
    """The peer's status dict (zraft_lib's stat): role, term, leader, log, conf, ..."""
    return await _single(peer, "stat", lambda name: [name], timeout, pool)


async def create(peers: Sequence[Peer], backend: str, timeout: float = DEFAULT_TIMEOUT,
                 *, pool: ConnectionPool | None = None) -> list[str]:
    """Create a cluster, as ``zraft.create``: check every peer (concurrently: it does not
    exist yet and its node can run ``backend``; nothing is created if one fails), start them
    in list order, bootstrap the first, then set the configuration to all. Each step has
    ``timeout``; errors as ``zraft.create``'s."""
    check_timeout(timeout)
    ids = [peer_str(p) for p in peers]
    if not ids:
        raise NoPeers("create needs at least one peer")
    cluster_id = new_cluster_id()
    checks = await asyncio.gather(
        *(check_exists(peer, timeout, pool=pool, backend=backend) for peer in ids),
        return_exceptions=True)
    failures: list[tuple[str, ZRaftError]] = []
    for peer, outcome in zip(ids, checks, strict=True):
        if isinstance(outcome, ZRaftError):
            failures.append((peer, outcome))
        elif isinstance(outcome, BaseException):
            raise outcome
    if failures:
        raise blocking.create_failure(failures)
    for peer in ids:
        try:
            await create_peer(peer, backend, timeout, pool=pool, cluster_id=cluster_id)
        except ZRaftError as exc:
            exc.details.setdefault("peer", peer)
            raise
    await bootstrap(ids[0], timeout, pool=pool)
    return await set_new_conf(ids[0], ids, [ids[0]], timeout, pool=pool)
