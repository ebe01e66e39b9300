"""Leadership transfer against real node processes: to a named peer, to the most up-to-date
one, to an unreachable one (a bounded TransferFailed, writes resume), writes running through
transfers (retried, none lost), and the ``zraft conf transfer-leader`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.acceptance.harness import ET, ROOT, Acceptance, wait_for
from zraft.client import api
from zraft.errors import TransferFailed, ZRaftError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _term(acc: Acceptance, peer: str) -> int:
    return int(acc.stat(peer)["term"])


def test_transfer_to_a_named_peer_then_to_the_most_up_to_date(make_cluster) -> None:
    acc = make_cluster()
    leader = acc.leader()
    api.write(leader, ["k", "v0"], pool=acc.pool)
    target = next(p for p in acc.peers if p != leader)
    term = _term(acc, leader)
    # asked of a follower: the request follows the redirect to the leader
    assert api.transfer_leader(target, target, pool=acc.pool) == target
    assert acc.leader() == target
    assert _term(acc, target) == term + 1  # one election, started by TimeoutNow
    assert acc.stat(leader)["leader"] == target
    new = api.transfer_leader(leader, None, pool=acc.pool)
    assert new != target and new in acc.peers
    assert acc.leader() == new
    assert api.transfer_leader(new, new, pool=acc.pool) == new  # already there: a no-op
    assert api.write(acc.peers[0], ["k", "v1"], pool=acc.pool)[0] is not None
    assert api.query(acc.peers[0], ["get", "k"], pool=acc.pool)[0] == "v1"


def test_transfer_to_an_unreachable_or_unknown_peer_fails_bounded_and_writes_resume(
        make_cluster) -> None:
    acc = make_cluster()
    leader = acc.leader()
    down = next(p for p in acc.peers if p != leader)
    acc.kill(down)
    started = time.monotonic()
    with pytest.raises(TransferFailed) as err:
        api.transfer_leader(leader, down, timeout=10, pool=acc.pool)
    took = time.monotonic() - started
    assert err.value.details["reason"] == "timeout" and "did not take over" in str(err.value)
    assert took < 10 * ET  # bounded by two election timeouts (plus the round trip)
    assert acc.stat(leader)["role"] == "leader" and acc.stat(leader)["transfer"] is None
    api.write(leader, ["after", 1], pool=acc.pool)  # the leader takes writes again
    stranger = "zraft@127.0.0.1:1"
    with pytest.raises(TransferFailed) as err:
        api.transfer_leader(leader, stranger, pool=acc.pool)
    assert err.value.details["reason"] == "unknown_peer"


def test_writes_during_transfers_are_retried_and_none_is_lost(make_cluster) -> None:
    acc = make_cluster()
    acc.leader()
    acked: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def writer(base: int) -> None:
        i = base
        while not stop.is_set():
            try:
                api.write(acc.peers[i % 3], [f"w{i}", i], timeout=10, pool=acc.pool)
                acked.append(i)
            except ZRaftError as exc:  # a write that exhausted its retries
                errors.append(f"{type(exc).__name__}: {exc}")
            i += 1000

    threads = [threading.Thread(target=writer, args=(b,), daemon=True) for b in range(4)]
    for t in threads:
        t.start()
    try:
        def more_writes(what: str) -> None:
            n = len(acked)
            wait_for(lambda: len(acked) > n + 20, 20, what)

        leaders = []
        for _ in range(4):
            more_writes("writes to flow")
            leaders.append(api.transfer_leader(acc.peers[0], None, pool=acc.pool))
        more_writes("writes after the transfers")
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert not errors, errors[:3]
    assert len(set(leaders)) >= 2  # leadership really moved
    for i in acked:
        assert api.query(acc.peers[0], ["get", f"w{i}"], pool=acc.pool)[0] == i


def _zraft(acc: Acceptance, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZRAFT_")}
    env.update(ZRAFT_PEERS=",".join(acc.peers), ZRAFT_COOKIE_FILE=acc.cookie_file,
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-m", "zraft.cli", *argv], env=env,
                          capture_output=True, text=True, timeout=30)


def test_cli_transfer_leader(make_cluster) -> None:
    acc = make_cluster()
    leader = acc.leader()
    target = next(p for p in acc.peers if p != leader)
    done = _zraft(acc, "conf", "transfer-leader", "--to", target, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"leader": target}
    plain = _zraft(acc, "conf", "transfer-leader", "--peer", target)
    assert plain.returncode == 0 and plain.stdout.startswith("leader: ")
    failed = _zraft(acc, "conf", "transfer-leader", "--to", "zraft@127.0.0.1:1", "--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["error"] == "TransferFailed"
    assert _zraft(acc, "conf", "transfer-leader", "--to", "not-a-peer").returncode == 2
    wait_for(lambda: acc.leader(), 10, "a leader")


def test_rolling_restart_under_load_hands_over_once_and_loses_nothing(make_cluster) -> None:
    from bench.rolling_restart import measure

    acc = make_cluster()
    figures = measure(acc.cluster, acc.pool, transfer=True, writers=3)
    print(f"\nrolling restart (election timeout {ET * 1000:.0f} ms): longest gap in acked "
          f"writes {figures['max_gap_ms']} ms, {figures['acked']} acked")
    assert not figures["errors"] and not figures["lost"], figures["errors"][:3]
    assert [s["handed_to"] is not None for s in figures["steps"]] == [False, False, True]
    acc.leader()
