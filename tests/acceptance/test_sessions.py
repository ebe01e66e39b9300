"""zraft_lib's session_zraft_client (SPEC 10.3) on real node processes, plus the watch rule
"a leader change fires every armed watch with leader_changed".

Watches are armed with tags (``watch="waite1"``), so their events arrive on
``session.events`` as ``WatchEvent(ref=tag, reason, query)``, as the Erlang test receives
``{swatch_trigger, waite1, change}``.
"""

from __future__ import annotations

import queue
import time

import pykka
import pytest

from tests.acceptance.harness import ET, wait_for
from zraft.client import api
from zraft.client.session import Session
from zraft.client.watcher import SessionState, WatchEvent
from zraft.transport.sentinels import NOT_FOUND

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _event(s: Session, timeout: float = 10.0) -> tuple[object, str]:
    event = s.events.get(timeout=timeout)
    return event.ref, event.reason


def test_sessions_scenario(make_cluster) -> None:
    acc = make_cluster()
    s1 = acc.session(acc.peer(1), 10.0)  # one peer each: they learn the rest from get_conf
    s2 = acc.session(acc.peer(2), 10.0)
    assert s1.write_sync([1, "v1"]) == "ok"
    assert s2.query_sync(1) == "v1"
    assert s2.query_sync(2, watch="waite1") is NOT_FOUND

    assert s1.write_sync([2, "v2"], temporary=True) == "ok"
    assert _event(s2) == ("waite1", "data_changed")

    assert s2.query_sync(2, watch="waite2") == "v2"
    s1.stop()  # closing the session deletes its temporary key at once
    assert _event(s2) == ("waite2", "data_changed")
    assert s2.query_sync(2, watch="waite3") is NOT_FOUND

    # a write and a read in flight while the leader dies: both answered by the new leader
    leader = acc.leader()
    write = s2.write([3, 3], timeout=10)
    read = s2.query(1, timeout=10)
    acc.kill(leader)
    assert write.get(timeout=15) == "ok"
    assert read.get(timeout=15) == "v1"
    assert _event(s2) == ("waite3", "leader_changed")
    assert s2.query_sync(3, timeout=10) == 3
    assert acc.leader() != leader
    assert s2.state == SessionState.CONNECTED


def test_session_first(make_cluster) -> None:
    """A session started while only one node runs survives the time without a quorum
    (redirects, pending, ring resets) and answers once the others are back."""
    acc = make_cluster()
    assert acc.session(session_timeout=10.0).write_sync([1, "v1"]) == "ok"
    for n in acc.cluster.nodes:
        acc.cluster.kill(n)
    acc.restart(acc.peer(1))
    states: list[SessionState] = []
    started = time.monotonic()
    s = acc.session(session_timeout=10.0, wait=False, listeners=[states.append])
    answer = s.query(1, timeout=20)
    # no quorum for a while (several election timeouts): the session must just wait
    wait_for(lambda: time.monotonic() - started > 6 * ET, 5, "a period without quorum")
    with pytest.raises(pykka.Timeout):
        answer.get(timeout=0)  # still waiting, not failed
    assert s.state == SessionState.SUSPENDED
    acc.restart(acc.peer(2))
    acc.restart(acc.peer(3))
    assert answer.get(timeout=25) == "v1"
    wait_for(lambda: SessionState.CONNECTED in states, 10, "CONNECTED")
    assert s.write_sync([4, "after"], timeout=10) == "ok"


def test_watch_fires_leader_changed_when_leader_is_killed(make_cluster) -> None:
    acc = make_cluster()
    states: list[SessionState] = []
    s = acc.session(session_timeout=5.0, listeners=[states.append])
    fired: queue.Queue[WatchEvent] = queue.Queue()
    assert s.query_sync("w", watch=fired) is NOT_FOUND
    assert s.query_sync("other", watch="tagged") is NOT_FOUND
    leader = acc.leader()
    acc.kill(leader)
    assert fired.get(timeout=10).reason == "leader_changed"
    assert _event(s) == ("tagged", "leader_changed")
    acc.leader(exclude=leader)
    # one-shot: it fired once; re-armed on the new leader it fires data_changed
    assert s.query_sync("w", watch=fired, timeout=10) is NOT_FOUND
    assert s.write_sync(["w", 1], timeout=10) == "ok"
    event = fired.get(timeout=10)
    assert (event.reason, event.query) == ("data_changed", "w")
    with pytest.raises(queue.Empty):
        fired.get_nowait()
    # listeners saw the failover: CONNECTED, SUSPENDED while the leader changed, CONNECTED
    wait_for(lambda: states[-1:] == [SessionState.CONNECTED], 5, "CONNECTED again")
    assert states[0] == SessionState.CONNECTED and SessionState.SUSPENDED in states
    assert SessionState.EXPIRED not in states


def test_prefix_watch_and_ownership_of_temporary_keys(make_cluster) -> None:
    """A watched ``["list", prefix]`` fires when a key appears under the prefix; a plain
    write makes a temporary key permanent, a temporary write by another session moves it."""
    acc = make_cluster()
    a = acc.session(session_timeout=5.0)
    b = acc.session(session_timeout=5.0)
    assert b.query_sync(["list", "workers/"], watch="members") == []
    assert a.write_sync(["workers/a", "up"], temporary=True) == "ok"
    assert _event(b) == ("members", "data_changed")
    assert b.query_sync(["list", "workers/"]) == [["workers/a", "up"]]

    assert a.write_sync(["kept", 1], temporary=True) == "ok"
    assert b.write_sync(["kept", 2]) == "ok"  # plain write: permanent now
    assert a.write_sync(["moved", 1], temporary=True) == "ok"
    assert b.write_sync(["moved", 2], temporary=True) == "ok"  # now b's
    assert b.query_sync(["list", "workers/"], watch="members") == [["workers/a", "up"]]
    a.stop()
    assert _event(b) == ("members", "data_changed")  # workers/a went with a
    assert [b.query_sync(k) for k in ("workers/a", "kept", "moved")] == [NOT_FOUND, 2, 2]
    b.stop()
    c = acc.session(session_timeout=5.0)
    assert [c.query_sync(k) for k in ("kept", "moved")] == [2, NOT_FOUND]


def test_session_follows_when_its_leader_is_removed_from_the_cluster(make_cluster) -> None:
    """Membership change under a live session: the leader is configured out (it stops for
    good); the session moves to the new leader, keeps its temporary key, and its writes
    stay exactly-once."""
    acc = make_cluster()
    s = acc.session(session_timeout=5.0)
    assert s.write_sync(["eph", "owned"], temporary=True) == "ok"
    assert [s.write_sync(["incr", "n", 1]) for _ in range(5)] == [1, 2, 3, 4, 5]
    leader = acc.leader()
    rest = [p for p in acc.peers if p != leader]
    pending = [s.write(["incr", "n", 1], timeout=20) for _ in range(20)]
    assert api.set_new_conf(leader, rest, acc.peers, timeout=10, pool=acc.pool) == sorted(rest)
    pending += [s.write(["incr", "n", 1], timeout=20) for _ in range(20)]
    assert sorted(f.get(timeout=30) for f in pending) == list(range(6, 46))
    new = acc.leader(exclude=leader)
    assert new in rest and api.get_conf(new, pool=acc.pool)[1] == sorted(rest)
    assert s.query_sync("n", timeout=10) == 45
    assert s.query_sync("eph", timeout=10) == "owned"
    assert s.state == SessionState.CONNECTED
