"""Cancelling zraft.aio calls: the call's request is forgotten, nothing else is touched.

Against in-process fake nodes whose script drops chosen requests (so a call can be caught
in the middle): the connection stays up with nothing left pending, the other calls in
flight on it complete, a call cancelled in its retry back-off sends nothing more, and a
cancelled session write is never re-sent (not even after a leader change) while the
session's ``acc_upto`` moves past it.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

import zraft.aio as za
from tests.aio.conftest import run
from tests.client.fake_node import FakeCluster
from zraft.aio.connection import Connection
from zraft.aio.session import _LoopSessionCore
from zraft.transport.codec import unpack


async def _until(pred: Any, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"{what} not reached in time"
        await asyncio.sleep(0.01)


def _conn(pool: za.ConnectionPool, peer: str) -> Connection:
    conn = pool._conns[peer.partition("@")[2]]
    assert isinstance(conn, Connection)
    return conn


def _drop(key: str) -> Callable[[str, str, list[Any]], Any]:
    def script(_peer: str, op: str, args: list[Any]) -> Any:
        if op == "query" and args[1] == key:
            return "drop"
        if op == "propose" and key.encode() in bytes(args[1]):
            return "drop"
        return None

    return script


def test_cancelled_calls_leave_the_connection_and_other_calls_alone(fake: FakeCluster) -> None:
    fake.script = _drop("hang")
    leader = fake.leader_id()

    async def main() -> None:
        pool = za.ConnectionPool(fake.cookie)
        hanging = [asyncio.create_task(za.query(leader, "hang", 30, pool=pool))
                   for _ in range(50)]
        writes = [asyncio.create_task(za.write(leader, [f"k{i}", i], 30, pool=pool))
                  for i in range(50)]
        await _until(lambda: len(fake.ops("query")) == 50, what="50 queries at the node")
        conn = _conn(pool, leader)
        for task in hanging:
            task.cancel()
        results = await asyncio.gather(*writes)
        assert [r for r, _ in results] == ["ok"] * 50
        assert all(t.cancelled() for t in hanging)
        assert conn.alive and conn.in_flight() == 0  # cancelled requests were forgotten
        assert (await za.query(leader, "k49", pool=pool))[0] == 49
        assert _conn(pool, leader) is conn  # the same connection served on

    run(main())


def test_a_timeout_around_a_call_cancels_it(fake: FakeCluster) -> None:
    fake.script = _drop("hang")
    leader = fake.leader_id()

    async def main() -> None:
        pool = za.ConnectionPool(fake.cookie)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await za.query(leader, "hang", 30, pool=pool)
        assert _conn(pool, leader).in_flight() == 0
        assert (await za.write(leader, ["after", 1], pool=pool))[0] == "ok"

    run(main())


def test_a_call_cancelled_in_its_back_off_sends_nothing_more(fake: FakeCluster) -> None:
    fake.leader = None  # every peer answers not_leader, leader unknown: the call retries

    async def main() -> None:
        pool = za.ConnectionPool(fake.cookie)
        task = asyncio.create_task(za.write(fake.peers[0], ["k", 1], 30, pool=pool))
        await _until(lambda: len(fake.ops("propose")) >= 3, what="retries")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        sent = len(fake.ops("propose"))
        await asyncio.sleep(0.5)  # longer than the back-off between its retries
        assert len(fake.ops("propose")) <= sent + 1  # at most the one already on its way
        assert _conn(pool, fake.peers[0]).in_flight() == 0

    run(main())


def test_a_call_cancelled_while_connecting_is_forgotten() -> None:
    with socket.socket() as silent:  # accepts (backlog) but never says hello
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        peer = f"p1@127.0.0.1:{silent.getsockname()[1]}"

        async def main() -> None:
            pool = za.ConnectionPool(b"cookie")
            task = asyncio.create_task(za.stat(peer, 10, pool=pool))
            await _until(lambda: pool._conns, what="a connection")
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert _conn(pool, peer).in_flight() == 0
            pool.close()
            await pool.wait_closed()

        run(main())


def _session_writes(fake: FakeCluster, sid: str) -> list[list[Any]]:
    """The session write commands ``[4, sid, msg_id, acc_upto, temporary, data]`` seen."""
    commands = [unpack(bytes(args[1])) for _peer, _op, args in fake.ops("propose")]
    return [c for c in commands if c[0] == 4 and c[1] == sid]


def test_a_cancelled_session_write_is_forgotten_and_never_re_sent(fake: FakeCluster) -> None:
    fake.script = _drop("hang")

    async def main() -> None:
        async with za.Session.start(fake.peers, 10.0, cookie=fake.cookie) as s:
            assert await s.write(["first", 1]) == "ok"  # msg 1
            task = asyncio.create_task(s.write(["hang", 2], timeout=30))  # msg 2
            await _until(lambda: any(c[5] == ["hang", 2] for c in _session_writes(fake, s.sid)),
                         what="the write at the node")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await s.write(["third", 3]) == "ok"  # msg 3
            third = next(c for c in _session_writes(fake, s.sid) if c[5] == ["third", 3])
            assert third[2] == 3 and third[3] == 2  # acc_upto moved past the cancelled one
            fake.change_leader(fake.peers[1])  # the session re-sends what is outstanding
            assert await s.write(["fourth", 4], timeout=10) == "ok"
            sent = [c[2] for c in _session_writes(fake, s.sid)]
            assert sent.count(2) == 1  # never re-sent
            assert s.state == za.SessionState.CONNECTED

    run(main())


def test_cancelling_a_session_start_ends_the_session(fake: FakeCluster,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fake.script = lambda _peer, op, args: "drop" if op == "propose" else None
    cores: list[Any] = []
    make_core = _LoopSessionCore.__init__

    def record(self: Any, *args: Any, **kwargs: Any) -> None:
        make_core(self, *args, **kwargs)
        cores.append(self)

    monkeypatch.setattr(_LoopSessionCore, "__init__", record)

    async def main() -> None:
        starting = asyncio.create_task(
            _start(za.Session.start(fake.peers, 10.0, cookie=fake.cookie)))
        await _until(lambda: fake.ops("propose"), what="the connect at the node")
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
        (core,) = cores
        assert not core.alive and core.pool.closed  # ended, its own pool closed
        assert core.timers == [] or all(t.cancelled() for t in core.timers)

    run(main())


async def _start(starting: Any) -> za.Session:
    return await starting
