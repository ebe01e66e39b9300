"""Replicated objects on real node processes: every ready-made object, a user-defined class
loaded from the nodes' import path (with snapshots and a restarted node), and a leader
kill in the middle of writes that loses no acknowledged write and applies none twice."""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

import zraft
from tests.acceptance.harness import ET, wait_for
from tests.objects.conftest import EXAMPLES, Objects
from zraft.objects import Counter, Dict, List, Queue, Set

sys.path.insert(0, str(EXAMPLES))
from inventory import Inventory  # (the example's own module, as a user has it)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _connect(acc: Objects, peers: list[str], cls: type, **kw: Any) -> Any:
    handle = zraft.connect_object(peers, cls, pool=acc.pool, election_timeout=ET, **kw)
    acc.sessions.append(handle.session)  # stopped at teardown
    return handle


def _everywhere(acc: Objects, peers: list[str], read: Any, expected: Any) -> None:
    """Every replica's own copy reaches ``expected`` (local reads, polled)."""
    for peer in peers:
        wait_for(lambda peer=peer: read(peer) == expected, 10, f"{peer} to catch up")


SCENARIOS = {
    Counter: (lambda o: [o.incr(5), o.decr(), o.set(10), o.compare_and_set(10, 11)],
              [5, 4, 4, True], "get", (), 11),
    Dict: (lambda o: [o.set("a", [1, {"x": b"y"}]), o.incr("n", 2), o.pop("a"), o.set(7, None)],
           [None, 2, [1, {"x": b"y"}], None], "to_dict", (), {"n": 2, 7: None}),
    List: (lambda o: [o.append("a"), o.extend(["b", "c"]), o.insert(0, "z"), o.pop()],
           [1, 3, 4, "c"], "to_list", (), ["z", "a", "b"]),
    Queue: (lambda o: [o.put(1), o.put_many([2, 3]), o.get(), o.get_many(5), o.get("none")],
            [1, 3, 1, [2, 3], "none"], "size", (), 0),
    Set: (lambda o: [o.add("x"), o.add("x"), o.update(["y", 1]), o.discard("x")],
          [True, False, 2, True], "members", (), ["y", 1]),
}


@pytest.mark.parametrize("cls", list(SCENARIOS), ids=lambda c: c.__name__)
def test_a_ready_made_object_works_on_real_nodes(shared_objects: Objects, cls: type) -> None:
    run, results, read, args, final = SCENARIOS[cls]
    peers = shared_objects.create_object(f"o{cls.__name__.lower()}", cls)
    handle = _connect(shared_objects, peers, cls)
    assert run(handle) == results
    other = _connect(shared_objects, peers, cls)  # another client, its own session
    assert getattr(other, read)(*args) == final
    _everywhere(shared_objects, peers,
                lambda peer: zraft.query_local(peer, [read], pool=shared_objects.pool), final)


def test_a_user_defined_class_runs_snapshots_and_survives_a_restart(
        shared_objects: Objects) -> None:
    acc = shared_objects
    peers = acc.create_object("inventory", Inventory)
    shop = _connect(acc, peers, Inventory)
    assert shop.restock("apple", 3) == 3
    with pytest.raises(zraft.BadCommand, match="cannot sell 5 apple: 3 left"):
        shop.sell("apple", 5)
    with pytest.raises(zraft.BadCommand, match=r"Inventory\.restock\(\): missing a required"):
        zraft.write(peers[0], ["restock", ["pear"]], pool=acc.pool)
    futures = [shop.restock.future(f"item{i % 5}", 1) for i in range(50)]
    assert [f.get(timeout=10) for f in futures][-5:] == [10, 10, 10, 10, 10]
    assert shop.sell("item0", 4) == 6
    report = {"stock": {"apple": 3, "item0": 6, **{f"item{i}": 10 for i in range(1, 5)}},
              "sold": 4}
    assert shop.report() == report
    last = peers[2]
    wait_for(lambda: acc.stat(last)["fsm"]["snapshot_index"] > 0, 10, "a snapshot")
    acc.cluster.kill(3)
    assert shop.restock("apple", 1) == 4  # two of three still commit
    report["stock"]["apple"] = 4
    acc.start_node(3)  # loads its snapshot, replays its log, catches up
    _everywhere(acc, [last], lambda peer: zraft.query_local(peer, ["report"], pool=acc.pool),
                report)
    assert shop.report() == report


def test_a_leader_kill_during_writes_loses_no_acknowledged_write(
        shared_objects: Objects) -> None:
    acc = shared_objects
    peers = acc.create_object("count", Counter)
    counter = _connect(acc, peers, Counter, timeout=10.0)
    acked: list[int] = []
    failures: list[str] = []
    halt = threading.Event()

    def writer() -> None:
        while not halt.is_set():
            try:
                acked.append(counter.incr(1))
            except zraft.ZRaftError as exc:  # an unknown outcome: may or may not be applied
                failures.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    wait_for(lambda: len(acked) >= 30, 20, "writes before the kill")
    leader = acc.group_leader(peers)
    victim = acc.cluster.node(leader.partition("@")[2]).index
    acc.cluster.kill(victim)  # SIGKILL the leader's node
    try:
        at_kill = len(acked)
        wait_for(lambda: len(acked) >= at_kill + 30, 30, "writes after the kill")
    finally:
        halt.set()
        thread.join(15)
        acc.start_node(victim)  # the shared cluster is whole again for the next tests
    survivors = [p for p in peers if p != leader]
    final = _connect(acc, survivors, Counter).get()
    print(f"{len(acked)} acknowledged increments, {len(failures)} failed, final {final}; "
          f"killed {leader} after {at_kill}")
    assert not failures, failures  # the session re-sent across the election
    # exactly once: each increment answered the next value, and none was applied twice
    assert acked == list(range(1, len(acked) + 1))
    assert final == len(acked)

