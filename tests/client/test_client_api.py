"""The cluster API (zraft_client) against fake nodes: results, redirects, retry and deadline
rules, configuration changes, create."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.client.fake_node import FakeCluster
from zraft.client import api
from zraft.client.connection import ConnectionPool
from zraft.errors import (
    AllFailed,
    AlreadyPresent,
    BackendError,
    LeaderChanged,
    NewerExists,
    PeersChanged,
    Timeout,
    Unreachable,
    ZRaftError,
)
from zraft.transport.sentinels import NOT_FOUND


def test_write_then_query_at_the_leader(cluster: FakeCluster, pool: ConnectionPool) -> None:
    leader = cluster.leader_id()
    assert api.write(leader, ["k", "v"], pool=pool) == ("ok", leader)
    assert api.query(leader, "k", pool=pool) == ("v", leader)
    value, _ = api.query(leader, "missing", pool=pool)
    assert value is NOT_FOUND


def test_write_at_a_follower_follows_the_redirect(
    cluster: FakeCluster, pool: ConnectionPool
) -> None:
    result, leader = api.write(cluster.followers()[0], ["k", 1], pool=pool)
    assert (result, leader) == ("ok", cluster.leader_id())


def test_the_command_is_packed_on_the_client_side(fake: FakeCluster, pool: ConnectionPool) -> None:
    api.write(fake.peer(1), ["k", 1], pool=pool)
    (_, _, args), = fake.ops("propose")
    assert args[0] == "p1" and args[2] is None
    assert args[1] == api.write_command(["k", 1])


def test_loading_is_retried_with_backoff_not_a_busy_loop(
    fake: FakeCluster, pool: ConnectionPool
) -> None:
    started = time.monotonic()
    fake.script = lambda peer, op, args: ("reply", "loading", {"message": "loading"})
    with pytest.raises(Timeout):
        api.write(fake.peer(1), ["k", 1], timeout=0.5, pool=pool)
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 1.5
    # exponential backoff: far fewer tries than a busy loop would make in 0.5 s
    assert 3 <= len(fake.ops("propose")) < 30


def test_loading_then_ready(fake: FakeCluster, pool: ConnectionPool) -> None:
    answers = iter([("reply", "loading", {}), ("reply", "loading", {})])
    fake.script = lambda peer, op, args: next(answers, None)
    assert api.write(fake.peer(1), ["k", 1], pool=pool) == ("ok", fake.peer(1))


def test_a_redirect_never_extends_the_deadline(fake: FakeCluster, pool: ConnectionPool) -> None:
    # p2 answers slowly and redirects to p3, p3 slowly redirects back to p2: a ping-pong.
    fake.leader = None
    fake.leader_hint = {fake.peer(2): fake.peer(3), fake.peer(3): fake.peer(2)}
    fake.script = lambda peer, op, args: ("delay", 0.15)
    started = time.monotonic()
    with pytest.raises(Timeout):
        api.write(fake.peer(2), ["k", 1], timeout=0.5, pool=pool)
    assert time.monotonic() - started < 1.5  # each redirect restarting the clock never ends
    assert len(fake.ops("propose")) >= 3  # it did follow redirects meanwhile


def test_leader_unknown_waits_then_succeeds(fake: FakeCluster, pool: ConnectionPool) -> None:
    fake.leader = None
    threading.Timer(0.2, lambda: setattr(fake, "leader", fake.peer(3))).start()
    assert api.write(fake.peer(1), ["k", 1], timeout=3, pool=pool) == ("ok", fake.peer(3))


def test_unreachable_peer_is_noproc(cluster: FakeCluster, pool: ConnectionPool) -> None:
    cluster.stop_node(cluster.peer(2))
    with pytest.raises(Unreachable):
        api.query(cluster.peer(2), "k", timeout=2, pool=pool)


def test_redirect_to_a_dead_leader_falls_back(fake: FakeCluster, pool: ConnectionPool) -> None:
    fake.stop_node(fake.peer(1))  # p2 still names p1 for a while
    threading.Timer(0.3, lambda: setattr(fake, "leader", fake.peer(2))).start()
    assert api.write(fake.peer(2), ["k", 1], timeout=3, pool=pool) == ("ok", fake.peer(2))


def test_a_call_timeout_is_timeout_not_noproc(fake: FakeCluster, pool: ConnectionPool) -> None:
    fake.script = lambda peer, op, args: "drop"
    with pytest.raises(Timeout):
        api.query(fake.peer(1), "k", timeout=0.3, pool=pool)


def test_server_errors_are_typed(fake: FakeCluster, pool: ConnectionPool) -> None:
    fake.script = lambda peer, op, args: ("reply", "backend_error", {"message": "boom"})
    with pytest.raises(BackendError, match="boom"):
        api.write(fake.peer(1), ["k", 1], pool=pool)


def test_a_request_past_the_frame_limit_is_too_large_and_never_sent(
    fake: FakeCluster, pool: ConnectionPool
) -> None:
    """A 70 MB value says "too large" at once, not Unreachable after the node closed the
    connection; the connection stays up for the next request."""
    from zraft.errors import TooLarge
    from zraft.transport.framing import DEFAULT_MAX_FRAME_SIZE

    big = b"x" * (DEFAULT_MAX_FRAME_SIZE + 1)
    with pytest.raises(TooLarge, match="frame limit") as info:
        api.write(fake.peer(1), ["k", big], timeout=5, pool=pool)
    assert info.value.details["size"] > DEFAULT_MAX_FRAME_SIZE
    del big
    assert fake.ops("propose") == []
    assert api.write(fake.peer(1), ["k", 1], timeout=3, pool=pool) == ("ok", fake.peer(1))


def test_too_large_and_bad_request_replies_are_typed(
    fake: FakeCluster, pool: ConnectionPool
) -> None:
    from zraft.errors import BadRequest, TooLarge

    fake.script = lambda peer, op, args: ("reply", "too_large", {"message": "9 > 8"})
    with pytest.raises(TooLarge, match="9 > 8"):
        api.write(fake.peer(1), ["k", 1], pool=pool)
    fake.script = lambda peer, op, args: ("reply", "bad_request", {"message": "propose: sid"})
    with pytest.raises(BadRequest, match="propose: sid"):
        api.write(fake.peer(1), ["k", 1], pool=pool)


# -- light session targets --------------------------------------------------------------


def test_light_session_from_one_peer_asks_the_conf(
    cluster: FakeCluster, pool: ConnectionPool
) -> None:
    s = api.light_session(cluster.followers()[-1], pool=pool)
    assert s.leader == cluster.leader_id()
    assert s.peers == sorted(cluster.peers)


def test_light_session_target_returns_the_new_session(
    fake: FakeCluster, pool: ConnectionPool
) -> None:
    s = api.light_session([fake.peer(3), fake.peer(1), fake.peer(2)])
    assert s.leader == fake.peer(3)
    result, s2 = api.write(s, ["k", 1], pool=pool)
    assert result == "ok" and s2.leader == fake.peer(1)
    assert s.leader == fake.peer(3)  # the argument is unchanged
    value, s3 = api.query(s2, "k", pool=pool)
    assert value == 1 and s3.leader == fake.peer(1)


def test_light_session_fails_over_a_dead_peer(fake: FakeCluster, pool: ConnectionPool) -> None:
    fake.stop_node(fake.peer(1))
    fake.leader = fake.peer(2)
    s = api.light_session(fake.peers)
    result, s2 = api.write(s, ["k", 1], pool=pool)
    assert result == "ok" and s2.leader == fake.peer(2)


def test_light_session_all_failed(fake: FakeCluster, pool: ConnectionPool) -> None:
    for peer in fake.peers:
        fake.stop_node(peer)
    with pytest.raises(AllFailed):
        api.write(api.light_session(fake.peers), ["k", 1], timeout=3, pool=pool)


def test_light_session_no_leader_yet_waits_for_an_election(
    fake: FakeCluster, pool: ConnectionPool
) -> None:
    fake.leader = None
    threading.Timer(0.3, lambda: setattr(fake, "leader", fake.peer(2))).start()
    s = api.light_session(fake.peers, election_timeout=0.1)
    started = time.monotonic()
    result, s2 = api.write(s, ["k", 1], timeout=3, pool=pool)
    assert result == "ok" and s2.leader == fake.peer(2)
    assert time.monotonic() - started < 2
    assert len(fake.ops("propose")) < 40  # waited, did not spin


# -- configuration -----------------------------------------------------------------------


def test_get_conf_from_a_follower(cluster: FakeCluster, pool: ConnectionPool) -> None:
    expected = (cluster.leader_id(), sorted(cluster.peers))
    assert api.get_conf(cluster.followers()[0], pool=pool) == expected


def test_set_new_conf_and_idempotence(fake: FakeCluster, pool: ConnectionPool) -> None:
    new = fake.peers[:2]
    assert api.set_new_conf(fake.peer(2), new, fake.peers, pool=pool) == sorted(new)
    assert api.get_conf(fake.peer(1), pool=pool)[1] == sorted(new)
    # already applied: ok again without a second change
    assert api.set_new_conf(fake.peer(1), new, fake.peers, pool=pool) == sorted(new)
    assert len(fake.ops("set_conf")) == 1


def test_set_new_conf_peers_changed(fake: FakeCluster, pool: ConnectionPool) -> None:
    with pytest.raises(PeersChanged):
        api.set_new_conf(fake.peer(1), fake.peers[:1], fake.peers[:2], pool=pool)
    assert fake.ops("set_conf") == []


def test_set_new_conf_errors(fake: FakeCluster, pool: ConnectionPool) -> None:
    fake.script = lambda peer, op, args: (
        ("reply", "newer_exists", {"message": "x"}) if op == "set_conf" else None
    )
    with pytest.raises(NewerExists):
        api.set_new_conf(fake.peer(1), fake.peers[:2], fake.peers, pool=pool)
    fake.script = lambda peer, op, args: (
        ("reply", "not_leader", {"leader": None}) if op == "set_conf" else None
    )
    with pytest.raises(LeaderChanged):
        api.set_new_conf(fake.peer(1), fake.peers[:2], fake.peers, pool=pool)


def test_get_conf_waits_for_a_committed_conf(fake: FakeCluster, pool: ConnectionPool) -> None:
    answers = iter([("reply", "ok", [0, []]), ("reply", "retry", {})])
    fake.script = lambda peer, op, args: next(answers, None)
    assert api.get_conf(fake.peer(1), pool=pool)[0] == fake.peer(1)


# -- create, stat ---------------------------------------------------------------------------


def test_create_checks_starts_bootstraps_and_configures(
    fake: FakeCluster, pool: ConnectionPool
) -> None:
    assert api.create(fake.peers, "dict", pool=pool) == sorted(fake.peers)
    ops = [(peer, op) for peer, op, _ in fake.requests if op != "get_conf"]
    checks = [(p, "check_exists") for p in fake.peers]
    starts = [(p, "create_peer") for p in fake.peers]
    assert ops[:6] == checks + starts
    assert ops[6] == (fake.peer(1), "bootstrap")


def test_create_asks_again_when_the_young_leader_changed(
    fake: FakeCluster, pool: ConnectionPool
) -> None:
    """Under load a new group may elect again during its first configuration change:
    create must finish the group, not fail with half of it made (seen at 122 groups)."""
    refused: list[str] = []

    def script(peer: str, op: str, args: list[Any]) -> Any:
        if op == "set_conf" and not refused:
            refused.append(peer)
            return ("reply", "leader_changed", {"message": "a new leader"})
        return None

    fake.conf = [fake.peer(1)]  # as bootstrap leaves it
    fake.script = script
    assert api.create(fake.peers, "dict", pool=pool) == sorted(fake.peers)
    assert refused and len(fake.ops("set_conf")) == 2 and fake.conf == sorted(fake.peers)


def test_create_reports_every_existing_peer(fake: FakeCluster, pool: ConnectionPool) -> None:
    fake.existing = {fake.peer(2), fake.peer(3)}
    with pytest.raises(AlreadyPresent) as info:
        api.create(fake.peers, "dict", pool=pool)
    assert [p for p, _ in info.value.details["failures"]] == [fake.peer(2), fake.peer(3)]
    assert fake.ops("create_peer") == []


def test_stat(cluster: FakeCluster, pool: ConnectionPool) -> None:
    assert api.stat(cluster.followers()[0], pool=pool)["role"] == "follower"
    assert api.stat(cluster.leader_id(), pool=pool)["role"] == "leader"


def test_check_exists(fake: FakeCluster, pool: ConnectionPool) -> None:
    api.check_exists(fake.peer(1), pool=pool)
    fake.existing.add(fake.peer(1))
    with pytest.raises(AlreadyPresent):
        api.check_exists(fake.peer(1), pool=pool)


def test_wrong_cookie_is_unreachable(cluster: FakeCluster) -> None:
    bad = ConnectionPool(b"wrong")
    try:
        with pytest.raises(Unreachable):
            api.query(cluster.peer(1), "k", timeout=2, pool=bad)
    finally:
        bad.close()


def test_backend_error_detail_in_the_status(fake: FakeCluster, pool: ConnectionPool) -> None:
    fake.script = lambda peer, op, args: ("reply", "backend_error: KeyError", {"message": "x"})
    with pytest.raises(BackendError, match="KeyError"):
        api.write(fake.peer(1), ["k", 1], pool=pool)
    fake.script = lambda peer, op, args: ("reply", "strange_code", {"message": "y"})
    with pytest.raises(ZRaftError) as info:
        api.write(fake.peer(1), ["k", 1], pool=pool)
    assert info.value.code == "strange_code"


def test_replaced_entry_is_retried(fake: FakeCluster, pool: ConnectionPool) -> None:
    answers = iter([("reply", "leader_changed", {"message": "entry replaced"})])
    fake.script = lambda peer, op, args: next(answers, None)
    assert api.write(fake.peer(1), ["k", 1], pool=pool) == ("ok", fake.peer(1))
    answers2 = iter([("reply", "leader_changed", {"message": "entry replaced"})])
    fake.script = lambda peer, op, args: next(answers2, None)
    result, s = api.write(api.light_session(fake.peers), ["k", 2], pool=pool)
    assert result == "ok" and s.leader == fake.peer(1)
