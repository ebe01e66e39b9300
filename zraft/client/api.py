"""The cluster API (zraft_lib's ``zraft_client``) as blocking module functions.

Rules:
- Every function takes ``timeout`` in seconds (default 5.0) and never waits longer: a
  redirect never resets the deadline. A timeout must be finite, > 0 and at most a day
  (``checks.MAX_TIMEOUT``): anything else raises ``ValueError`` before anything is sent.
  Failures raise ``zraft.errors`` exceptions (``Timeout``, ``AllFailed``, ``Unreachable``
  for zraft_lib's ``noproc``, ``NotLeader``, ``PeersChanged``, ``NotStable``,
  ``NewerExists``, ``ProcessPrevChange``, ``AlreadyPresent``, ``BadCommand``, ...).
- ``write``/``query`` with a peer id return ``(result, leader_peer_id)``; with a LightSession
  they return ``(result, new_light_session)`` (the argument is not changed).
- Plain writes are at-least-once: a write retried after a timeout or a leader change may be
  applied twice (zraft_lib's warning). Use a Session for exactly-once writes.
- Connections come from ``pool=`` or from the default pool, whose cookie is set with
  ``configure(cookie=..., cookie_file=...)`` or the ``ZRAFT_COOKIE(_FILE)`` environment
  (``NoCookie`` when there is none). ``Session.start`` and ``Client.start`` use the default
  pool too when given no cookie, cookie file or pool.
- ``zraft.aio`` has the same functions as coroutines; they share everything here that does
  no I/O (argument builders, result shapes, the configuration checks, ``create``'s errors).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from zraft.client.calls import PeerCall, RetryingCall, RetryLater, RingCall, backoff
from zraft.client.checks import check_timeout
from zraft.client.connection import ConnectionPool, PoolBase, resolve_cookie, resolve_tls
from zraft.client.light_session import DEFAULT_ELECTION_TIMEOUT, LightSession, RingCell
from zraft.errors import LeaderChanged, NoPeers, PeersChanged, ZRaftError
from zraft.ids import PeerId, is_cluster_id, new_cluster_id, peer_str
from zraft.transport.codec import pack

DEFAULT_TIMEOUT = 5.0
Peer = PeerId | str

_default_pool: ConnectionPool | None = None
_default_lock = threading.Lock()


def configure(
    cookie: str | bytes | None = None, cookie_file: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> ConnectionPool:
    """Set the cookie of the default connection pool (closing the previous pool). The module
    functions, ``Session.start`` and ``Client.start`` use that pool when given no ``pool=``
    (and, for the last two, no ``cookie=`` / ``cookie_file=``). ``NoCookie`` if neither
    argument is given and the environment names none. ``tls``: a client context
    (``zraft.tls_client(ca, cert, key)``); default: ``$ZRAFT_TLS_CA`` (and ``_CERT``,
    ``_KEY``) if set, else plaintext."""
    global _default_pool
    pool = ConnectionPool(resolve_cookie(cookie, cookie_file), tls=tls or resolve_tls())
    with _default_lock:
        old, _default_pool = _default_pool, pool
    if old is not None:
        old.close()
    return pool


def configured_cookie() -> bytes | None:
    """The cookie given to ``configure`` (None before any), for ``zraft.aio``'s default."""
    with _default_lock:
        return None if _default_pool is None else _default_pool.cookie


def configured_tls() -> ssl.SSLContext | None:
    """The TLS context of ``configure``'s pool (None: none, or plaintext)."""
    with _default_lock:
        return None if _default_pool is None else _default_pool.tls


def default_pool() -> ConnectionPool:
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = ConnectionPool(resolve_cookie(), tls=resolve_tls())
        return _default_pool


def pool_for(pool: ConnectionPool | None, cookie: str | bytes | None,
             cookie_file: str | None) -> tuple[ConnectionPool, bool]:
    """``(pool, owned)``: the given pool; else an own pool when a cookie or cookie file is
    given (closed with its owner); else the default pool of ``zraft.configure``."""
    if pool is not None:
        return pool, False
    if cookie is None and cookie_file is None:
        return default_pool(), False
    return ConnectionPool(resolve_cookie(cookie, cookie_file), tls=resolve_tls()), True


def _pool(pool: ConnectionPool | None) -> ConnectionPool:
    return pool if pool is not None else default_pool()


def write_command(data: Any) -> bytes:
    """The log command of a plain write: ``[1, payload]`` (architecture "Commands in the log")."""
    return pack([1, data])


