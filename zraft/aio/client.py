"""``zraft.aio.Client``: the Client actor's calls as coroutines, for one cluster.

    async with zraft.aio.connect(peers, cookie_file=path) as client:
        await client.write(["k", 1])
        results = await asyncio.gather(*(client.write([f"k{i}", i]) for i in range(1000)))

Rules: as ``zraft.Client``: leader tracking is one light-session ring (``fail_timeout``,
``election_timeout``) shared by every call of the client (``RingCell``), every call has one
fixed deadline (``timeout``, default the client's), calls return the result itself, plain
writes are at-least-once. Given one peer id, the client learns the others from
``get_conf`` in the background. Any number of calls may be in flight at once, pipelined
over one connection per node, with no thread. Cancelling a call leaves the others alone (a
cancelled write may still apply).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

from zraft.aio import api, calls
from zraft.aio.connection import ConnectionPool
from zraft.client import api as blocking
from zraft.client.calls import PeerCall, RingCall
from zraft.client.checks import check_optional_timeout, check_timeout
from zraft.client.light_session import LightSession, RingCell
from zraft.ids import PeerId, peer_str

Peer = PeerId | str


class Client:
    """A cluster client on the running event loop; ``async with`` closes it (and its own
    pool, when it made one from ``cookie`` / ``cookie_file``)."""

    def __init__(
        self,
        peers: Peer | Sequence[Peer],
        *,
        cookie: str | bytes | None = None,
        cookie_file: str | None = None,
        pool: ConnectionPool | None = None,
        timeout: float = blocking.DEFAULT_TIMEOUT,
        fail_timeout: float | None = None,
        election_timeout: float | None = None,
        attempt_timeout: float | None = None,
    ) -> None:
        self.timeout = check_timeout(timeout)
        attempt_timeout = check_optional_timeout(attempt_timeout, "attempt_timeout")
        given = [peers] if isinstance(peers, (str, PeerId)) else list(peers)
        self.cell = RingCell(LightSession.new(given, fail_timeout, election_timeout))
        self.pool, self._own_pool = api.pool_for(pool, cookie, cookie_file)
        self.attempt_timeout = (blocking.ring_attempt_timeout(self.cell.session)
                                if attempt_timeout is None else attempt_timeout)
        self._learning: asyncio.Task[None] | None = None
        if len(given) == 1:
            self._learning = asyncio.get_running_loop().create_task(self._learn_peers())

    async def _learn_peers(self) -> None:
        cell = self.cell

        def learned(peer: str, payload: Any) -> None:
            leader, _index, peers = blocking.conf_result(peer, payload)
            current = cell.session
            cell.set(LightSession.new(peers, current.fail_timeout, current.election_timeout,
                                      leader=leader, clock=current.clock))

        with contextlib.suppress(Exception):  # best effort: calls find the peers anyway
            await calls.run(RingCall(self.pool, cell, "get_conf", lambda name: [name],
                                     self.timeout, ok_fn=learned,
                                     attempt_timeout=self.attempt_timeout,
                                     **calls.call_kwargs()))

    @property
    def leader(self) -> str:
        """The peer the client currently believes leads."""
        return self.cell.session.leader

    def _timeout(self, timeout: float | None) -> float:
        checked = check_optional_timeout(timeout, "timeout")
        return self.timeout if checked is None else checked

    async def _ring(self, op: str, args_fn: Any, timeout: float | None,
                    ok_fn: Any = None) -> Any:
        return await calls.run(RingCall(self.pool, self.cell, op, args_fn,
                                        self._timeout(timeout), ok_fn=ok_fn,
                                        attempt_timeout=self.attempt_timeout,
                                        **calls.call_kwargs()))

    async def write(self, data: Any, timeout: float | None = None) -> Any:
        """Apply ``data`` through the leader (at-least-once); returns the result."""
        return await self._ring("propose", blocking.write_args(data), timeout)

    async def query(self, query: Any, timeout: float | None = None) -> Any:
        """Linearizable read through the leader."""
        return await self._ring("query", blocking.query_args(query), timeout)

    async def get_conf(self, timeout: float | None = None) -> tuple[str, list[str]]:
        """``(leader, sorted peers)``."""
        return await self._ring("get_conf", lambda name: [name], timeout,
                                ok_fn=lambda peer, payload: blocking.conf_result(
                                    peer, payload)[::2])

    async def set_new_conf(self, new_peers: Iterable[Peer], old_peers: Iterable[Peer],
                           timeout: float | None = None) -> list[str]:
        return await api.set_new_conf(self.leader, new_peers, old_peers,
                                      self._timeout(timeout), pool=self.pool)

    async def create(self, peers: Sequence[Peer], backend: str,
                     timeout: float | None = None) -> list[str]:
        return await api.create(peers, backend, self._timeout(timeout), pool=self.pool)

    async def transfer_leader(self, to: Peer | None = None,
                              timeout: float | None = None) -> str:
        """Hand leadership to ``to`` (None: the most up-to-date member); the new leader."""
        return await api.transfer_leader(self.leader, to, self._timeout(timeout),
                                         pool=self.pool)

    async def stat(self, peer: Peer | None = None,
                   timeout: float | None = None) -> dict[str, Any]:
        """A peer's status (default: the believed leader)."""
        target = peer_str(peer) if peer is not None else self.leader
        return await calls.run(PeerCall(self.pool, target, "stat", lambda name: [name],
                                        self._timeout(timeout), **calls.call_kwargs()))

    async def close(self) -> None:
        """Stop learning peers; close the pool if it is the client's own."""
        if self._learning is not None and not self._learning.done():
            self._learning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._learning
        if self._own_pool:
            self.pool.close()
            await self.pool.wait_closed()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def connect(peers: Peer | Sequence[Peer], **options: Any) -> Client:
    """``async with zraft.aio.connect(peers, cookie=...) as client:`` (in a running loop)."""
    return Client(peers, **options)
