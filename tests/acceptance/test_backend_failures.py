"""A user backend that cannot run fails loudly, locally and exactly, on real node processes.

- ``create`` with a backend a node cannot import, construct or initialise fails with
  ``zraft.BackendError`` naming the cause in one line, and leaves nothing on any node:
  ``check_exists`` says the peers can be created, and once the cause is fixed they are.
- A stored group whose backend cannot load when its node restarts, or whose
  ``install_snapshot`` raises, stops on that node alone: one line on the node's stderr,
  ``backend_failed`` in ``stat``, ``node_status`` and ``zraft cluster status``; the node and
  its other group keep serving, the other replicas keep the group going.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import zraft
from tests.acceptance.harness import Acceptance, wait_for
from zraft.client import api
from zraft.cluster import admin, status
from zraft.node.datadir import IDENTITY_FILE, LOCK_FILE
from zraft.storage.naming import peer_dir_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

USER_BACKENDS = Path(__file__).with_name("user_backends")
FLAKY = "flaky_backend:Flaky"


def _other_group(acc: Acceptance) -> list[str]:
    """A dict group on the same nodes (peer name "other")."""
    peers = [p.replace(f"{acc.cluster.peer_name}@", "other@") for p in acc.peers]
    api.create(peers, "dict", timeout=20, pool=acc.pool)
    return peers


def _stderr(acc: Acceptance, node: int) -> str:
    return (acc.cluster.node(node).directory / "stdout.log").read_text()


def _create_error(acc: Acceptance, backend: str, cls: type = zraft.BackendError) -> Any:
    with pytest.raises(cls) as info:
        api.create(acc.peers, backend, timeout=10, pool=acc.pool)
    return info.value


def _nothing_left(acc: Acceptance, other: list[str]) -> None:
    """No trace of the failed group on any node; the node's other group is all there is."""
    kept = {peer_dir_name(p) for p in other}
    for n in acc.cluster.nodes:
        api.check_exists(acc.peer(n.index), timeout=5, pool=acc.pool)  # no AlreadyPresent
        assert set(admin.node_status(acc.pool, acc.cluster, n, 5.0)["peers"]) == {"other"}
        node_files = {LOCK_FILE, IDENTITY_FILE}  # the node's own, not a group's
        made = {p.name for p in (n.directory / "data").iterdir()} - kept - node_files
        assert not made, f"a peer directory was made: {made}"
        assert n.alive(), "a failed create must never stop a node"


def _other_serves(acc: Acceptance, other: list[str], value: str) -> None:
    """The nodes' other group takes a write and every replica of it has it."""
    api.write(other[0], ["k", value], timeout=10, pool=acc.pool)
    for peer in other:
        wait_for(lambda peer=peer: api.query_local(peer, "k", timeout=2, pool=acc.pool)
                 == value, 10, f"{peer} to serve the other group")