def write_args(data: Any) -> Callable[[str], list[Any]]:
    """``propose`` arguments for a plain write of ``data``, by peer name."""
    command = write_command(data)
    return lambda name: [name, command, None]


def query_args(query: Any) -> Callable[[str], list[Any]]:
    """``query`` arguments for a linearizable read, by peer name."""
    return lambda name: [name, query, None, None]


def peer_result(peer: str, payload: Any) -> tuple[Any, str]:
    """What a call to a peer id returns: ``(result, the peer that answered)``."""
    return payload, peer


def ring_attempt_timeout(session: LightSession) -> float:
    """How long one attempt on a ring target may take before the peer counts as failed."""
    return max(2 * session.fail_timeout, 1.0)


# -- light sessions -------------------------------------------------------------------


def light_session(
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
        leader, peers = get_conf(peer_or_peers, timeout, pool=pool)
        return LightSession.new(peers, fail_timeout, election_timeout, leader=leader)
    peers = list(peer_or_peers)
    if not peers:
        raise NoPeers("a light session needs at least one peer")
    return LightSession.new(peers, fail_timeout, election_timeout)


# -- write / query ---------------------------------------------------------------------


def target_call(pool: PoolBase, target: Peer | LightSession, op: str, args_fn: Any,
                timeout: float, **kw: Any) -> tuple[RetryingCall, RingCell | None]:
    """The call of a write or read to a peer id or a light session (then with the cell
    whose final ring the caller returns)."""
    if isinstance(target, LightSession):
        cell = RingCell(target)
        return RingCall(pool, cell, op, args_fn, timeout,
                        attempt_timeout=ring_attempt_timeout(target), **kw), cell
    return PeerCall(pool, target, op, args_fn, timeout, ok_fn=peer_result, **kw), None


def _run(target: Peer | LightSession, op: str, args_fn: Any, timeout: float,
         pool: ConnectionPool | None) -> tuple[Any, Any]:
    timeout = check_timeout(timeout)
    call, cell = target_call(_pool(pool), target, op, args_fn, timeout)
    result = call.run()
    return result if cell is None else (result, cell.session)


def write(target: Peer | LightSession, data: Any, timeout: float = DEFAULT_TIMEOUT,
          *, pool: ConnectionPool | None = None) -> tuple[Any, Any]:
    """Apply ``data`` through the leader: ``(result, leader)`` or ``(result, session)``."""
    return _run(target, "propose", write_args(data), timeout, pool)


def query(target: Peer | LightSession, query: Any, timeout: float = DEFAULT_TIMEOUT,
          *, pool: ConnectionPool | None = None) -> tuple[Any, Any]:
    """Linearizable read through the leader: ``(result, leader)`` or ``(result, session)``."""
    return _run(target, "query", query_args(query), timeout, pool)


def query_local(peer: Peer, query: Any, timeout: float = DEFAULT_TIMEOUT,
                *, pool: ConnectionPool | None = None) -> Any:
    """Read ``peer``'s own state without a leadership check (may be stale)."""
    return _single(peer, "query_local", lambda name: [name, query], timeout, pool)


# -- configuration ---------------------------------------------------------------------


def conf_result(peer: str, payload: Any) -> tuple[str, int, list[str]]:
    index, peers = payload
    if not index:
        raise RetryLater  # no committed configuration yet (zraft_lib {ok, {0, _}})
    return peer, int(index), sorted(peers)


def get_conf_call(pool: PoolBase, peer: Peer, timeout: float, **kw: Any) -> PeerCall:
    """The call whose result is ``(leader, config index, sorted peers)``."""
    return PeerCall(pool, peer, "get_conf", lambda name: [name], timeout,
                    ok_fn=conf_result, wait=backoff(0.02, DEFAULT_ELECTION_TIMEOUT), **kw)


def _get_conf_full(peer: Peer, timeout: float, pool: ConnectionPool | None
                   ) -> tuple[str, int, list[str]]:
    timeout = check_timeout(timeout)
    return get_conf_call(_pool(pool), peer, timeout).run()


def get_conf(peer: Peer, timeout: float = DEFAULT_TIMEOUT,
             *, pool: ConnectionPool | None = None) -> tuple[str, list[str]]:
    """``(leader, sorted peers)`` of the stable committed configuration, asked of the leader."""
    leader, _index, peers = _get_conf_full(peer, timeout, pool)
    return leader, peers


class SetConfCall(PeerCall):
    """set_conf goes to the leader found by get_conf; a redirect means it lost leadership."""

    def decide(self, peer: str, status: str, payload: Any) -> tuple[Any, ...]:
        if status in ("not_leader", "leader_changed"):
            raise LeaderChanged(f"{peer} is no longer the leader", peer=peer)
        return super().decide(peer, status, payload)


def set_new_conf(peer: Peer, new_peers: Iterable[Peer], old_peers: Iterable[Peer],
                 timeout: float = DEFAULT_TIMEOUT,
                 *, pool: ConnectionPool | None = None) -> list[str]:
    """Change the membership to ``new_peers`` (joint consensus). ``old_peers`` must equal the
    current stable committed configuration (``PeersChanged`` otherwise); already applied ->
    returns at once (idempotent). Returns the sorted new peer list."""
    timeout = check_timeout(timeout)
    deadline = time.monotonic() + timeout
    new, old = conf_change(new_peers, old_peers)
    leader, index, current = _get_conf_full(peer, timeout, pool)
    if conf_done(current, new, old):
        return new
    set_conf_call(_pool(pool), leader, index, new, deadline).run()
    return new


def conf_change(new_peers: Iterable[Peer], old_peers: Iterable[Peer]
                ) -> tuple[list[str], list[str]]:
    """``(new, old)`` sorted and without duplicates; ``NoPeers`` if ``new`` is empty."""
    new = sorted({peer_str(p) for p in new_peers})
    old = sorted({peer_str(p) for p in old_peers})
    if not new:
        raise NoPeers("the new configuration is empty")
    return new, old


def conf_done(current: list[str], new: list[str], old: list[str]) -> bool:
    """True if ``new`` is in place already; ``PeersChanged`` if ``old`` is out of date."""
    if current == new:
        return True
    if current != old:
        raise PeersChanged(f"current peers are {current}, not {old}", current=current)
    return False


def set_conf_call(pool: PoolBase, leader: str, index: int, new: list[str], deadline: float,
                  **kw: Any) -> SetConfCall:
    """The ``set_conf`` call to ``leader`` with what is left of ``deadline`` (monotonic)."""
    left = max(0.001, deadline - time.monotonic())
    timeout_ms = int(left * 1000)
    return SetConfCall(pool, leader, "set_conf",
                       lambda name: [name, index, new, timeout_ms], left, **kw)


def transfer_leader(peer: Peer, to: Peer | None = None, timeout: float = DEFAULT_TIMEOUT,
                    *, pool: ConnectionPool | None = None) -> str:
    """Hand leadership to ``to`` (None: the most up-to-date voting member) and return the
    new leader. ``peer``: any member (the request follows redirects to the leader). The
    leader pauses writes (clients are told to retry) while it catches the target up, for at
    most two election timeouts. Raises ``TransferFailed`` (``details["reason"]``: timeout,
    other_leader, unknown_peer, no_target, transfer_in_progress) or ``Timeout``."""
    timeout = check_timeout(timeout)
    deadline = time.monotonic() + timeout
    target = peer_str(to) if to is not None else None

    def args(name: str) -> list[Any]:
        return [name, target, max(1, int((deadline - time.monotonic()) * 1000))]

    payload, answered = PeerCall(_pool(pool), peer, "transfer_leader", args, timeout,
                                 ok_fn=peer_result).run()
    leader = payload.get("leader") if isinstance(payload, dict) else None
    return leader if isinstance(leader, str) else answered


# -- single-peer operations ------------------------------------------------------------


def _single(peer: Peer, op: str, args_fn: Any, timeout: float,
            pool: ConnectionPool | None) -> Any:
    timeout = check_timeout(timeout)
    return PeerCall(_pool(pool), peer, op, args_fn, timeout).run()


def check_exists(peer: Peer, timeout: float = DEFAULT_TIMEOUT,
                 *, pool: ConnectionPool | None = None, backend: str | None = None) -> None:
    """None if ``peer`` can be created on its node; ``AlreadyPresent`` if it exists. With
    ``backend``, also whether its node could run that backend: ``BackendNotAllowed`` (not
    in the node's ``backends`` list) or ``BackendError`` (it cannot be imported,
    constructed or initialised there; the message names the cause)."""
    args = [backend] if backend is not None else []
    _single(peer, "check_exists", lambda name: [name, *args], timeout, pool)


def create_peer(peer: Peer, backend: str, timeout: float = DEFAULT_TIMEOUT,
                *, pool: ConnectionPool | None = None, cluster_id: str | None = None) -> None:
    """Start a blank peer on its node. ``cluster_id``: the identity of the cluster it will
    join (``create`` makes one; to add a member, pass ``stat(leader)["cluster_id"]``); a
    peer then refuses Raft messages of any other cluster."""
    if cluster_id is not None and not is_cluster_id(cluster_id):
        raise ValueError(f"not a cluster id: {cluster_id!r:.80}")
    _single(peer, "create_peer", lambda name: [name, backend, cluster_id], timeout, pool)


def bootstrap(peer: Peer, timeout: float = DEFAULT_TIMEOUT,
              *, pool: ConnectionPool | None = None) -> None:
    """Make a blank peer a one-member cluster (``Initialized`` if it is not blank)."""
    _single(peer, "bootstrap", lambda name: [name], timeout, pool)


def stat(peer: Peer, timeout: float = DEFAULT_TIMEOUT,
         *, pool: ConnectionPool | None = None) -> dict[str, Any]:
    """The peer's status dict (zraft_lib's stat): role, term, leader, log, conf, ..."""
    return _single(peer, "stat", lambda name: [name], timeout, pool)


def create(peers: Sequence[Peer], backend: str, timeout: float = DEFAULT_TIMEOUT,
           *, pool: ConnectionPool | None = None) -> list[str]:
    """Create a cluster (zraft_lib create/2): check every peer (it does not exist yet and
    its node can run ``backend``), start them in list order, bootstrap the first, then set
    the configuration to all. Each step has ``timeout``. Every peer is given the same new
    cluster identity (see ``create_peer``).

    Raises: the first check failure's class (``.details["failures"]`` lists every
    ``(peer, error)``): ``AlreadyPresent``, ``BackendNotAllowed``, ``BackendError`` (the
    backend cannot be loaded on that node: nothing was created anywhere); a start failure
    with ``.details["peer"]``; bootstrap and set_new_conf errors as they are (set_new_conf
    is asked again while the new group's leader changes, see ``join_new``; the cluster
    then exists with a partial configuration).
    """
    check_timeout(timeout)
    ids = [peer_str(p) for p in peers]
    if not ids:
        raise NoPeers("create needs at least one peer")
    cluster_id = new_cluster_id()
    failures: list[tuple[str, ZRaftError]] = []
    for peer in ids:
        try:
            check_exists(peer, timeout, pool=pool, backend=backend)
        except ZRaftError as exc:
            failures.append((peer, exc))
    if failures:
        raise create_failure(failures)
    for peer in ids:
        try:
            create_peer(peer, backend, timeout, pool=pool, cluster_id=cluster_id)
        except ZRaftError as exc:
            exc.details.setdefault("peer", peer)
            raise
    return join_new(ids, timeout, pool)


def join_new(ids: list[str], timeout: float, pool: ConnectionPool | None) -> list[str]:
    """Bootstrap a new group's first peer, then make every peer a member. A young group on
    a busy node may elect again while its configuration changes (``LeaderChanged``):
    ``set_new_conf`` is idempotent, so it is asked again until ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    bootstrap(ids[0], timeout, pool=pool)
    while True:
        try:
            return set_new_conf(ids[0], ids, [ids[0]], max(0.5, deadline - time.monotonic()),
                                pool=pool)
        except LeaderChanged:
            if time.monotonic() >= deadline:
                raise


def create_many(groups: Sequence[Sequence[Peer]], backend: str,
                timeout: float = DEFAULT_TIMEOUT, *, pool: ConnectionPool | None = None,
                parallel: int = 128) -> list[list[str]]:
    """Create many clusters at once, each as ``create`` would (``zraft.client.create_many``):
    one ``create_peers`` request per node per batch of peers, every node checked before any
    peer is created, then ``parallel`` groups bootstrapped and configured at a time, so the
    groups' first elections overlap. Returns each group's sorted peer ids."""
    from zraft.client.create_many import create_many as many

    return many(groups, backend, timeout, _pool(pool), parallel, join_new, create_failure)


def create_failure(failures: list[tuple[str, ZRaftError]]) -> ZRaftError:
    """``create``'s error when some peers cannot be created: the first failure's class,
    naming every ``(peer, error)`` (also in ``.details["failures"]``)."""
    first = failures[0][1]
    text = "; ".join(f"{p}: {e}" for p, e in failures)  # each one line
    err = type(first)(text)
    err.details.update(failures=failures)
    err.code = first.code
    return err
