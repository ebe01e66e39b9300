"""``ticks_to_next_event``: the ticks before the one it names only count.

The node's peers rely on it to be woken only when a tick is due (zraft/actors/ticker.py):
a tick it calls silent that changed anything would be delivered late. Checked on every
tick of the randomized core runs (elections, replication, partitions, crashes, membership
changes, transfers, snapshots)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from core_fuzz import Fuzz

from zraft.core.raft import RaftCore
from zraft.core.storage import MemoryStorage


class CheckedCore(RaftCore):
    silent = 0
    due = 0

    def _observable(self) -> tuple[Any, ...]:
        return (self.role, self.term, self.leader, self.vote, self.commit, self.has_ready(),
                len(self._msgs), len(self._pmsgs), len(self._events), self.transfer,
                tuple((p, pr.state, pr.probe_sent) for p, pr in self.progress.items()),
                tuple(self.departing), self.change is None)

    def tick(self) -> None:
        n = self.ticks_to_next_event()
        assert n >= 1
        before = self._observable()
        super().tick()
        if n > 1:
            CheckedCore.silent += 1
            assert self._observable() == before, f"tick called silent changed {self.id}"
            assert self.ticks_to_next_event() == n - 1
        else:
            CheckedCore.due += 1


class CheckedFuzz(Fuzz):
    def _core(self, p: str, st: MemoryStorage) -> RaftCore:
        return CheckedCore(p, st, self.cfg, random.Random(self.rng.random()))


@pytest.mark.parametrize("seed", range(3))
def test_ticks_before_the_next_event_only_count(seed: int) -> None:
    CheckedCore.silent = CheckedCore.due = 0
    f = CheckedFuzz(500 + seed)
    f.run(3000)
    f.settle()
    assert CheckedCore.silent > 0 and CheckedCore.due > 0  # both kinds were exercised


def test_an_idle_follower_and_leader_name_their_timers() -> None:
    from core_harness import Net

    net = Net(["a", "b", "c"])
    a = net.cores["a"]
    assert a.ticks_to_next_event() == a.timeout  # follower: its election timeout
    while a.role != "leader":
        a.tick()
        net.drive()
    net.drive()
    assert a.ticks_to_next_event() in range(1, a.cfg.heartbeat_ticks + 1)
    b = net.cores["b"]
    assert b.ticks_to_next_event() == b.timeout - b.election_elapsed


def test_a_silent_follower_with_appends_in_flight_is_a_due_event() -> None:
    """A leader whose appends to a follower go unanswered turns it into a probe after the
    request timeout: that tick is named, whatever the heartbeat says."""
    from core_harness import Net

    net = Net(["a", "b", "c"], request_timeout_ticks=7, election_ticks=10, heartbeat_ticks=4,
              check_quorum=False)
    a = net.elect("a")
    net.cut("a", "b")
    a.propose([b"x"], 0)
    net.drive()
    assert a.progress["b"].inflight
    checked = 0
    while a.progress["b"].state == "replicate":
        n = a.ticks_to_next_event()
        silent = a.progress["b"].silent_ticks
        a.tick()
        if n > 1:  # a silent tick only counts
            assert a.progress["b"].state == "replicate" and a.progress["b"].silent_ticks > silent
            checked += 1
        net.drive()
    assert checked and a.progress["b"].state == "probe"
