"""zraft_lib's full_zraft_progress (SPEC 10.2) and the end-to-end parts of basic_zraft_progress
(SPEC 10.1), ported to real node processes driven only through the client API.

zraft_lib forces elections with a test hook; real nodes elect by themselves, so each step
waits (with a deadline) for the leader the cluster chose, and leaders change by SIGKILL.
"""

from __future__ import annotations

import shutil
import threading
from typing import Any

import pytest

from tests.acceptance.harness import Acceptance, wait_for
from zraft.client import api
from zraft.errors import AlreadyPresent, Initialized
from zraft.transport.codec import pack
from zraft.transport.sentinels import NOT_FOUND

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _propose_raw(acc: Acceptance, peer: str, data: Any,
                 replies: list[tuple[str, Any]] | None = None) -> threading.Event:
    """One propose request sent straight to ``peer`` (no redirect following): zraft_lib's
    ``zraft_consensus:write``/``write_async``. The reply lands in ``replies``."""
    done = threading.Event()

    def on_reply(status: str, payload: Any) -> None:
        if replies is not None:
            replies.append((status, payload))
        done.set()

    acc.pool.request(peer, "propose", [peer.partition("@")[0], pack([1, data]), None], on_reply)
    return done


def _log(info: dict[str, Any]) -> tuple[int, int, int, int]:
    return info["commit"], info["first_index"], info["last_index"], info["term"]


def _caught_up(acc: Acceptance, peer: str, leader: str) -> bool:
    """Same commit and last index as the leader, and everything committed applied."""
    mine, theirs = acc.stat(peer), acc.stat(leader)
    return (mine["commit"], mine["applied"], mine["last_index"], mine["leader"]) == (
        theirs["commit"], theirs["commit"], theirs["last_index"], leader)


def _contents(acc: Acceptance, peer: str) -> list[Any]:
    return api.query_local(peer, ["list", ""], pool=acc.pool)


def test_bootstrap_then_configure_step_by_step(make_cluster) -> None:
    """10.1 step 1 and 10.2 steps 1-2, the same indexes as zraft_lib: blank peers; the
    bootstrapped one elects itself at term 2 with CONFIG(1) + NOOP(2) committed; the new
    configuration is the joint entry (3) then the stable one (4), replicated to all."""
    acc = make_cluster(create=False)
    for peer in acc.peers:
        api.create_peer(peer, "dict", pool=acc.pool)
        info = acc.stat(peer)
        assert (info["term"], info["last_index"], info["config_state"]) == (0, 0, "blank")
    first = acc.peers[0]
    api.bootstrap(first, pool=acc.pool)
    wait_for(lambda: acc.stat(first)["role"] == "leader", 10, "the bootstrapped peer to lead")
    wait_for(lambda: acc.stat(first)["commit"] == 2, 5, "the leader's no-op to commit")
    info = acc.stat(first)
    assert (info["term"], info["first_index"], info["last_index"], info["last_term"]) == (
        2, 1, 2, 2)
    for peer in acc.peers[1:]:  # untouched: nobody knows them yet
        assert (acc.stat(peer)["term"], acc.stat(peer)["last_index"]) == (0, 0)
    with pytest.raises(Initialized):
        api.bootstrap(first, pool=acc.pool)
    assert api.get_conf(first, pool=acc.pool) == (first, [first])

    assert api.set_new_conf(first, acc.peers, [first], pool=acc.pool) == sorted(acc.peers)
    info = acc.stat(first)
    assert (info["commit"], info["last_index"], info["config_index"], info["config_state"]) == (
        4, 4, 4, "stable")
    for peer in acc.peers[1:]:
        wait_for(lambda p=peer: _caught_up(acc, p, first), 10, f"{peer} to follow")
        info = acc.stat(peer)
        assert (info["term"], info["commit"], info["last_index"]) == (2, 4, 4)
    assert api.get_conf(acc.peers[2], pool=acc.pool) == (first, sorted(acc.peers))


def test_create_conf_redirects_and_reads(make_cluster) -> None:
    """10.2 steps 1-3: create, get_conf, a follower refuses a write and names the leader."""
    acc = make_cluster(create=False)
    for peer in acc.peers:
        assert api.check_exists(peer, pool=acc.pool) is None
    assert acc.create() == sorted(acc.peers)
    for peer in acc.peers:
        with pytest.raises(AlreadyPresent):
            api.check_exists(peer, pool=acc.pool)
    with pytest.raises(AlreadyPresent):
        acc.create()

    leader = acc.leader()
    for peer in acc.peers:  # any peer answers get_conf with the leader's view
        assert api.get_conf(peer, pool=acc.pool) == (leader, sorted(acc.peers))
    followers = [p for p in acc.peers if p != leader]
    wait_for(lambda: all(_caught_up(acc, f, leader) for f in followers), 10, "followers in sync")
    term = acc.stat(leader)["term"]
    for peer in followers:
        info = acc.stat(peer)
        assert (info["role"], info["term"], info["config_state"]) == ("follower", term, "stable")
        assert sorted(info["config"]["old"]) == sorted(acc.peers)

    # zraft_consensus:write(test2, ...) -> {leader, test1}: the raw answer of a follower
    replies: list[tuple[str, Any]] = []
    assert _propose_raw(acc, followers[0], [1, "1"], replies).wait(5)
    status, payload = replies[0]
    assert status == "not_leader" and payload["leader"] == leader
    assert api.query_local(followers[0], 1, pool=acc.pool) is NOT_FOUND  # not applied

    # zraft_client follows the redirect and names the leader that answered
    assert api.write(followers[0], [1, "1"], pool=acc.pool) == ("ok", leader)
    assert api.query(followers[1], 1, pool=acc.pool) == ("1", leader)
    assert api.query(leader, 1, pool=acc.pool) == ("1", leader)
    assert api.write(acc.light(), [2, "2"], pool=acc.pool)[0] == "ok"
    assert api.query(acc.light(), 2, pool=acc.pool)[0] == "2"


