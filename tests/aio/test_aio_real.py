"""zraft.aio against real node processes: every call, many concurrent calls on one loop with
no extra thread, cancellation in the middle of calls, sessions with temporary data and
watches as async iterators, listener states."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import zraft.aio as za
from tests.aio.conftest import run
from tests.client.real_cluster import RealCluster
from zraft.errors import (
    AlreadyPresent,
    BadCommand,
    Initialized,
    PeersChanged,
    SessionExpired,
    TooLarge,
    Unreachable,
)
from zraft.ids import PeerId
from zraft.transport.sentinels import NOT_FOUND

pytestmark = [pytest.mark.integration]


async def until(pred: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``pred`` (a coroutine function or a function) until truthy."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = pred()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
        except Exception:
            if time.monotonic() > deadline:
                raise
        assert time.monotonic() < deadline, f"{what} not reached in time"
        await asyncio.sleep(0.02)


def test_every_module_call(real: RealCluster) -> None:
    peers = real.peers

    async def main() -> None:
        pool = za.ConnectionPool(real.cookie)
        leader, members = await za.get_conf(peers[0], pool=pool)
        assert members == sorted(peers)
        follower = next(p for p in peers if p != leader)
        assert await za.write(follower, ["color", "red"], pool=pool) == ("ok", leader)
        assert await za.query(follower, "color", pool=pool) == ("red", leader)
        assert (await za.query(leader, "missing", pool=pool))[0] is NOT_FOUND
        await until(lambda: za.query_local(follower, "color", pool=pool), what="applied")
        assert await za.query_local(follower, "color", pool=pool) == "red"
        info = await za.stat(leader, pool=pool)
        assert info["role"] == "leader" and info["leader"] == leader

        ring = await za.light_session(peers, fail_timeout=1.0, election_timeout=0.2, pool=pool)
        result, ring = await za.write(ring, ["color", "green"], pool=pool)
        value, ring = await za.query(ring, "color", pool=pool)
        assert (result, value, ring.leader) == ("ok", "green", leader)
        ring = await za.light_session(follower, pool=pool)  # asks get_conf
        assert ring.leader == leader and sorted(ring.peers) == sorted(peers)

        with pytest.raises(AlreadyPresent):
            await za.check_exists(peers[0], pool=pool)
        with pytest.raises(AlreadyPresent) as caught:
            await za.create(peers, "dict", pool=pool)
        assert sorted(p for p, _ in caught.value.details["failures"]) == sorted(peers)
        with pytest.raises(Unreachable) as unreachable:
            await za.stat("zraft@127.0.0.1:1", timeout=1, pool=pool)
        assert unreachable.value.code == "noproc"
        with pytest.raises(BadCommand, match="a key must be"):
            await za.write(leader, [1.0, "float key"], pool=pool)
        with pytest.raises(TooLarge, match="max_entry_size"):
            await za.write(leader, ["big", b"x" * (9 * 1024 * 1024)], pool=pool)

        # membership: add a second peer on the third node, then remove it
        extra = f"extra@{PeerId.parse(peers[2]).node}"
        await za.create_peer(extra, "dict", pool=pool)
        assert await za.set_new_conf(peers[0], [*peers, extra], peers,
                                     timeout=20, pool=pool) == sorted([*peers, extra])
        with pytest.raises(PeersChanged):
            await za.set_new_conf(peers[0], peers, peers, pool=pool)
        assert await za.set_new_conf(peers[0], peers, [*peers, extra],
                                     timeout=20, pool=pool) == sorted(peers)
        assert await za.set_new_conf(peers[0], peers, peers, pool=pool) == sorted(peers)

        solo = f"solo@{PeerId.parse(peers[0]).node}"
        await za.create_peer(solo, "dict", pool=pool)
        await za.bootstrap(solo, pool=pool)
        with pytest.raises(Initialized):
            await za.bootstrap(solo, pool=pool)
        assert await za.write(solo, ["alone", True], timeout=10, pool=pool) == ("ok", solo)
        pool.close()
        await pool.wait_closed()

    run(main(), timeout=90)


def test_client_calls(real: RealCluster) -> None:
    async def main() -> None:
        async with za.connect(real.peers[1], cookie=real.cookie,
                              election_timeout=0.2) as client:  # one peer: learns the rest
            assert await client.write(["c", 1]) == "ok"
            assert await client.query("c") == 1
            leader, members = await client.get_conf()
            assert members == sorted(real.peers) and client.leader == leader
            assert (await client.stat())["role"] == "leader"
            assert (await client.stat(real.peers[0]))["leader"] == leader
            assert await client.set_new_conf(real.peers, real.peers) == sorted(real.peers)
            with pytest.raises(AlreadyPresent):
                await client.create(real.peers, "dict")
            await until(lambda: len(client.cell.session.ring) == 3, what="peers learned")

    run(main())


def test_many_concurrent_calls_on_one_loop_start_no_thread(real: RealCluster) -> None:
    async def main() -> None:
        before = threading.active_count()
        seen: list[int] = []
        pool = za.ConnectionPool(real.cookie)
        async with za.connect(real.peers, pool=pool) as client:
            tasks = [asyncio.create_task(client.write([f"many/{i}", i])) for i in range(3000)]
            tasks += [asyncio.create_task(za.write(real.peers[i % 3], [f"mod/{i}", i],
                                                   pool=pool)) for i in range(300)]
            tasks += [asyncio.create_task(client.query(["list", "many/"])) for _ in range(20)]
            while not all(t.done() for t in tasks):
                seen.append(threading.active_count())
                await asyncio.sleep(0.01)
            results = [t.result() for t in tasks]
            assert results[:3000] == ["ok"] * 3000
            assert [r for r, _leader in results[3000:3300]] == ["ok"] * 300
            assert await client.query("many/2999") == 2999
            async with za.Session.start(real.peers, 5.0, pool=pool) as s:
                counts = await asyncio.gather(*(s.write(["incr", "n", 1]) for _ in range(300)))
                assert sorted(counts) == list(range(1, 301))
                seen.append(threading.active_count())
        assert max(seen) == before == threading.active_count()
        assert len(pool._conns) == 3  # one connection per node, shared by every call
        pool.close()
        await pool.wait_closed()

    run(main(), timeout=120)


def test_cancelling_calls_in_flight_on_real_nodes(real: RealCluster) -> None:
    async def main() -> None:
        pool = za.ConnectionPool(real.cookie)
        async with za.connect(real.peers, pool=pool) as client:
            assert await client.write(["warm", 1]) == "ok"
            conn = pool._conns[client.leader.partition("@")[2]]
            tasks = [asyncio.create_task(client.write([f"cx/{i}", i])) for i in range(1000)]
            await until(lambda: conn.requests_sent >= 500, what="requests on the wire")
            for task in tasks[::2]:
                task.cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            kept = done[1::2]
            assert kept == ["ok"] * 500  # the calls not cancelled all completed
            assert conn.alive and conn.in_flight() == 0
            assert pool._conns[client.leader.partition("@")[2]] is conn
            assert await client.query("cx/999") == 999
            # a cancelled write may still have applied (it was sent): never half of one
            for i in range(0, 1000, 50):
                assert await client.query(f"cx/{i}") in (i, NOT_FOUND)
        pool.close()
        await pool.wait_closed()

    run(main())


def test_session_temporary_data_watches_and_states(real: RealCluster) -> None:
    async def main() -> None:
        pool = za.ConnectionPool(real.cookie)
        owner_states: list[za.SessionState] = []
        owner = await za.Session.start(real.peers, 5.0, pool=pool,
                                       listeners=[owner_states.append])
        states = owner.states()
        assert await anext(states) == za.SessionState.CONNECTED
        assert await owner.write(["lock/leader", owner.sid], temporary=True) == "ok"
        async with za.Session.start(real.peers, 5.0, pool=pool) as observer:
            # one-shot watches: a queue, a future, a tag
            queue: asyncio.Queue[za.WatchEvent] = asyncio.Queue()
            assert await observer.query("lock/leader", watch=queue) == owner.sid
            fired: asyncio.Future[za.WatchEvent] = asyncio.get_running_loop().create_future()
            assert await observer.query("lock/leader", watch=fired) == owner.sid
            assert await observer.query("lock/leader", watch="tag-1") == owner.sid
            watch = observer.watch("lock/leader")
            assert await anext(watch) == (owner.sid, None)

            assert await owner.write(["lock/leader", "other"], temporary=True) == "ok"
            event = await asyncio.wait_for(queue.get(), 10)
            assert (event.reason, event.query) == ("data_changed", "lock/leader")
            assert (await asyncio.wait_for(fired, 10)).reason == "data_changed"
            assert (await asyncio.wait_for(observer.events.get(), 10)).ref == "tag-1"
            value, event = await asyncio.wait_for(anext(watch), 10)
            assert value == "other" and event.reason == "data_changed"

            await owner.close()  # its temporary key goes at once, which fires the watch
            value, event = await asyncio.wait_for(anext(watch), 10)
            assert value is NOT_FOUND and event.reason == "data_changed"
            assert [s async for s in states] == [za.SessionState.EXPIRED]
            assert owner_states == [za.SessionState.CONNECTED, za.SessionState.EXPIRED]
            with pytest.raises(SessionExpired):
                await owner.write(["late", 1])
        with pytest.raises(SessionExpired):  # the observer closed: its watch ends
            await asyncio.wait_for(anext(watch), 10)
        pool.close()
        await pool.wait_closed()

    run(main())


def test_temporary_data_goes_when_its_owner_dies(real: RealCluster) -> None:
    async def main() -> None:
        pool = za.ConnectionPool(real.cookie)
        owner = await za.Session.start(real.peers, 1.0, pool=pool)
        assert await owner.write(["eph/dies", "mine"], temporary=True) == "ok"
        async with za.Session.start(real.peers, 10.0, pool=pool) as observer:
            watch = observer.watch("eph/dies")
            assert (await anext(watch)).value == "mine"
            owner._core.stop_self()  # the owner vanishes without closing: no more pings
            value, event = await asyncio.wait_for(anext(watch), 10)
            assert value is NOT_FOUND and event.reason == "data_changed"
        pool.close()
        await pool.wait_closed()

    run(main())


def test_transfer_leader_hands_over_and_reports_the_new_leader(real: RealCluster) -> None:
    peers = real.peers

    async def main() -> None:
        pool = za.ConnectionPool(real.cookie)
        try:
            leader, _ = await za.get_conf(peers[0], pool=pool)
            target = next(p for p in peers if p != leader)
            assert await za.transfer_leader(leader, target, timeout=10, pool=pool) == target
            info = await za.stat(target, pool=pool)
            assert info["role"] == "leader"
            async with za.connect(peers, pool=pool) as client:
                await client.get_conf()  # learns the leader; a free choice names a member
                new_leader = await client.transfer_leader(timeout=10)
                assert new_leader in peers and new_leader != target
        finally:
            pool.close()
            await pool.wait_closed()

    run(main())