def test_create_fails_exactly_and_leaves_nothing_until_the_cause_is_fixed(
        make_cluster, tmp_path: Path) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    acc = make_cluster(create=False, backends=["late_backend:Flaky", "flaky_backend:Nope",
                                               "flaky_backend:BrokenConstructor", FLAKY],
                       python_path=[modules, USER_BACKENDS])
    nodes = [n.address for n in acc.cluster.nodes]
    other = _other_group(acc)

    err = _create_error(acc, "late_backend:Flaky")
    assert str(err) == "; ".join(
        f"{acc.peer(i + 1)}: backend late_backend:Flaky cannot be loaded on node {addr}: "
        "ModuleNotFoundError: No module named 'late_backend'" for i, addr in enumerate(nodes))
    assert type(err) is zraft.BackendError and err.code == "backend_error"
    _nothing_left(acc, other)
    _other_serves(acc, other, "after a failed import")

    err = _create_error(acc, "flaky_backend:Nope")
    assert str(err) == "; ".join(
        f"{acc.peer(i + 1)}: backend flaky_backend:Nope cannot be loaded on node {addr}: "
        "module 'flaky_backend' has no class 'Nope'" for i, addr in enumerate(nodes))
    err = _create_error(acc, "flaky_backend:BrokenConstructor")
    assert str(err) == "; ".join(
        f"{acc.peer(i + 1)}: backend flaky_backend:BrokenConstructor cannot be loaded on node "
        f"{addr}: BrokenConstructor() raised OSError: cannot open /nonexistent/flaky.db"
        for i, addr in enumerate(nodes))
    err = _create_error(acc, "not_listed:Backend", zraft.BackendNotAllowed)
    assert str(err).startswith(
        f"{acc.peer(1)}: backend 'not_listed:Backend' is not allowed on node {nodes[0]} (its "
        "[node] backends: late_backend:Flaky, flaky_backend:Nope, "
        "flaky_backend:BrokenConstructor, flaky_backend:Flaky, dict): add it there")
    # create_peer alone (add a member, or a script) is checked at the node boundary too,
    # before any directory exists; a name not listed is never imported
    with pytest.raises(zraft.BackendError) as one:
        api.create_peer(acc.peer(1), "late_backend:Flaky", timeout=10, pool=acc.pool)
    assert str(one.value) == (f"backend late_backend:Flaky cannot be loaded on node "
                              f"{nodes[0]}: ModuleNotFoundError: No module named 'late_backend'")
    for hostile in ("os:system", "../x:Y", "dict:"):
        with pytest.raises(zraft.BackendNotAllowed):
            api.create_peer(acc.peer(1), hostile, timeout=10, pool=acc.pool)
    _nothing_left(acc, other)
    _other_serves(acc, other, "after every failed create")

    # the cause fixed (the module now exists), the same create works, on the same nodes
    shutil.copy(USER_BACKENDS / "flaky_backend.py", modules / "late_backend.py")
    for peer in acc.peers:
        api.check_exists(peer, timeout=5, pool=acc.pool, backend="late_backend:Flaky")
    assert api.create(acc.peers, "late_backend:Flaky", timeout=20,
                      pool=acc.pool) == sorted(acc.peers)
    assert api.write(acc.peers[0], ["add", "a", 2], timeout=10, pool=acc.pool)[0] == 2
    _other_serves(acc, other, "at the end")


def test_init_that_raises_on_one_node_fails_create_and_leaves_nothing(make_cluster) -> None:
    """Only node 3 cannot run it: the create is refused as a whole, naming node 3 alone,
    and nodes 1 and 2 (which could) have nothing either: no half-made group."""
    acc = make_cluster(create=False, start=False, backends=[FLAKY],
                       python_path=[USER_BACKENDS])
    acc.cluster.node(3).env = {"FLAKY_FAIL_INIT": "1"}
    acc.start_nodes([1, 2, 3])
    other = _other_group(acc)
    err = _create_error(acc, FLAKY)
    node3 = acc.cluster.node(3)
    assert str(err) == (f"{acc.peer(3)}: backend {FLAKY} cannot be loaded on node "
                        f"{node3.address}: Flaky.init raised OSError: no state directory "
                        f"for {acc.peer(3)}")
    _nothing_left(acc, other)
    _other_serves(acc, other, "after a failed init")


def _failed(acc: Acceptance, node: int) -> dict[str, Any]:
    info = acc.stat(acc.peer(node))
    assert info.get("role") == "down", info
    return info["backend_failed"]


