"""Each test-only mutation breaks exactly the rule it names (and is off by default)."""

from __future__ import annotations

import pytest
from core_harness import E, Net, flush, make_core, seeded_storage

from zraft.core.config import CoreConfig
from zraft.core.errors import ConfigError
from zraft.core.messages import AppendEntries, AppendReply, ReadState, VoteReply, VoteRequest


def mut(name: str | None) -> dict:
    return {"mutations": frozenset([name])} if name else {}


@pytest.mark.parametrize("mutated", [False, True])
def test_commit_before_durable(mutated):
    c = make_core("a", seeded_storage(["a", "b", "c"]), prevote=False,
                  **mut("commit_before_durable" if mutated else None))
    c.campaign()
    c.step(VoteReply(2, "b", "a", True))
    flush(c)
    c.propose([b"v"], 0)
    c.ready()  # handed out, never reported durable
    c.step(AppendReply(2, "b", "a", True, 3, 0, 0, 1))
    assert (c.commit == 3) is mutated


@pytest.mark.parametrize("mutated", [False, True])
def test_vote_stale_log(mutated):
    v = make_core("b", seeded_storage(["a", "b", "c"]),
                  **mut("vote_stale_log" if mutated else None))
    v.step(AppendEntries(1, "a", "b", 1, 1, [E(2, 1), E(3, 1)], 3, 1))
    flush(v)
    for _ in range(20):
        v.tick()
    v.step(VoteRequest(2, "c", "b", 1, 1))  # c misses committed entries 2, 3
    (r,) = flush(v).persisted_messages
    assert r.granted is mutated


@pytest.mark.parametrize("mutated", [False, True])
def test_read_without_quorum(mutated):
    net = Net(["a", "b", "c"], **mut("read_without_quorum" if mutated else None))
    lead = net.elect("a")
    net.isolate("a")
    lead.read("r")
    net.drive()
    assert (net.reads["a"] == [ReadState("r", 2)]) is mutated


@pytest.mark.parametrize("mutated", [False, True])
def test_truncate_matching(mutated):
    f = make_core("b", seeded_storage(["a", "b", "c"]),
                  **mut("truncate_matching" if mutated else None))
    f.step(AppendEntries(1, "a", "b", 1, 1, [E(2, 1), E(3, 1), E(4, 1)], 1, 1))
    flush(f)
    f.step(AppendEntries(1, "a", "b", 1, 1, [E(2, 1)], 1, 1))  # a stale, delayed copy
    assert (f.log.last_index() == 2) is mutated  # acknowledged 3, 4 lost


@pytest.mark.parametrize("mutated", [False, True])
def test_forget_vote(mutated):
    v = make_core("c", seeded_storage(["a", "b", "c"]),
                  **mut("forget_vote" if mutated else None))
    v.step(VoteRequest(2, "a", "c", 1, 1))
    v.step(VoteRequest(2, "b", "c", 1, 1))
    granted = [m.granted for m in flush(v).persisted_messages]
    assert granted == ([True, True] if mutated else [True, False])


def test_mutations_off_by_default_and_validated():
    assert CoreConfig().mutations == frozenset()
    with pytest.raises(ConfigError):
        CoreConfig(mutations=frozenset(["no_such_rule"])).validate()


def test_config_validate_rejects_bad_values():
    for bad in (
        CoreConfig(election_ticks=0),
        CoreConfig(election_ticks=10, heartbeat_ticks=10),
        CoreConfig(max_inflight=0),
        CoreConfig(max_batch_bytes=0),
    ):
        with pytest.raises(ConfigError):
            bad.validate()


@pytest.mark.parametrize("mutated", [False, True])
def test_apply_before_durable(mutated):
    f = make_core("b", seeded_storage(["a", "b", "c"]),
                  **mut("apply_before_durable" if mutated else None))
    f.step(AppendEntries(1, "a", "b", 1, 1, [E(2, 1), E(3, 1)], 3, 1))
    rd = f.ready()  # entries handed out, not yet durable
    assert (max(e.index for e in rd.committed) == 3) is mutated
