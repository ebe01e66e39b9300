"""Sessions are replicated state: they survive snapshots, snapshot installs and a restart of
the whole cluster, and every replica expires them identically.

- A node rebuilt from an empty data directory learns the sessions from the snapshot it is
  sent; when the owner dies, that node deletes the temporary key too (no replica keeps it).
- Every node killed and restarted: a live session reconnects, keeps its temporary key and
  its exactly-once numbering.
"""

from __future__ import annotations

import shutil
import time

import pytest

from tests.acceptance.harness import SESSION_TIMEOUT, Acceptance, start_owner, wait_for
from zraft.client import api
from zraft.client.watcher import SessionState
from zraft.transport.sentinels import NOT_FOUND

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _everywhere(acc: Acceptance, key: str, value: object) -> bool:
    return all(api.query_local(p, key, pool=acc.pool) == value for p in acc.peers)


def test_sessions_travel_in_snapshots_and_expire_on_every_replica(make_cluster) -> None:
    acc = make_cluster(max_log_count=10)
    owner = start_owner(acc, "eph")
    leader = acc.leader()
    for i in range(25):  # several snapshots, each holding the owner's session
        assert api.write(leader, [f"k{i}", i], pool=acc.pool)[0] == "ok"
    wait_for(lambda: acc.stat(leader)["first_index"] > 1, 10, "the leader to compact")

    rebuilt = next(p for p in acc.peers if p != leader)
    acc.kill(rebuilt)
    shutil.rmtree(acc.cluster.node(rebuilt).directory / "data")
    acc.start_node(rebuilt)
    api.create_peer(rebuilt, "dict", pool=acc.pool)
    wait_for(lambda: acc.stat(rebuilt)["fsm"]["snapshots_installed"] >= 1, 15,
             "the snapshot install")
    wait_for(lambda: _everywhere(acc, "eph", "owned"), 10, "the key on every replica")
    info = acc.stat(rebuilt)["fsm"]
    assert (info["sessions"], info["temporary_keys"]) == (1, 1)  # from the snapshot

    owner.kill()
    owner.wait(5)
    wait_for(lambda: _everywhere(acc, "eph", NOT_FOUND), SESSION_TIMEOUT + 10,
             "every replica to delete the key")
    for peer in acc.peers:
        wait_for(lambda p=peer: acc.stat(p)["fsm"]["sessions"] == 0, 10, f"{peer}: no session")
        assert acc.stat(peer)["fsm"]["temporary_keys"] == 0


def test_live_session_survives_a_whole_cluster_restart(make_cluster) -> None:
    """Expiry is decided from log time stamps: a session survives an outage of the whole
    cluster that is shorter than its timeout (a longer one legitimately expires it)."""
    acc = make_cluster()
    timeout = 10.0
    states: list[SessionState] = []
    s = acc.session(session_timeout=timeout, listeners=[states.append])
    assert s.write_sync(["eph", "owned"], temporary=True) == "ok"
    assert [s.write_sync(["incr", "n", 1]) for _ in range(3)] == [1, 2, 3]
    last_contact = time.monotonic()
    for n in acc.cluster.nodes:
        acc.cluster.kill(n)
    acc.start_nodes(acc.peers)
    leader = acc.leader(timeout=15)
    outage = time.monotonic() - last_contact
    if outage > timeout / 2:  # the leader's first entry may be later still: no margin left
        pytest.skip(f"the restart took {outage:.1f}s on this machine, too close to the "
                    f"{timeout:.0f}s session timeout")
    assert s.write_sync(["incr", "n", 1], timeout=10) == 4
    assert s.query_sync("eph", timeout=10) == "owned"
    assert s.state == SessionState.CONNECTED and SessionState.EXPIRED not in states
    assert acc.stat(leader)["fsm"]["sessions"] == 1
    s.stop()
    wait_for(lambda: _everywhere(acc, "eph", NOT_FOUND), 10, "the key to go with the session")