def test_a_stored_group_whose_backend_cannot_load_stops_alone(make_cluster,
                                                             tmp_path: Path) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    shutil.copy(USER_BACKENDS / "flaky_backend.py", modules / "moving_backend.py")
    acc = make_cluster(create=False, backends=["moving_backend:Flaky"], python_path=[modules])
    api.create(acc.peers, "moving_backend:Flaky", timeout=20, pool=acc.pool)
    other = _other_group(acc)
    api.write(acc.peers[0], ["add", "a", 1], timeout=10, pool=acc.pool)

    acc.cluster.stop_node(2)
    (modules / "moving_backend.py").rename(modules / "moved_away.py")
    shutil.rmtree(modules / "__pycache__", ignore_errors=True)
    acc.start_node(2)  # the node starts and serves (it printed "ready")

    cause = ("backend moving_backend:Flaky cannot be loaded: ModuleNotFoundError: No module "
             "named 'moving_backend'")
    line = f"zraft node {acc.cluster.node(2).address}: peer {acc.peer(2)} is stopped: " \
           f"{cause}; fix the backend, then restart the node\n"
    wait_for(lambda: line in _stderr(acc, 2), 10, "the one line on the node's stderr")
    assert _failed(acc, 2)["error"] == cause
    node_info = admin.node_status(acc.pool, acc.cluster, acc.cluster.node(2), 5.0)
    assert node_info["peers"]["zraft"]["backend_failed"] == line.split(": ", 1)[1].strip()
    row = status.collect(acc.cluster, acc.pool)["nodes"][1]
    assert (row["state"], row["failure"]) == ("failed", cause)
    assert f"backend failed: {cause}" in status.render(status.collect(acc.cluster, acc.pool))

    # a client asking the stopped peer is told why (no leader known: it never ran)
    with pytest.raises(zraft.BackendFailed) as info:
        api.query_local(acc.peer(2), "all", timeout=5, pool=acc.pool)
    assert str(info.value) == line.split(": ", 1)[1].strip()
    # the group goes on with the other two; the node's other group serves, also there
    assert api.write(acc.peers[0], ["add", "a", 1], timeout=10, pool=acc.pool)[0] == 2
    api.write(other[1], ["k", "v"], timeout=10, pool=acc.pool)
    wait_for(lambda: api.query_local(other[1], "k", timeout=2, pool=acc.pool) == "v", 10,
             "the other group on the failed peer's node")

    # fixed and restarted, the peer catches up
    (modules / "moved_away.py").rename(modules / "moving_backend.py")
    acc.cluster.stop_node(2)
    acc.start_node(2)
    wait_for(lambda: api.query_local(acc.peer(2), "all", timeout=2, pool=acc.pool)
             == [["a", 2]], 15, "the fixed peer to catch up")


def _all_states(acc: Acceptance, peers: list[str]) -> list[Any]:
    return [api.query_local(p, "all", timeout=5, pool=acc.pool) for p in peers]


def _same_everywhere(acc: Acceptance, peers: list[str], expected: Any) -> None:
    wait_for(lambda: _all_states(acc, peers) == [expected] * len(peers), 15,
             f"every replica to hold {expected}")


