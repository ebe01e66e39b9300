"""The same promises under harder faults than a clean leader kill.

- The owner process and the leader die together: the new leader still expires the orphaned
  session and deletes its key within session_timeout + 2 x election_timeout + one election.
- A leader that hangs (SIGSTOP) instead of dying: light-session and Client writes still never
  fail while a majority runs, and session increments stay exactly-once when the hung leader
  comes back with entries the others never saw.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.acceptance.conftest import ET, wait_for
from tests.acceptance.test_ephemeral import SESSION_TIMEOUT, _read, _start_owner
from tests.acceptance.test_failover import _Writer
from zraft.client import api
from zraft.client.client_actor import Client
from zraft.transport.sentinels import NOT_FOUND

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_orphaned_ephemeral_key_goes_even_when_the_leader_dies_too(make_cluster) -> None:
    acc = make_cluster()
    owner = _start_owner(acc, "orphan")
    leader = acc.leader()
    owner.kill()
    killed = acc.kill(leader)
    owner.wait(5)
    # one election (at most 2.5 ET after the old leader's last heartbeat) on top of the bound
    bound = SESSION_TIMEOUT + 2 * ET + 2.5 * ET
    wait_for(lambda: _read(acc, "orphan") is NOT_FOUND, bound + 5, "the orphaned key to go")
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
    writers = [_Writer("light", light_write),
               _Writer("client", lambda data: client.write_sync(data, timeout=10))]
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
