"""The Client actor and connections: pipelining, futures completed off the actor thread,
leader tracking, reconnect on demand."""

from __future__ import annotations

import threading
import time

import pykka
import pytest

from tests.client.fake_node import FakeCluster
from zraft.client.client_actor import Client, ClientProxy, connect
from zraft.client.connection import ConnectionPool
from zraft.errors import AllFailed, PeersChanged


def test_write_query_through_futures(cluster: FakeCluster, client: ClientProxy) -> None:
    assert client.write(["a", 1]).get(timeout=5) == "ok"
    assert client.query("a").get(timeout=5) == 1
    assert client.write_sync(["a", 2]) == "ok"
    assert client.query_sync("a") == 2


def test_many_calls_in_flight_on_one_connection(fake: FakeCluster, client: ClientProxy) -> None:
    # every write takes 0.3 s at the fake node: 100 of them serialised would take 30 s
    fake.script = lambda peer, op, args: ("delay", 0.3) if op == "propose" else None
    started = time.monotonic()
    futures = [client.write([f"k{i}", i]) for i in range(100)]
    assert pykka.get_all(futures, timeout=10) == ["ok"] * 100
    assert time.monotonic() - started < 3
    assert len(fake.node_of(fake.peer(1)).conns) == 1
    assert sorted(fake.data) == sorted(f"k{i}" for i in range(100))


def test_the_actor_is_not_blocked_by_slow_calls(fake: FakeCluster, client: ClientProxy) -> None:
    fake.data["fast"] = "yes"
    fake.script = lambda peer, op, args: ("delay", 1.0) if op == "propose" else None
    slow = [client.write(["slow", i]) for i in range(10)]
    assert client.query("fast").get(timeout=5) == "yes"
    for future in slow:  # the query overtook every slow write: nothing waited for them
        with pytest.raises(pykka.Timeout):
            future.get(timeout=0)
    assert pykka.get_all(slow, timeout=10) == ["ok"] * 10


def test_leader_tracking_follows_redirects_once(fake: FakeCluster) -> None:
    ref = Client.start([fake.peer(2), fake.peer(1), fake.peer(3)], cookie=fake.cookie)
    client = ref.proxy()
    assert client.leader() == fake.peer(2)
    assert client.write_sync(["k", 1]) == "ok"
    assert client.leader() == fake.peer(1)
    before = len(fake.ops("propose"))
    client.write_sync(["k", 2])
    assert len(fake.ops("propose")) == before + 1  # no more redirects


def test_failover_when_the_leader_dies(fake: FakeCluster, client: ClientProxy) -> None:
    assert client.write_sync(["k", 1]) == "ok"
    fake.stop_node(fake.peer(1))
    fake.leader = fake.peer(3)
    assert client.write_sync(["k", 2], timeout=5) == "ok"
    assert client.leader() == fake.peer(3)


def test_all_failed(fake: FakeCluster, client: ClientProxy) -> None:
    for peer in fake.peers:
        fake.stop_node(peer)
    with pytest.raises(AllFailed):
        client.write_sync(["k", 1], timeout=3)


def test_reconnect_on_demand(fake: FakeCluster, client: ClientProxy) -> None:
    assert client.write_sync(["k", 1]) == "ok"
    fake.stop_node(fake.peer(1))
    fake.start_node(fake.peer(1))
    # the first call after the restart may fail over; eventually the leader is used again
    assert client.write_sync(["k", 2], timeout=5) == "ok"
    assert fake.data["k"] == 2


def test_get_conf_set_new_conf_stat(fake: FakeCluster, client: ClientProxy) -> None:
    assert client.get_conf_sync() == (fake.peer(1), sorted(fake.peers))
    assert client.set_new_conf_sync(fake.peers[:2], fake.peers) == sorted(fake.peers[:2])
    with pytest.raises(PeersChanged):
        client.set_new_conf_sync(fake.peers[:1], fake.peers)
    assert client.stat_sync()["role"] == "leader"
    assert client.stat_sync(fake.peer(2))["role"] == "follower"


def test_connect_context_manager(cluster: FakeCluster) -> None:
    with connect(cluster.peers, cookie=cluster.cookie) as client:
        assert client.write_sync(["x", 1]) == "ok"
        ref = client.actor_ref
    assert not ref.is_alive()


def test_connection_matches_out_of_order_replies(fake: FakeCluster) -> None:
    # the first requests are answered last: each callback must get its own reply
    delays = {f"k{i}": 0.05 * (10 - i) for i in range(10)}
    fake.data.update({k: k.upper() for k in delays})
    fake.script = lambda peer, op, args: ("delay", delays[args[1]]) if op == "query" else None
    pool = ConnectionPool(fake.cookie)
    results: dict[str, object] = {}
    done = threading.Event()

    def callback_for(key: str):
        def callback(status: str, payload: object) -> None:
            results[key] = (status, payload)
            if len(results) == len(delays):
                done.set()
        return callback

    try:
        for key in delays:
            pool.request(fake.peer(1), "query", ["p1", key, None, None], callback_for(key))
        assert done.wait(5)
        assert results == {k: ("ok", k.upper()) for k in delays}
    finally:
        pool.close()


def test_a_broken_connection_fails_pending_requests_once(fake: FakeCluster) -> None:
    fake.script = lambda peer, op, args: "drop"
    pool = ConnectionPool(fake.cookie)
    got: list[tuple[str, object]] = []
    done = threading.Event()

    def callback(status: str, payload: object) -> None:
        got.append((status, payload))
        done.set()

    try:
        pool.request(fake.peer(1), "query", ["p1", "k", None, None], callback)
        deadline = time.monotonic() + 5
        while not fake.ops("query") and time.monotonic() < deadline:
            time.sleep(0.01)
        fake.stop_node(fake.peer(1))
        assert done.wait(5)
        assert len(got) == 1 and got[0][0] == "noproc"
    finally:
        pool.close()


def test_one_peer_is_enough_the_ring_learns_the_rest(fake: FakeCluster) -> None:
    client = Client.start(fake.peer(3), cookie=fake.cookie).proxy()
    ring = pykka.ActorProxy(actor_ref=client.actor_ref).cell
    deadline = time.monotonic() + 5
    # the leader is known from p3's redirect before get_conf has taught the ring p2: wait
    # for both (stopping p1 in between left a ring of p1 and p3 only, now and then)
    while client.leader() != fake.peer(1) or fake.peer(2) not in ring.get().session.peers:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    fake.stop_node(fake.peer(1))  # p2 was never named by the caller, yet it takes over
    fake.stop_node(fake.peer(3))
    fake.leader = fake.peer(2)
    assert client.write_sync(["k", 1], timeout=5) == "ok"
    assert client.leader() == fake.peer(2)