def test_restarted_follower_catches_up_and_log_is_snapshotted(make_cluster) -> None:
    """10.2 steps 4-5: a follower restarted from its own data catches up; with
    max_log_count=10 the log is compacted behind a snapshot (first_index > 1)."""
    acc = make_cluster(max_log_count=10)
    leader = acc.leader()
    follower = next(p for p in acc.peers if p != leader)
    assert api.write(leader, [1, "1"], pool=acc.pool)[0] == "ok"
    acc.kill(follower)
    acc.restart(follower)
    wait_for(lambda: _caught_up(acc, follower, leader), 10, "the restarted follower")
    assert api.query_local(follower, 1, pool=acc.pool) == "1"

    for i in range(2, 13):
        assert api.write(leader, [f"k{i}", i], pool=acc.pool)[0] == "ok"
    wait_for(lambda: acc.stat(leader)["first_index"] > 1, 10, "the leader to compact")
    info = acc.stat(leader)
    commit, _first, last, _term = _log(info)
    assert commit == last
    assert info["snapshot_index"] >= 10 and info["fsm"]["snapshots_taken"] >= 1
    expected = sorted([f"k{i}", i] for i in range(2, 13))
    for peer in acc.peers:
        wait_for(lambda p=peer: _caught_up(acc, p, leader), 10, f"{peer} in sync")
        wait_for(lambda p=peer: acc.stat(p)["first_index"] > 1, 10, f"{peer} to compact")
        assert _contents(acc, peer) == expected
        assert api.query_local(peer, 1, pool=acc.pool) == "1"


def test_empty_node_catches_up_by_snapshot(make_cluster) -> None:
    """10.2 step 6 done for real: a node whose data directory is gone gets a blank peer and
    the leader installs its snapshot on it (the log before it no longer exists)."""
    acc = make_cluster(max_log_count=10)
    leader = acc.leader()
    follower = next(p for p in acc.peers if p != leader)
    for i in range(1, 13):
        assert api.write(leader, [f"k{i}", i], pool=acc.pool)[0] == "ok"
    wait_for(lambda: acc.stat(leader)["first_index"] > 1, 10, "the leader to compact")

    acc.kill(follower)
    shutil.rmtree(acc.cluster.node(follower).directory / "data")
    acc.start_node(follower)
    assert api.check_exists(follower, pool=acc.pool) is None  # nothing left of it
    api.create_peer(follower, "dict", pool=acc.pool)
    wait_for(lambda: _caught_up(acc, follower, leader), 15, "the empty follower")
    info = acc.stat(follower)
    assert info["fsm"]["snapshots_installed"] >= 1 and info["first_index"] > 1
    assert _contents(acc, follower) == sorted([f"k{i}", i] for i in range(1, 13))
    assert api.write(acc.light(), ["after", 1], pool=acc.pool)[0] == "ok"
    wait_for(lambda: api.query_local(follower, "after", pool=acc.pool) == 1, 10, "replication")


def test_old_leader_uncommitted_entries_are_truncated(make_cluster) -> None:
    """10.2 step 7: a leader left alone appends 21 writes it cannot commit; the two others
    elect a new leader without it; when it comes back its uncommitted suffix is cut and
    it converges to the new leader's log."""
    acc = make_cluster()
    old = acc.leader()
    assert api.write(old, ["base", 1], pool=acc.pool)[0] == "ok"
    others = [p for p in acc.peers if p != old]
    wait_for(lambda: all(_caught_up(acc, p, old) for p in others), 10, "followers in sync")
    for peer in others:
        acc.kill(peer)
    before = acc.stat(old)
    replies: list[tuple[str, Any]] = []
    for i in range(21):  # write_async: nobody waits for these
        _propose_raw(acc, old, [f"u{i}", i], replies)
    wait_for(lambda: acc.stat(old)["last_index"] >= before["last_index"] + 21, 5,
             "the lone leader to append")
    after = acc.stat(old)
    assert after["commit"] == before["commit"]  # no majority: nothing new commits
    acc.kill(old)
    assert all(status != "ok" for status, _ in replies)  # never acknowledged

    acc.start_nodes(others)
    new = acc.leader(timeout=15)
    assert new in others
    assert api.write(new, ["new", 1], pool=acc.pool)[0] == "ok"
    acc.restart(old)
    wait_for(lambda: _caught_up(acc, old, new), 15, "the old leader to converge")
    mine, theirs = acc.stat(old), acc.stat(new)
    assert mine["term"] == theirs["term"] and mine["last_index"] < after["last_index"]
    assert _contents(acc, old) == [["base", 1], ["new", 1]]


def test_paused_leader_steps_down_to_the_newer_term(make_cluster) -> None:
    """10.1 steps 7-10 end to end: a leader that misses a term (SIGSTOP) while the others
    elect a new leader steps down when it sees the newer term, and follows it."""
    acc = make_cluster()
    old = acc.leader()
    old_term = acc.stat(old)["term"]
    acc.cluster.pause(acc.node_of(old))
    try:
        new = acc.leader(timeout=15, exclude=old)
        assert api.write(new, ["while-paused", 1], pool=acc.pool)[0] == "ok"
    finally:
        acc.cluster.resume(acc.node_of(old))
    wait_for(lambda: _caught_up(acc, old, new), 15, "the old leader to follow")
    info, theirs = acc.stat(old), acc.stat(new)
    assert info["role"] == "follower" and info["term"] == theirs["term"] > old_term
    assert api.query_local(old, "while-paused", pool=acc.pool) == 1
