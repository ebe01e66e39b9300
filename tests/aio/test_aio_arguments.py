"""zraft.aio checks its arguments as the blocking client does, before anything is sent,
and shares its handshake checks; against in-process fake nodes (fast)."""

from __future__ import annotations

import asyncio
import math
import socket
from typing import Any

import pytest

import zraft.aio as za
from tests.aio.conftest import run
from tests.client.fake_node import FakeCluster
from zraft.aio.connection import client_handshake
from zraft.client.light_session import LightSession
from zraft.errors import NoCookie, NoPeers, Unreachable
from zraft.transport.errors import HandshakeError

BAD = [math.inf, -math.inf, math.nan, 0, 0.0, -1, 86_400.5, 10**400, True, "5"]


def _calls(peer: str, peers: list[str], pool: za.ConnectionPool) -> dict[str, Any]:
    light = LightSession.new(peers)
    return {
        "write": lambda t: za.write(peer, ["k", "v"], t, pool=pool),
        "write(light)": lambda t: za.write(light, ["k", "v"], timeout=t, pool=pool),
        "query": lambda t: za.query(peer, "k", t, pool=pool),
        "query_local": lambda t: za.query_local(peer, "k", t, pool=pool),
        "get_conf": lambda t: za.get_conf(peer, t, pool=pool),
        "set_new_conf": lambda t: za.set_new_conf(peer, peers, peers, t, pool=pool),
        "check_exists": lambda t: za.check_exists(peer, t, pool=pool),
        "create_peer": lambda t: za.create_peer(peer, "dict", t, pool=pool),
        "bootstrap": lambda t: za.bootstrap(peer, t, pool=pool),
        "stat": lambda t: za.stat(peer, t, pool=pool),
        "create": lambda t: za.create(peers, "dict", t, pool=pool),
        "light_session": lambda t: za.light_session(peer, timeout=t, pool=pool),
    }


@pytest.mark.parametrize("bad", BAD, ids=lambda v: repr(v)[:12])
def test_every_call_refuses_bad_timeouts_before_sending(fake: FakeCluster, bad: Any) -> None:
    async def main() -> None:
        pool = za.ConnectionPool(fake.cookie)
        for name, call in _calls(fake.leader_id(), fake.peers, pool).items():
            with pytest.raises(ValueError, match="timeout"):
                await call(bad)
            assert fake.requests == [], name
        async with za.connect(fake.peers, cookie=fake.cookie) as client:
            for call in (client.write(["k", 1], bad), client.query("k", bad),
                         client.get_conf(bad), client.stat(None, bad),
                         client.set_new_conf(fake.peers, fake.peers, bad)):
                with pytest.raises(ValueError, match="timeout"):
                    await call
        with pytest.raises(ValueError, match="timeout"):
            za.Client(fake.peers, cookie=fake.cookie, timeout=bad)
        for option in ("session_timeout", "fail_timeout", "election_timeout"):
            kw = {"session_timeout": 5.0, option: bad}
            with pytest.raises(ValueError, match=option):
                za.Session.start(fake.peers, kw.pop("session_timeout"), cookie=fake.cookie,
                                 **kw)
        assert fake.requests == []
        assert pool._conns == {}  # not even a connection was made

    run(main())


def test_session_calls_refuse_bad_timeouts(fake: FakeCluster) -> None:
    async def main() -> None:
        async with za.Session.start(fake.peers, 5.0, cookie=fake.cookie) as s:
            before = len(fake.requests)
            for bad in (math.inf, 0, "1"):
                with pytest.raises(ValueError, match="timeout"):
                    await s.write(["k", 1], timeout=bad)
                with pytest.raises(ValueError, match="timeout"):
                    await s.query("k", timeout=bad)
                with pytest.raises(ValueError, match="timeout"):
                    s.watch("k", timeout=bad)
            assert len(fake.requests) == before  # nothing was sent
            assert await s.write(["k", 1]) == "ok"

    run(main())


def test_no_peers_and_no_cookie(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZRAFT_COOKIE", raising=False)
    monkeypatch.delenv("ZRAFT_COOKIE_FILE", raising=False)
    monkeypatch.setattr("zraft.aio.api._cookie", None)
    monkeypatch.setattr("zraft.client.api._default_pool", None)

    async def main() -> None:
        with pytest.raises(NoCookie, match="no cluster cookie"):
            await za.write("p1@127.0.0.1:1", ["k", 1])
        with pytest.raises(NoPeers):
            await za.light_session([])
        with pytest.raises(NoPeers):
            za.Session.start([], 5.0, cookie="c")
        with pytest.raises(NoPeers):
            await za.create([], "dict", pool=za.ConnectionPool("c"))

    run(main())


def test_configure_sets_the_default_pool_of_each_loop(fake: FakeCluster,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("zraft.aio.api._cookie", None)
    za.configure(cookie=fake.cookie)

    async def main() -> za.ConnectionPool:
        assert (await za.write(fake.leader_id(), ["k", "v"]))[0] == "ok"
        async with za.Session.start(fake.peers, 5.0) as s:  # the default pool too
            assert await s.query("k") == "v"
        return za.default_pool()

    first = run(main())
    second = run(main())
    assert first is not second and first.cookie == second.cookie == fake.cookie


def test_a_pool_refuses_another_loop(fake: FakeCluster) -> None:
    async def make() -> za.ConnectionPool:
        return za.ConnectionPool(fake.cookie)

    pool = run(make())

    async def use() -> None:
        with pytest.raises(Unreachable, match="another event loop"):
            await za.write(fake.leader_id(), ["k", 1], pool=pool)

    run(use())


def test_wrong_cookie_is_unreachable(fake: FakeCluster) -> None:
    async def main() -> None:
        pool = za.ConnectionPool(b"not-the-cookie")
        with pytest.raises(Unreachable, match="refused"):
            await za.stat(fake.leader_id(), 2.0, pool=pool)

    run(main())


def test_handshake_refuses_a_server_that_does_not_know_the_cookie() -> None:
    """The asyncio handshake runs the blocking client's checks (shared pure steps)."""
    from zraft.transport.handshake import server_handshake

    async def main() -> None:
        server, client = socket.socketpair()
        loop = asyncio.get_running_loop()
        served = loop.run_in_executor(None, _serve_refusing, server, server_handshake)
        reader, writer = await asyncio.open_connection(sock=client)
        with pytest.raises(HandshakeError, match="server refused us"):
            await client_handshake(reader, writer, b"ours", "c1", 2.0)
        writer.close()
        await served

    run(main())


def _serve_refusing(sock: socket.socket, server_handshake: Any) -> None:
    with sock, pytest.raises(HandshakeError):
        server_handshake(sock, b"theirs", "node-s", 2.0)


def test_handshake_times_out_against_a_silent_server() -> None:
    async def main() -> None:
        server, client = socket.socketpair()
        with server:
            reader, writer = await asyncio.open_connection(sock=client)
            with pytest.raises(HandshakeError, match="timed out"):
                await client_handshake(reader, writer, b"c", "c1", 0.2)
            writer.close()

    run(main())
