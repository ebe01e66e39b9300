"""The cluster-generic client scenarios, re-run against real node processes.

The tests below are the ones written against the ``cluster`` fixture contract; this module
overrides ``cluster`` with a RealCluster. Skipped until ``python -m zraft.node`` exists.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator

import pykka
import pytest

from tests.client.real_cluster import RealCluster, node_available
from tests.client.test_client_actor import (  # noqa: F401 - collected here with real nodes
    test_connect_context_manager,
    test_write_query_through_futures,
)
from tests.client.test_client_api import (  # noqa: F401
    test_get_conf_from_a_follower,
    test_light_session_from_one_peer_asks_the_conf,
    test_stat,
    test_unreachable_peer_is_noproc,
    test_write_at_a_follower_follows_the_redirect,
    test_write_then_query_at_the_leader,
    test_wrong_cookie_is_unreachable,
)
from tests.client.test_client_cli import test_json_output, test_write_then_read  # noqa: F401
from tests.client.test_client_session import (  # noqa: F401
    test_connect_write_query,
    test_temporary_data_goes_with_the_session,
)
from zraft.client.client_actor import connect
from zraft.client.session import Session
from zraft.client.watcher import SessionState, WatchEvent
from zraft.transport.sentinels import NOT_FOUND

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not node_available(), reason="the node process is not built yet"),
]


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    real = RealCluster(tmp_path_factory.mktemp("real-cluster"))
    try:
        yield real
    finally:
        real.close()


@pytest.fixture
def cluster(real_cluster: RealCluster) -> Iterator[RealCluster]:
    """One cluster per module; nodes a test stopped are restarted after it."""
    yield real_cluster
    real_cluster.restart_stopped()


# -- scenarios that need real Raft (SPEC 10.3) -----------------------------------------------


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_real_pipelined_client_writes(cluster: RealCluster) -> None:
    with connect(cluster.peers, cookie=cluster.cookie) as client:
        futures = [client.write([f"pipe{i}", i]) for i in range(300)]
        assert pykka.get_all(futures, timeout=30) == ["ok"] * 300
        assert client.query_sync(["get", "pipe299"]) == 299


def test_real_session_failover_and_leader_changed_watch(
    cluster: RealCluster, sessions: Callable[..., Session]
) -> None:
    s = sessions(timeout=10.0, election_timeout=0.2)
    assert s.write_sync(["f1", "v1"]) == "ok"
    assert s.query_sync("fw", watch="waite3") is NOT_FOUND
    w = s.write(["f3", 3], timeout=10)
    r = s.query("f1", timeout=10)
    cluster.stop_node(cluster.leader_id())
    assert w.get(timeout=15) == "ok"
    assert r.get(timeout=15) == "v1"
    event = s.events.get(timeout=15)
    assert event.ref == "waite3" and event.reason == "leader_changed"
    assert s.query_sync("f3", timeout=10) == 3


def test_real_expiry_deletes_temporary_data(
    cluster: RealCluster, sessions: Callable[..., Session]
) -> None:
    owner = Session.start(cluster.peers, 1.0, cookie=cluster.cookie)
    watcher = sessions(timeout=10.0)
    assert owner.write_sync(["eph2", "mine"], temporary=True) == "ok"
    events: queue.Queue[WatchEvent] = queue.Queue()
    assert watcher.query_sync("eph2", watch=events) == "mine"
    owner.actor_ref.stop()  # the owner dies without closing: no more pings
    owner.watcher_ref.stop()
    assert events.get(timeout=10).reason == "data_changed"
    assert watcher.query_sync("eph2") is NOT_FOUND


def test_real_session_first_survives_a_period_without_quorum(cluster: RealCluster) -> None:
    """SPEC 10.3 session_first: the session starts while only one node runs."""
    with connect(cluster.peers, cookie=cluster.cookie) as client:
        assert client.write_sync(["first", "v1"]) == "ok"
    survivor = cluster.leader_id()
    for peer in cluster.peers:
        if peer != survivor:
            cluster.stop_node(peer)
    states: list[SessionState] = []
    s = Session.start(cluster.peers, 10.0, cookie=cluster.cookie, wait=False,
                      listeners=[states.append])
    try:
        future = s.query(["get", "first"], timeout=15)
        cluster.restart_stopped()
        assert future.get(timeout=20) == "v1"
        _wait(lambda: SessionState.CONNECTED in states)
    finally:
        s.stop()


def test_real_listener_states_across_a_leader_failure(
    cluster: RealCluster, sessions: Callable[..., Session]
) -> None:
    states: list[SessionState] = []
    s = sessions(timeout=2.0, listeners=[states.append], election_timeout=0.2)
    _wait(lambda: states == [SessionState.CONNECTED])
    cluster.stop_node(cluster.leader_id())
    _wait(lambda: len(states) >= 3 and states[-1] == SessionState.CONNECTED, timeout=15)
    assert states[:2] == [SessionState.CONNECTED, SessionState.SUSPENDED]
    assert s.write_sync(["after", 1], timeout=10) == "ok"


def test_real_refused_keys_are_bad_command_with_the_reason(cluster: RealCluster) -> None:
    """1, True and 1.0 are not one key: True and 1.0 are refused by every replica with a
    reason, on plain writes, session writes and queries; key 1 is untouched."""
    from zraft.client import api
    from zraft.errors import BackendError, BadCommand

    leader = cluster.leader_id()
    assert api.write(leader, [1, "int"], pool=cluster.pool)[0] == "ok"
    for alias in (True, 1.0):
        with pytest.raises(BadCommand, match="a key must be str, bytes, int") as caught:
            api.write(leader, [alias, "alias"], pool=cluster.pool)
        assert isinstance(caught.value, BackendError) and caught.value.code == "bad_command"
        with pytest.raises(BadCommand):
            api.query(leader, ["get", alias], pool=cluster.pool)
    s = Session.start(cluster.peers, 10.0, cookie=cluster.cookie)
    try:
        with pytest.raises(BadCommand, match="not float"):
            s.write_sync([0.5, "x"], temporary=True)
        assert s.write_sync(["after", "refusal"]) == "ok"  # the session goes on
    finally:
        s.stop()
    for peer in cluster.peers:
        _wait(lambda p=peer: api.query_local(p, 1, pool=cluster.pool) == "int")


def test_real_session_learns_the_clusters_election_timeout(cluster: RealCluster) -> None:
    s = Session.start(cluster.peers, 10.0, cookie=cluster.cookie)
    try:
        ring = pykka.ActorProxy(actor_ref=s.actor_ref).ring.get(timeout=5)
        # the nodes run election_timeout = 200 ms: wait 2 ET for a leader, fail after 4 ET
        assert (ring.election_timeout, ring.fail_timeout) == pytest.approx((0.4, 0.8))
    finally:
        s.stop()
