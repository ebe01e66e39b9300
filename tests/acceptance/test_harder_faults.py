"""The same promises under harder faults than a clean leader kill.

- The owner process and the leader die together: the new leader still expires the orphaned
  session and deletes its key. A new leader renews every session (docs/internals.md), so
  the bound is the later of one election and the old deadline, then a full
  session_timeout, plus 2 x election_timeout.
- A leader that hangs (SIGSTOP) instead of dying: light-session and Client writes still never
  fail while a majority runs, and session increments stay exactly-once when the hung leader
  comes back with entries the others never saw.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import Any

import pykka
import pytest

from tests.acceptance.harness import ET, SESSION_TIMEOUT, Writer, read_key, start_owner, wait_for
from zraft.client import api
from zraft.client.client_actor import Client
from zraft.errors import ZRaftError
from zraft.transport.sentinels import NOT_FOUND

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_orphaned_ephemeral_key_goes_even_when_the_leader_dies_too(make_cluster) -> None:
    acc = make_cluster()
    owner = start_owner(acc, "orphan")
    leader = acc.leader()
    owner.kill()
    killed = acc.kill(leader)
    owner.wait(5)
    # the new leader's first entry comes after one election (at most 2.5 ET after the old
    # leader's last heartbeat), or at the old deadline (its expiry check); that entry
    # renews the orphan for a full timeout
    bound = max(2.5 * ET, SESSION_TIMEOUT) + SESSION_TIMEOUT + 2 * ET
    wait_for(lambda: read_key(acc, "orphan") is NOT_FOUND, bound + 5, "the orphaned key to go")
    took = time.monotonic() - killed
    print(f"orphaned key gone {took:.2f}s after the kills (bound {bound:.2f}s)")
    assert took <= bound
    new = acc.leader(exclude=leader)
    assert acc.stat(new)["fsm"]["sessions"] == 0


def test_writes_never_fail_while_the_leader_hangs(make_cluster) -> None:
    acc = make_cluster()
    light = [acc.light()]

    def light_write(data: Any) -> Any:
        result, light[0] = api.write(light[0], data, timeout=10, pool=acc.pool)
        return result

    ref = Client.start(acc.peers, cookie_file=acc.cookie_file, fail_timeout=2 * ET,
                       election_timeout=ET)
    client = ref.proxy()
    leader = acc.leader()
    node = acc.node_of(leader)
    writers = [Writer("light", light_write),
               Writer("client", lambda data: client.write_sync(data, timeout=10))]
    try:
        for w in writers:
            w.start()
        wait_for(lambda: all(w.ok >= 20 for w in writers), 20, "writes before the pause")
        acc.cluster.pause(node)
        before = [w.ok for w in writers]
        acc.leader(timeout=15, exclude=leader)
        wait_for(lambda: all(w.ok >= b + 30 for w, b in zip(writers, before, strict=True)),
                 30, "writes while the old leader hangs")
        acc.cluster.resume(node)
        resumed = [w.ok for w in writers]
        wait_for(lambda: all(w.ok >= b + 30 for w, b in zip(writers, resumed, strict=True)),
                 30, "writes after it is back")
    finally:
        acc.cluster.resume(node)
        for w in writers:
            w.halt.set()
        for w in writers:
            w.join(15)
        ref.stop(timeout=5)
    assert [w.failures for w in writers] == [[], []]


def test_exactly_once_counter_across_a_hung_leader(make_cluster) -> None:
    acc = make_cluster()
    s = acc.session(session_timeout=5.0)
    leader = acc.leader()
    node = acc.node_of(leader)
    first = [s.write(["incr", "c", 1], timeout=30) for _ in range(100)]
    acc.cluster.pause(node)  # some of these are appended on the hung leader only
    try:
        second = [s.write(["incr", "c", 1], timeout=30) for _ in range(100)]
        acc.leader(timeout=15, exclude=leader)
    finally:
        acc.cluster.resume(node)
    third = [s.write(["incr", "c", 1], timeout=30) for _ in range(100)]
    results = [f.get(timeout=40) for f in first + second + third]
    assert sorted(results) == list(range(1, 301))
    assert s.query_sync("c", timeout=10) == 300
    for peer in acc.peers:
        wait_for(lambda p=peer: api.query_local(p, "c", pool=acc.pool) == 300, 15,
                 f"{peer} to agree")


def test_deposed_leader_never_serves_a_stale_read(make_cluster) -> None:
    """A read queued at a leader that was hung while the others elected and wrote must not
    answer the old value when it wakes up (reads confirm leadership first)."""
    acc = make_cluster()
    old = acc.leader()
    assert api.write(old, ["x", "old"], pool=acc.pool)[0] == "ok"
    acc.cluster.pause(acc.node_of(old))
    replies: list[tuple[str, Any]] = []
    try:
        new = acc.leader(timeout=15, exclude=old)
        assert api.write(new, ["x", "new"], pool=acc.pool)[0] == "ok"
        # sent while it is hung: the request waits in its socket until it runs again
        acc.pool.request(old, "query", [old.partition("@")[0], "x", None, None],
                         lambda status, payload: replies.append((status, payload)))
    finally:
        acc.cluster.resume(acc.node_of(old))
    wait_for(lambda: replies, 15, "the woken leader's answer")
    status, payload = replies[0]
    print(f"the woken leader answered {status} {payload}")
    assert (status, payload) != ("ok", "old"), "stale read from a deposed leader"
    assert status != "ok" or payload == "new"


def _timed_failure(call: Callable[[], Any]) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        call()
    except Exception as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


def test_calls_without_a_quorum_end_at_their_deadline(make_cluster) -> None:
    """No majority: every call fails with Timeout (or AllFailed) at its deadline, never
    hangs, whatever redirects and retries happen meanwhile."""
    acc = make_cluster()
    s = acc.session(session_timeout=10.0)
    ref = Client.start(acc.peers, cookie_file=acc.cookie_file, fail_timeout=2 * ET,
                       election_timeout=ET)
    client = ref.proxy()
    try:
        assert client.write_sync(["before", 1]) == "ok"
        leader = acc.leader()
        for peer in acc.peers:
            if peer != leader:
                acc.kill(peer)
        calls = {
            "light write": lambda: api.write(acc.light(), ["x", 1], timeout=2, pool=acc.pool),
            "peer query": lambda: api.query(leader, "before", timeout=2, pool=acc.pool),
            "client write": lambda: client.write_sync(["x", 1], timeout=2),
            "session write": lambda: s.write_sync(["x", 1], timeout=2),
            "get_conf": lambda: api.get_conf(leader, timeout=2, pool=acc.pool),
        }
        with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:  # all at once
            outcomes = dict(zip(calls, pool.map(_timed_failure, calls.values()), strict=True))
        for what, (failure, took) in outcomes.items():
            print(f"{what}: {failure!r} after {took:.2f}s")
            assert isinstance(failure, (ZRaftError, pykka.Timeout)), what
            assert took < 2 + 1.5, f"{what} took {took:.2f}s for a 2 s deadline"
    finally:
        ref.stop(timeout=5)
