"""zraft.aio across a leader kill (SIGKILL of the leader's node process): no acknowledged
write is lost, calls follow the new leader, a session keeps its temporary key, its
in-flight writes apply exactly once, its watches fire ``leader_changed`` and its
listeners see SUSPENDED then CONNECTED."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import zraft.aio as za
from tests.aio.conftest import run
from tests.client.real_cluster import RealCluster
from zraft.errors import ZRaftError
from zraft.transport.sentinels import NOT_FOUND

pytestmark = [pytest.mark.integration]


def test_no_acknowledged_write_is_lost_when_the_leader_is_killed(real: RealCluster) -> None:
    async def main() -> None:
        pool = za.ConnectionPool(real.cookie)
        acked: dict[str, int] = {}
        failed: list[str] = []
        killed: list[str] = []
        after_kill = 0

        async def writer(w: int) -> None:
            nonlocal after_kill
            for i in range(1_000_000):
                key = f"fo/{w}/{i}"
                try:
                    assert await client.write([key, i], timeout=10) == "ok"
                except ZRaftError as exc:  # not acknowledged: may or may not apply
                    failed.append(f"{key}: {type(exc).__name__}")
                    continue
                acked[key] = i
                if killed:
                    after_kill += 1

        async with za.connect(real.peers, pool=pool, election_timeout=0.2) as client:
            assert await client.write(["fo/warm", 0]) == "ok"
            old = client.leader
            workers = [asyncio.create_task(writer(w)) for w in range(16)]
            deadline = time.monotonic() + 30
            while len(acked) < 300:
                assert time.monotonic() < deadline, "no progress before the kill"
                await asyncio.sleep(0.01)
            real.stop_node(old)  # SIGKILL, writes in flight
            killed.append(old)
            while after_kill < 300:
                assert time.monotonic() < deadline, f"stuck after the kill: {failed[-3:]}"
                await asyncio.sleep(0.01)
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            assert client.leader != old  # the client follows the new leader
            values = await asyncio.gather(*(client.query(k) for k in acked))
            lost = [k for k, v in zip(acked, values, strict=True) if v != acked[k]]
            assert lost == []
            # a light session follows the new leader too
            ring = await za.light_session(real.peers, election_timeout=0.2, pool=pool)
            _result, ring = await za.write(ring, ["fo/after", 1], timeout=10, pool=pool)
            assert ring.leader == client.leader != old
        pool.close()
        await pool.wait_closed()

    run(main(), timeout=90)


def test_a_session_across_a_leader_kill(real: RealCluster) -> None:
    async def main() -> None:
        pool = za.ConnectionPool(real.cookie)
        owner = await za.Session.start(real.peers, 5.0, pool=pool)
        observer = await za.Session.start(real.peers, 5.0, pool=pool)
        states = owner.states()
        assert await anext(states) == za.SessionState.CONNECTED
        assert await owner.write(["eph/owner", owner.sid], temporary=True) == "ok"
        assert await owner.write(["fo/count", 0]) == "ok"
        watch = observer.watch("eph/owner", timeout=10)
        assert await anext(watch) == (owner.sid, None)

        leader = owner.leader
        conn = pool._conns[leader.partition("@")[2]]
        sent = conn.requests_sent
        incrs = [asyncio.create_task(owner.write(["incr", "fo/count", 1], timeout=20))
                 for _ in range(200)]
        while conn.requests_sent < sent + 200:  # on the wire before the kill
            await asyncio.sleep(0.001)
        real.stop_node(leader)

        value, event = await asyncio.wait_for(anext(watch), 20)
        assert event.reason == "leader_changed" and value == owner.sid  # kept its key
        assert sorted(await asyncio.gather(*incrs)) == list(range(1, 201))  # exactly once
        assert await owner.query("fo/count", timeout=10) == 200
        seen = [await asyncio.wait_for(anext(states), 20) for _ in range(2)]
        assert seen == [za.SessionState.SUSPENDED, za.SessionState.CONNECTED]
        assert owner.leader != leader and observer.leader == owner.leader

        await owner.close()
        value, event = await asyncio.wait_for(_next_data_change(watch), 20)
        assert value is NOT_FOUND
        await observer.close()
        pool.close()
        await pool.wait_closed()

    run(main(), timeout=90)


async def _next_data_change(watch: Any) -> Any:
    while True:  # a second leader_changed may come first if the new leader re-settles
        update = await anext(watch)
        if update.event.reason == "data_changed":
            return update
