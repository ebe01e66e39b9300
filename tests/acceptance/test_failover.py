"""Failover as users see it: only latency, never an error or a double apply.

- Exactly once: 1,000 ``["incr", "counter", 1]`` through one session while the leader is
  SIGKILLed twice end at exactly 1,000 (``incr`` is not idempotent, so a re-sent write
  applied twice would show).
- Writes through a light session and through the Client proxy keep succeeding across a
  leader kill: with a majority up, the number of failed writes is 0.
"""

from __future__ import annotations

import collections
import time
from typing import Any

import pykka
import pytest

from tests.acceptance.harness import ET, Acceptance, Writer, answered, wait_for
from zraft.client import api
from zraft.client.client_actor import Client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

INCREMENTS = 1000
WINDOW = 20  # session writes in flight at once


def _restart_after_kill(acc: Acceptance, leader: str) -> str:
    """Kill the leader, wait for another one, bring the killed node back; returns the new
    leader (so a second kill still leaves a majority)."""
    acc.kill(leader)
    new = acc.leader(timeout=15, exclude=leader)
    acc.restart(leader)
    return new


def test_exactly_once_counter_across_two_leader_kills(make_cluster) -> None:
    acc = make_cluster()
    s = acc.session(session_timeout=5.0)
    kill_at = {INCREMENTS // 3, 2 * INCREMENTS // 3}
    in_flight: collections.deque[pykka.Future[Any]] = collections.deque()
    results: list[Any] = []
    unanswered_at_kills: list[int] = []
    leader = acc.leader()
    for i in range(INCREMENTS):
        if i in kill_at:
            # kill while the last WINDOW writes were just sent: their answers (or their
            # re-sends) must come from the next leader
            unanswered_at_kills.append(sum(1 for f in in_flight if not answered(f)))
            leader = _restart_after_kill(acc, leader)
        in_flight.append(s.write(["incr", "counter", 1], timeout=30))
        if len(in_flight) >= WINDOW and i + 1 not in kill_at:
            results.append(in_flight.popleft().get(timeout=40))
    results += [f.get(timeout=40) for f in in_flight]
    print(f"writes unanswered at the two kills: {unanswered_at_kills}")
    assert len(unanswered_at_kills) == 2 and sum(unanswered_at_kills) > 0
    # every increment answered once, with its own new value: 1..1000, none twice
    assert sorted(results) == list(range(1, INCREMENTS + 1))
    assert s.query_sync("counter", timeout=10) == INCREMENTS
    # the cluster keeps a reply only until the session acknowledged it (acc_upto): a few
    # at most now, none after the next ping
    leader = acc.leader()
    assert acc.stat(leader)["fsm"]["cached_replies"] <= 2 * WINDOW
    wait_for(lambda: acc.stat(leader)["fsm"]["cached_replies"] == 0, 5.0, "the next ping")
    for peer in acc.peers:  # and every replica agrees
        wait_for(lambda p=peer: api.query_local(p, "counter", pool=acc.pool) == INCREMENTS,
                 15, f"{peer} to apply every increment")


def test_light_session_and_client_writes_survive_a_leader_kill(make_cluster) -> None:
    acc = make_cluster()
    light = [acc.light()]

    def light_write(data: Any) -> Any:
        result, light[0] = api.write(light[0], data, timeout=10, pool=acc.pool)
        return result

    ref = Client.start(acc.peers, cookie_file=acc.cookie_file, fail_timeout=2 * ET,
                       election_timeout=ET)
    client = ref.proxy()
    try:
        writers = [Writer("light", light_write),
                   Writer("client", lambda data: client.write_sync(data, timeout=10))]
        for w in writers:
            w.start()
        wait_for(lambda: all(w.ok >= 20 for w in writers), 20, "writes before the kill")
        before = [w.ok for w in writers]
        leader = acc.leader()
        acc.kill(leader)
        killed = time.monotonic()
        acc.leader(timeout=15, exclude=leader)
        wait_for(lambda: all(w.ok >= b + 50 for w, b in zip(writers, before, strict=True)),
                 30, "writes after the new leader")
        for w in writers:
            w.halt.set()
        for w in writers:
            w.join(15)
        print(f"writes ok: {[w.ok for w in writers]}, after the kill at "
              f"{time.monotonic() - killed:.1f}s ago")
        assert [w.failures for w in writers] == [[], []]
        for w in writers:  # the last write of each is readable through the other path
            assert client.query_sync(f"{w.name}-{w.ok}", timeout=10) == w.ok
    finally:
        ref.stop(timeout=5)
