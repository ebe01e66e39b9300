"""``Client``: a Pykka actor that talks to one cluster, with a typed proxy of futures.

    ref = Client.start(["a@127.0.0.1:7001", "b@127.0.0.1:7002"], cookie="secret")
    client = ref.proxy()
    f1 = client.write(["k", 1]); f2 = client.query("k")   # pykka futures, both in flight
    f1.get(timeout=5); client.write_sync(["k", 2])

Rules:
- The actor never blocks its own thread: a call is started in the actor (which only queues
  a request on a connection) and its future is completed by the connection's reader thread,
  so many calls from one client are in flight at once, pipelined over one connection per
  node.
- Leader tracking is the light session ring (``fail_timeout``, ``election_timeout``) shared
  by all calls of this client (``RingCell``); the rules of ``calls.RingCall`` apply, with one
  fixed deadline per call.
- Composite admin calls (``set_new_conf``, ``create``) run the blocking ``api`` functions
  on a small worker pool, never on the actor thread.
- ``ref.proxy()`` returns ``ClientProxy`` (not a generic pykka proxy): every call returns a
  ``pykka.Future`` of the result itself, and ``*_sync`` helpers block for scripts.
- Plain writes are at-least-once (see ``zraft.client.api``); use a Session for exactly-once.
- Without ``pool``, ``cookie`` or ``cookie_file`` the client uses the default pool
  (``zraft.configure``). Timeouts are checked in the caller's thread, before anything is
  sent (``checks.check_timeout``): ``Client.start`` and every proxy call raise
  ``ValueError`` naming a bad one.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import pykka

from zraft.client import api
from zraft.client.calls import PeerCall, RingCall
from zraft.client.checks import check_optional_timeout, check_timeout
from zraft.client.connection import ConnectionPool
from zraft.client.light_session import LightSession, RingCell
from zraft.ids import PeerId, peer_str

Peer = PeerId | str


class _Start(NamedTuple):
    future: pykka.Future[Any]
    kind: str
    args: tuple[Any, ...]
    timeout: float | None


class Client(pykka.ThreadingActor):
    """The actor; use ``Client.start(peers, ...)`` and ``.proxy()``.

    ``attempt_timeout`` bounds one attempt at one peer before it counts as failed and the
    call moves on (default ``max(2 * fail_timeout, 1 s)``): a hung leader must not hold the
    ring. Client threads are daemons, so a forgotten client does not keep a script alive.
    """

    use_daemon_thread = True

    def __init__(
        self,
        peers: Peer | Sequence[Peer],
        *,
        cookie: str | bytes | None = None,
        cookie_file: str | None = None,
        pool: ConnectionPool | None = None,
        timeout: float = api.DEFAULT_TIMEOUT,
        fail_timeout: float | None = None,
        election_timeout: float | None = None,
        attempt_timeout: float | None = None,
    ) -> None:
        super().__init__()
        timeout = check_timeout(timeout)
        attempt_timeout = check_optional_timeout(attempt_timeout, "attempt_timeout")
        given = [peers] if isinstance(peers, (str, PeerId)) else list(peers)
        # A single peer id is enough: the ring learns the others from get_conf at start
        # (in the background) and the leader from the first redirect.
        self.cell = RingCell(LightSession.new(given, fail_timeout, election_timeout))
        self._actor_ref = ClientRef(self)
        pool, self._own_pool = api.pool_for(pool, cookie, cookie_file)
        self.pool = pool
        self._learn_peers = len(given) == 1
        self.timeout = timeout
        self.attempt_timeout = (api.ring_attempt_timeout(self.cell.session)
                                if attempt_timeout is None else attempt_timeout)
        self._workers: concurrent.futures.ThreadPoolExecutor | None = None

    # -- actor side -----------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Start):
            self._start(message)
            return None
        return super().on_receive(message)

    def on_start(self) -> None:
        if not self._learn_peers:
            return
        cell = self.cell

        def learned(peer: str, payload: Any) -> None:
            leader, _index, peers = api.conf_result(peer, payload)
            current = cell.session
            cell.set(LightSession.new(peers, current.fail_timeout, current.election_timeout,
                                      leader=leader, clock=current.clock))

        RingCall(self.pool, cell, "get_conf", lambda name: [name], self.timeout,
                 ok_fn=learned, attempt_timeout=self.attempt_timeout).start()

    def on_stop(self) -> None:
        if self._workers is not None:
            self._workers.shutdown(wait=False, cancel_futures=True)
        if self._own_pool:
            self.pool.close()

    def _ring_call(self, start: _Start, op: str, args_fn: Callable[[str], Any],
                   ok_fn: Callable[[str, Any], Any] | None = None) -> None:
        timeout = self.timeout if start.timeout is None else start.timeout
        RingCall(self.pool, self.cell, op, args_fn, timeout, ok_fn=ok_fn, future=start.future,
                 attempt_timeout=self.attempt_timeout).start()

    def _start(self, start: _Start) -> None:
        kind, args = start.kind, start.args
        try:
            if kind == "write":
                command = api.write_command(args[0])
                self._ring_call(start, "propose", lambda name: [name, command, None])
            elif kind == "query":
                q = args[0]
                self._ring_call(start, "query", lambda name: [name, q, None, None])
            elif kind == "get_conf":
                self._ring_call(start, "get_conf", lambda name: [name],
                                ok_fn=lambda peer, payload: api.conf_result(peer, payload)[::2])
            elif kind == "stat":
                peer = args[0] or self.cell.session.leader
                timeout = self.timeout if start.timeout is None else start.timeout
                PeerCall(self.pool, peer, "stat", lambda name: [name], timeout,
                         future=start.future).start()
            elif kind in ("set_new_conf", "create"):
                self._in_worker(start)
            else:
                raise ValueError(f"unknown client call {kind!r}")
        except Exception as exc:
            start.future.set_exception((type(exc), exc, exc.__traceback__))

    def _in_worker(self, start: _Start) -> None:
        if self._workers is None:
            self._workers = concurrent.futures.ThreadPoolExecutor(2, "zraft-client-admin")
        timeout = self.timeout if start.timeout is None else start.timeout
        leader = self.cell.session.leader

        def run() -> None:
            try:
                if start.kind == "set_new_conf":
                    new, old = start.args
                    value = api.set_new_conf(leader, new, old, timeout, pool=self.pool)
                else:
                    peers, backend = start.args
                    value = api.create(peers, backend, timeout, pool=self.pool)
            except Exception as exc:
                start.future.set_exception((type(exc), exc, exc.__traceback__))
                return
            start.future.set(value)

        self._workers.submit(run)

    @property
    def leader(self) -> str:
        return self.cell.session.leader


class ClientRef(pykka.ActorRef[Client]):
    """An ActorRef whose ``proxy()`` is the typed ``ClientProxy``."""

    def proxy(self) -> ClientProxy:  # type: ignore[override]
        return ClientProxy(self)


class ClientProxy:
    """Typed proxy: each call returns a pykka Future of its result; ``*_sync`` block."""

    def __init__(self, ref: pykka.ActorRef[Client]) -> None:
        self.actor_ref = ref

    def _call(self, kind: str, *args: Any, timeout: float | None = None) -> pykka.Future[Any]:
        timeout = check_optional_timeout(timeout, "timeout")
        future: pykka.Future[Any] = pykka.ThreadingFuture()
        self.actor_ref.tell(_Start(future, kind, args, timeout))
        return future

    def write(self, data: Any, timeout: float | None = None) -> pykka.Future[Any]:
        """Apply ``data`` through the leader (at-least-once); the future gives the result."""
        return self._call("write", data, timeout=timeout)

    def query(self, query: Any, timeout: float | None = None) -> pykka.Future[Any]:
        """Linearizable read through the leader."""
        return self._call("query", query, timeout=timeout)

    def get_conf(self, timeout: float | None = None) -> pykka.Future[tuple[str, list[str]]]:
        """``(leader, sorted peers)``."""
        return self._call("get_conf", timeout=timeout)

    def set_new_conf(self, new_peers: Iterable[Peer], old_peers: Iterable[Peer],
                     timeout: float | None = None) -> pykka.Future[list[str]]:
        return self._call("set_new_conf", [peer_str(p) for p in new_peers],
                          [peer_str(p) for p in old_peers], timeout=timeout)

    def create(self, peers: Sequence[Peer], backend: str,
               timeout: float | None = None) -> pykka.Future[list[str]]:
        return self._call("create", [peer_str(p) for p in peers], backend, timeout=timeout)

    def stat(self, peer: Peer | None = None,
             timeout: float | None = None) -> pykka.Future[dict[str, Any]]:
        """A peer's status (default: the believed leader)."""
        return self._call("stat", peer_str(peer) if peer is not None else None, timeout=timeout)

    # -- blocking helpers -----------------------------------------------------------------

    def _wait(self, future: pykka.Future[Any], timeout: float | None) -> Any:
        grace = (api.DEFAULT_TIMEOUT if timeout is None else timeout) + 5.0
        return future.get(timeout=grace)

    def write_sync(self, data: Any, timeout: float | None = None) -> Any:
        return self._wait(self.write(data, timeout), timeout)

    def query_sync(self, query: Any, timeout: float | None = None) -> Any:
        return self._wait(self.query(query, timeout), timeout)

    def get_conf_sync(self, timeout: float | None = None) -> tuple[str, list[str]]:
        return self._wait(self.get_conf(timeout), timeout)

    def set_new_conf_sync(self, new_peers: Iterable[Peer], old_peers: Iterable[Peer],
                          timeout: float | None = None) -> list[str]:
        return self._wait(self.set_new_conf(new_peers, old_peers, timeout), timeout)

    def stat_sync(self, peer: Peer | None = None, timeout: float | None = None) -> dict[str, Any]:
        return self._wait(self.stat(peer, timeout), timeout)

    def leader(self) -> str:
        """The peer the client currently believes leads."""
        return pykka.ActorProxy(actor_ref=self.actor_ref).leader.get(timeout=5)

    def stop(self, timeout: float | None = 5.0) -> None:
        self.actor_ref.stop(timeout=timeout)


@contextlib.contextmanager
def connect(peers: Peer | Sequence[Peer], **options: Any) -> Iterator[ClientProxy]:
    """``with connect(peers, cookie=...) as client:`` a started Client, stopped at the end."""
    ref = Client.start(peers, **options)
    try:
        yield ref.proxy()  # type: ignore[attr-defined]
    finally:
        ref.stop(timeout=5)