def test_an_apply_that_raises_answers_alike_and_replicas_stay_equal(make_cluster) -> None:
    """The documented rule (docs/backends.md, "When apply raises"): the write answers
    ``backend_error: Type: message`` on every replica, the state is left as the backend left
    it, the same everywhere, also after snapshots and a restart that replays the log."""
    acc = make_cluster(create=False, backends=[FLAKY], python_path=[USER_BACKENDS],
                       max_log_count=20)
    api.create(acc.peers, FLAKY, timeout=20, pool=acc.pool)
    other = _other_group(acc)
    leader = acc.leader()
    for i in range(30):
        assert api.write(leader, ["add", "a", 1], timeout=10, pool=acc.pool)[0] == i + 1
        with pytest.raises(zraft.BackendError) as info:
            api.write(leader, ["add_then_fail", "b", 2], timeout=10, pool=acc.pool)
        assert str(info.value) == "backend_error: ValueError: refused after adding 2 to b"
    with pytest.raises(zraft.BackendError) as info:
        api.write(leader, ["div", "a", 0], timeout=10, pool=acc.pool)
    assert str(info.value) == ("backend_error: ZeroDivisionError: integer division or "
                               "modulo by zero")
    with pytest.raises(zraft.BadCommand) as bad:
        api.write(leader, ["mul", "a", 2], timeout=10, pool=acc.pool)
    assert str(bad.value) == "bad_command: flaky writes: add, add_then_fail, div, exit"
    # sys.exit() in a backend is a BaseException: an error result like any other, never
    # the end of the state machine, the peer, the node or its other group
    with pytest.raises(zraft.BackendError) as info:
        api.write(leader, ["exit", 3], timeout=10, pool=acc.pool)
    assert str(info.value) == "backend_error: SystemExit: 3"
    with pytest.raises(zraft.BackendError) as info:
        api.query(leader, ["exit", 4], timeout=10, pool=acc.pool)
    assert str(info.value) == "backend_error: SystemExit: 4"
    _other_serves(acc, other, "after sys.exit() in a backend")
    for read in (api.query, api.query_local):  # a read that raises answers the same way
        with pytest.raises(zraft.BackendError) as info:
            read(leader, ["div", "a", 0], timeout=10, pool=acc.pool)
        assert str(info.value) == ("backend_error: ZeroDivisionError: integer division or "
                                   "modulo by zero")
    with acc.session() as session:  # exactly-once writes answer the same way
        with pytest.raises(zraft.BackendError) as info:
            session.write_sync(["add_then_fail", "c", 5])
        assert str(info.value) == "backend_error: ValueError: refused after adding 5 to c"

    # the partial changes stand, identically on every replica (a then b then c)
    expected = [["a", 30], ["b", 60], ["c", 5]]
    _same_everywhere(acc, acc.peers, expected)
    assert all((acc.stat(p).get("fsm") or {}).get("snapshot_index", 0) > 0 for p in acc.peers)
    follower = next(p for p in acc.peers if p != leader)
    acc.cluster.kill(acc.node_of(follower))
    api.write(leader, ["add", "a", 1], timeout=10, pool=acc.pool)
    acc.restart(follower)  # snapshot + log replay
    _same_everywhere(acc, acc.peers, [["a", 31], ["b", 60], ["c", 5]])
    _other_serves(acc, other, "after the raising applies")


def test_a_restore_that_raises_stops_that_replica_alone(make_cluster) -> None:
    acc = make_cluster(create=False, start=False, backends=[FLAKY],
                       python_path=[USER_BACKENDS], max_log_count=20)
    acc.cluster.node(3).env = {"FLAKY_FAIL_RESTORE": "1"}
    acc.start_nodes([1, 2, 3])
    api.create(acc.peers, FLAKY, timeout=20, pool=acc.pool)
    other = _other_group(acc)
    leader = acc.leader(exclude=acc.peer(3))  # so the stopped node is a follower
    if leader == acc.peer(3):
        pytest.skip("node 3 leads")  # never seen: the first peer is bootstrapped and leads
    acc.cluster.stop_node(3)
    for _ in range(50):  # past max_log_count: the leader snapshots and compacts its log
        api.write(leader, ["add", "a", 1], timeout=10, pool=acc.pool)
    acc.start_node(3)  # behind the compaction: the leader sends it a snapshot

    suffix = "Flaky.install_snapshot raised RuntimeError: restore refused on this node"
    failed = wait_for(lambda: _failed(acc, 3), 15, "node 3's peer to stop")
    assert failed["error"].startswith(f"backend {FLAKY}: installing the leader's snapshot ")
    assert failed["error"].endswith(suffix)
    line = f"zraft node {acc.cluster.node(3).address}: peer {acc.peer(3)} is stopped: " \
           f"{failed['error']}; fix the backend, then restart the node\n"
    assert line in _stderr(acc, 3)

    # a client asking the stopped peer is sent to the leader it knew
    assert api.write(acc.peer(3), ["add", "a", 1], timeout=10, pool=acc.pool)[0] == 51
    _same_everywhere(acc, acc.peers[:2], [["a", 51]])
    api.write(other[0], ["k", "after"], timeout=10, pool=acc.pool)
    wait_for(lambda: api.query_local(other[2], "k", timeout=2, pool=acc.pool) == "after", 10,
             "the other group on node 3")

    # restarted, it fails the same way (from its own copy of the snapshot, or the leader's)
    acc.cluster.stop_node(3)
    acc.start_node(3)
    failed = wait_for(lambda: _failed(acc, 3), 15, "node 3's peer to stop again")
    assert failed["error"].endswith(suffix)
    assert acc.cluster.node(3).alive()
