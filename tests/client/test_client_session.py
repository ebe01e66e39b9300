"""Sessions against fake nodes: connect, msg ids and acc_upto, exactly-once re-sends across
leader changes, temporary data, watches delivered by the watcher actor, listener states,
keepalive pings, expiry."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka
import pytest

from tests.client.fake_node import FakeCluster
from zraft.client.session import Session
from zraft.client.watcher import SessionState, WatchEvent
from zraft.errors import SessionExpired
from zraft.transport.codec import unpack
from zraft.transport.sentinels import NOT_FOUND


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def commands(fake: FakeCluster, code: int) -> list[list[Any]]:
    out = []
    for _, _, args in fake.ops("propose"):
        cmd = unpack(args[1])
        if cmd[0] == code:
            out.append(cmd)
    return out


def test_connect_write_query(
    cluster: FakeCluster, sessions: Callable[..., Session]
) -> None:
    s = sessions()
    assert s.state == SessionState.CONNECTED
    assert s.write_sync(["k", "v1"]) == "ok"
    assert s.query_sync("k") == "v1"
    assert s.query_sync("missing") is NOT_FOUND


def test_connect_command_and_message_ids(fake: FakeCluster, sessions: Callable[..., Session]
                                          ) -> None:
    s = sessions(timeout=7.5)
    (connect,) = commands(fake, 2)
    assert connect == [2, s.sid, 7500]
    for i in range(3):
        s.write_sync([f"k{i}", i])
    writes = commands(fake, 4)
    # ids 1, 2, 3; acc_upto starts at 0 (not "everything") and acknowledges answered writes
    assert [(w[2], w[3]) for w in writes] == [(1, 0), (2, 1), (3, 2)]
    assert all(w[1] == s.sid and w[4] is False for w in writes)


def test_acc_upto_is_lowest_outstanding_minus_one(
    fake: FakeCluster, sessions: Callable[..., Session]
) -> None:
    s = sessions()
    hold = threading.Event()
    fake.script = lambda peer, op, args: (
        ("delay", 0.5) if op == "propose" and unpack(args[1])[:3] == [4, s.sid, 1] else None
    )
    slow = s.write(["a", 1])  # id 1 stays outstanding
    wait_until(lambda: len(commands(fake, 4)) == 1)
    assert s.write_sync(["b", 2]) == "ok"  # id 2
    assert s.write_sync(["c", 3]) == "ok"  # id 3: 1 is still outstanding
    assert [(w[2], w[3]) for w in commands(fake, 4)] == [(1, 0), (2, 0), (3, 0)]
    assert slow.get(timeout=5) == "ok"
    s.write_sync(["d", 4])
    assert commands(fake, 4)[-1][2:4] == [4, 3]
    hold.set()


def test_a_lost_reply_is_resent_and_applied_once(
    fake: FakeCluster, sessions: Callable[..., Session]
) -> None:
    s = sessions(election_timeout=0.05)
    lost = {"n": 0}

    def script(peer: str, op: str, args: Any) -> Any:
        if op == "propose" and unpack(args[1])[0] == 4 and lost["n"] == 0:
            lost["n"] += 1
            return "apply_drop"  # applied at p1, reply lost; then p1 "dies"
        return None

    fake.script = script
    future = s.write(["x", 1])
    wait_until(lambda: lost["n"] == 1)
    fake.change_leader(fake.peer(2))  # the new leader tells the session
    assert future.get(timeout=5) == "ok"
    assert fake.applied.count(["x", 1]) == 1
    ids = [w[2] for w in commands(fake, 4)]
    assert ids == [1, 1]  # the same message id was re-sent


def test_failover_in_flight_calls_complete(
    fake: FakeCluster, sessions: Callable[..., Session]
) -> None:
    s = sessions(election_timeout=0.05)
    fake.data["r"] = "v1"
    fake.script = lambda peer, op, args: (
        ("delay", 0.3) if peer == fake.peer(1) and op in ("propose", "query") else None
    )
    w = s.write(["w", 3])
    r = s.query("r")
    wait_until(lambda: len(commands(fake, 4)) == 1)
    fake.leader = fake.peer(2)
    fake.stop_node(fake.peer(1))
    assert w.get(timeout=5) == "ok"
    assert r.get(timeout=5) == "v1"
    assert s.leader == fake.peer(2)
    assert fake.applied.count(["w", 3]) == 1


def test_temporary_data_goes_with_the_session(
    cluster: FakeCluster, sessions: Callable[..., Session]
) -> None:
    s1, s2 = sessions(), sessions()
    events: queue.Queue[WatchEvent] = queue.Queue()
    assert s2.query_sync("eph", watch=events) is NOT_FOUND
    assert s1.write_sync(["eph", "here"], temporary=True) == "ok"
    assert events.get(timeout=5).reason == "data_changed"
    assert s2.query_sync("eph", watch="w2") == "here"
    s1.stop()
    event = s2.events.get(timeout=5)
    assert event == WatchEvent("w2", "data_changed", "eph")
    assert s2.query_sync("eph") is NOT_FOUND


def test_watch_is_one_shot_and_rearms_by_querying(
    fake: FakeCluster, sessions: Callable[..., Session]
) -> None:
    s = sessions()
    got: list[WatchEvent] = []
    s.query_sync("k", watch=got.append)
    s.write_sync(["k", 1])
    s.write_sync(["k", 2])
    wait_until(lambda: len(got) == 1)
    s.write_sync(["k", 3])
    assert s.watcher_ref.proxy().delivered.get(timeout=5) == 1  # the watcher is idle
    assert got[0].reason == "data_changed" and got[0].query == "k"
    s.query_sync("k", watch=got.append)
    s.write_sync(["k", 4])
    wait_until(lambda: len(got) == 2)


def test_a_slow_callback_does_not_stall_the_session(
    fake: FakeCluster, sessions: Callable[..., Session]
) -> None:
    s = sessions()
    entered, release = threading.Event(), threading.Event()

    def slow(event: WatchEvent) -> None:
        entered.set()
        release.wait(10)

    s.query_sync("k", watch=slow)
    s.write_sync(["k", 1])
    assert entered.wait(5)
    started = time.monotonic()
    for i in range(20):  # the session keeps working while the callback blocks
        assert s.write_sync([f"other{i}", i]) == "ok"
    assert s.query_sync("other19") == 19
    assert time.monotonic() - started < 2
    release.set()


def test_leader_change_fires_watches_once(
    fake: FakeCluster, sessions: Callable[..., Session]
) -> None:
    s = sessions()
    s.query_sync("k", watch="tag")
    fake.change_leader(fake.peer(2))  # cluster pushes a leader_changed trigger AND a leader push
    event = s.events.get(timeout=5)
    assert event == WatchEvent("tag", "leader_changed", "k")
    wait_until(lambda: s.leader == fake.peer(2))
    s.write_sync(["k", 1])  # the actor has handled both pushes by now
    assert s.watcher_ref.proxy().delivered.get(timeout=5) == 1
    assert s.events.empty()


def test_listener_states(fake: FakeCluster, sessions: Callable[..., Session]) -> None:
    states: list[SessionState] = []
    s = sessions(timeout=1.0, listeners=[states.append], election_timeout=0.05)
    wait_until(lambda: states == [SessionState.CONNECTED])
    fake.leader = fake.peer(2)
    fake.stop_node(fake.peer(1))  # found by the next ping (every 0.5 s)
    wait_until(lambda: states[-1:] == [SessionState.CONNECTED] and len(states) == 3)
    assert states == [SessionState.CONNECTED, SessionState.SUSPENDED, SessionState.CONNECTED]
    fake.script = lambda peer, op, args: "drop" if op == "propose" else None
    pending = s.write(["never", 1])
    fake.expire(s.sid)
    with pytest.raises(SessionExpired):
        pending.get(timeout=5)
    wait_until(lambda: states[-1] == SessionState.EXPIRED)
    assert s.state == SessionState.EXPIRED
    with pytest.raises(SessionExpired):
        s.write_sync(["later", 1])


def test_pings_only_when_idle(fake: FakeCluster, sessions: Callable[..., Session]) -> None:
    s = sessions(timeout=0.4)
    wait_until(lambda: len(commands(fake, 3)) >= 3)
    assert all(p[1] == s.sid for p in commands(fake, 3))
    # busy: a write every 50 ms leaves no idle half-period, so no ping goes out
    s.write_sync(["busy", 0])
    before = len(commands(fake, 3))
    end = time.monotonic() + 0.6
    i = 0
    while time.monotonic() < end:
        s.write_sync(["busy", i])
        i += 1
        time.sleep(0.05)  # pacing the load, not synchronisation
    assert len(commands(fake, 3)) <= before + 1


def test_no_leader_yet_suspends_then_recovers(
    fake: FakeCluster, sessions: Callable[..., Session]
) -> None:
    states: list[SessionState] = []
    s = sessions(listeners=[states.append], election_timeout=0.05)
    fake.leader = None
    fake.leader_hint = {}
    future = s.write(["k", 1])
    wait_until(lambda: SessionState.SUSPENDED in states)
    fake.leader = fake.peer(3)
    assert future.get(timeout=5) == "ok"
    assert s.leader == fake.peer(3)
    wait_until(lambda: states[-1] == SessionState.CONNECTED)


def test_stop_closes_the_session_at_once(fake: FakeCluster) -> None:
    s = Session.start(fake.peers, 10.0, cookie=fake.cookie)
    s.stop()
    assert commands(fake, 5) == [[5, s.sid]]
    assert s.sid not in fake.sessions
    assert not s.actor_ref.is_alive()
    with pytest.raises((SessionExpired, pykka.ActorDeadError)):
        s.write_sync(["k", 1])


def test_cannot_connect_times_out(fake: FakeCluster) -> None:
    for peer in fake.peers:
        fake.stop_node(peer)
    started = time.monotonic()
    with pytest.raises(Exception, match="did not connect"):
        Session.start(fake.peers, 0.5, cookie=fake.cookie)
    assert time.monotonic() - started < 3


def test_data_watch_rearms_until_false(
    fake: FakeCluster, sessions: Callable[..., Session]
) -> None:
    s = sessions()
    seen: list[tuple[Any, str | None]] = []

    @s.data_watch("dw")
    def on_change(value: Any, event: WatchEvent | None) -> bool:
        seen.append((value, event.reason if event else None))
        return value != 2

    assert seen == [(NOT_FOUND, None)]
    s.write_sync(["dw", 1])
    wait_until(lambda: len(seen) == 2)
    s.write_sync(["dw", 2])
    wait_until(lambda: len(seen) == 3)
    s.write_sync(["dw", 3])  # fn returned False at 2: no more calls
    s.write_sync(["other", 0])
    assert s.watcher_ref.proxy().delivered.get(timeout=5) == 3
    assert seen == [(NOT_FOUND, None), (1, "data_changed"), (2, "data_changed")]


def test_connect_retries_while_loading(fake: FakeCluster, sessions: Callable[..., Session]
                                       ) -> None:
    answers = iter([("reply", "loading", {}), ("reply", "loading", {})])
    fake.script = lambda peer, op, args: next(answers, None) if op == "propose" else None
    s = sessions(timeout=5.0)
    assert s.state == SessionState.CONNECTED
    assert len(commands(fake, 2)) == 3


def test_stop_from_a_callback_does_not_deadlock(fake: FakeCluster) -> None:
    s = Session.start(fake.peers, 10.0, cookie=fake.cookie)
    stopped = threading.Event()

    def on_change(event: WatchEvent) -> None:
        s.stop()
        stopped.set()

    s.query_sync("k", watch=on_change)
    s.write_sync(["k", 1])
    assert stopped.wait(5)
    wait_until(lambda: not s.actor_ref.is_alive())
    assert commands(fake, 5) == [[5, s.sid]]


def test_flat_push_frames_are_accepted(fake: FakeCluster, sessions: Callable[..., Session]
                                       ) -> None:
    s = sessions()
    conn = fake.sessions[s.sid].conn
    assert conn is not None
    conn.send([6, "disconnected", "p1", s.sid])  # the architecture's flat form
    wait_until(lambda: s.state == SessionState.EXPIRED)


def test_leader_changed_reply_is_resent(fake: FakeCluster, sessions: Callable[..., Session]
                                        ) -> None:
    s = sessions(election_timeout=0.05)
    replaced = {"n": 0}

    def script(peer: str, op: str, args: Any) -> Any:
        if op == "propose" and unpack(args[1])[0] == 4 and replaced["n"] == 0:
            replaced["n"] += 1
            return ("reply", "leader_changed", {"message": "entry replaced"})
        return None

    fake.script = script
    assert s.write_sync(["lc", 1]) == "ok"
    assert fake.applied.count(["lc", 1]) == 1


def test_one_peer_is_enough_the_session_learns_the_rest(
    fake: FakeCluster, sessions: Callable[..., Session]
) -> None:
    s = sessions(peers=[fake.peer(2)], timeout=1.0, election_timeout=0.05)
    assert s.write_sync(["k", 1]) == "ok"
    wait_until(lambda: len(fake.ops("get_conf")) == 1)
    assert s.query_sync("k") == 1  # the conf reply was handled before this read's reply
    fake.stop_node(fake.peer(1))
    fake.stop_node(fake.peer(2))
    fake.leader = fake.peer(3)  # never named by the caller
    assert s.write_sync(["k", 2], timeout=5) == "ok"
    assert s.leader == fake.peer(3)


def _ring(s: Session) -> Any:
    return pykka.ActorProxy(actor_ref=s.actor_ref).ring.get(timeout=5)


def test_the_session_ring_follows_the_clusters_election_timeout(
    fake: FakeCluster, sessions: Callable[..., Session]
) -> None:
    """A node answers CONNECT with its election timeout ET; the session's "no leader yet"
    wait (2 ET) and fail timeout (4 ET) follow it instead of a fixed 0.5 s ET, unless the
    caller fixed them; a nonsensical answer is ignored."""
    assert (_ring(sessions()).election_timeout, _ring(sessions()).fail_timeout) == (1.0, 2.0)
    fake.connect_reply = {"election_timeout_ms": 150}
    learned = _ring(sessions())
    assert (learned.election_timeout, learned.fail_timeout) == (0.3, 0.6)
    fixed = _ring(sessions(election_timeout=2.0))
    assert (fixed.election_timeout, fixed.fail_timeout) == (4.0, 8.0)
    fail_fixed = _ring(sessions(fail_timeout=5.0))
    assert (fail_fixed.election_timeout, fail_fixed.fail_timeout) == (0.3, 5.0)
    for junk in (0, -5, 10**9, 150.0, "150", True):
        fake.connect_reply = {"election_timeout_ms": junk}
        assert _ring(sessions()).election_timeout == 1.0
