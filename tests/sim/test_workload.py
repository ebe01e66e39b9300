"""The random workload: seeded, bounded client concurrency, every fault kind reachable."""

from __future__ import annotations

from itertools import pairwise

from zraft.testing.linearizability import UNKNOWN
from zraft.testing.sim.workload import CLIENT_TIMEOUT, Profile, Scenario


def test_profiles_and_runs_are_seeded():
    a, b = Scenario(5, transcript=True), Scenario(5, transcript=True)
    assert a.profile == b.profile
    a.run(800)
    b.run(800)
    assert a.cluster.transcript == b.cluster.transcript
    assert Scenario(6).profile != a.profile or Scenario(7).profile != a.profile


def test_each_client_has_at_most_one_call_outstanding():
    s = Scenario(9)
    s.run(2000)
    by_process: dict = {}
    for op in s.cluster.history:
        by_process.setdefault(op.process, []).append(op)
    for ops in by_process.values():
        # a client that gave up is replaced by a new process, so within one process every
        # call but the last has completed before the next one starts
        for earlier, later in pairwise(ops):
            assert earlier.outcome != UNKNOWN
            assert later.invoke_time > earlier.complete_time
    assert len(by_process) >= s.profile.clients
    gave_up = [op for op in s.cluster.history if op.outcome == UNKNOWN]
    assert all(s.cluster.now - op.invoke_time > CLIENT_TIMEOUT or op is by_process[op.process][-1]
               for op in gave_up)


def test_the_fault_vocabulary_is_exercised():
    words: set[str] = set()
    for seed in range(20):
        s = Scenario(seed, transcript=True)
        s.run(2000)
        for line in s.cluster.transcript:
            words.add(line.split()[1])
    expected = {"deliver", "persist", "tick", "propose", "read", "complete", "crash",
                "restart", "partition", "isolate", "cut", "heal", "weather", "snapshot",
                "change_config", "config", "removed"}
    assert expected <= words, expected - words


def test_profile_draw_covers_both_cluster_sizes():
    import random

    rng = random.Random(1)
    sizes = {Profile.draw(rng).nodes for _ in range(50)}
    assert sizes == {3, 5}
