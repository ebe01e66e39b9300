"""The sqlite backend on real node processes: writes, a tx that rolls back everywhere,
linearizable and local reads, reads that cannot write, temporary rows and watches, a
restart that replays only the log after the database's stored index, and a follower behind
the leader's compaction that catches up by installing the snapshot."""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest

from tests.transport.helpers import wait_for
from zraft.client import api
from zraft.errors import BadCommand

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SCHEMA = "CREATE TABLE acct(name TEXT PRIMARY KEY, cents INTEGER NOT NULL CHECK (cents >= 0))"


def _cluster(make_cluster: Any, **kwargs: Any) -> Any:
    acc = make_cluster(create=False, backend="sqlite", **kwargs)
    api.create(acc.peers, "sqlite", timeout=20.0, pool=acc.pool)
    return acc


def _q(acc: Any, peer: str, sql: str, params: Any = None, local: bool = False) -> Any:
    if local:
        return api.query_local(peer, ["query", sql, params], timeout=5, pool=acc.pool)
    return api.query(peer, ["query", sql, params], timeout=5, pool=acc.pool)[0]


def _caught_up(acc: Any, peer: str, sql: str) -> Any:
    """``peer``'s own answer, None while its copy does not have the table yet (a restarted
    replica before it caught up: its last commit may predate the table)."""
    try:
        return _q(acc, peer, sql, local=True)
    except BadCommand as exc:
        if "no such table" not in str(exc):
            raise
        return None


def _w(acc: Any, peer: str, command: Any) -> Any:
    return api.write(peer, command, timeout=10, pool=acc.pool)[0]


def _applied_to(acc: Any, peer: str, index: int) -> Any:
    """``peer``'s fsm stats once it published them after applying ``index``."""
    return wait_for(lambda: (f := acc.stat(peer)["fsm"])["applied_index"] >= index and f, 10)


def test_sql_on_three_nodes(make_cluster: Any) -> None:
    acc = _cluster(make_cluster)
    p1, p2, p3 = acc.peers
    _w(acc, p1, ["exec", SCHEMA])
    assert _w(acc, p2, ["execmany", "INSERT INTO acct VALUES (?, ?)",
                        [["alice", 500], ["bob", 0]]]) == {"rows_affected": 2,
                                                           "last_row_id": 2}
    # a transfer that would overdraw: the CHECK fails on the second statement, nothing stays
    with pytest.raises(BadCommand, match="IntegrityError: CHECK constraint failed"):
        _w(acc, p1, ["tx", [["UPDATE acct SET cents = cents + 900 WHERE name = 'bob'"],
                            ["UPDATE acct SET cents = cents - 900 WHERE name = 'alice'"]]])
    _w(acc, p3, ["tx", [["UPDATE acct SET cents = cents + 200 WHERE name = 'bob'"],
                        ["UPDATE acct SET cents = cents - 200 WHERE name = 'alice'"]]])
    want = {"columns": ["name", "cents"], "rows": [["alice", 300], ["bob", 200]]}
    assert _q(acc, p2, "SELECT name, cents FROM acct ORDER BY name") == want
    for peer in acc.peers:  # every replica, the same rows
        wait_for(lambda peer=peer: _q(acc, peer, "SELECT name, cents FROM acct ORDER BY name",
                                      local=True) == want, 10)
    for sql in ("DELETE FROM acct", "UPDATE acct SET cents = 0", "PRAGMA query_only = 0"):
        with pytest.raises(BadCommand, match="not allowed"):
            _q(acc, p1, sql)
        with pytest.raises(BadCommand, match="not allowed"):
            _q(acc, p3, sql, local=True)
    with pytest.raises(BadCommand, match="random"):
        _w(acc, p1, ["exec", "UPDATE acct SET cents = abs(random()) % 10"])
    assert _q(acc, p1, "SELECT sum(cents) FROM acct")["rows"] == [[500]]


def test_temporary_rows_and_watches(make_cluster: Any) -> None:
    acc = _cluster(make_cluster)
    _w(acc, acc.peers[0], ["exec", "CREATE TABLE lock(name TEXT PRIMARY KEY, holder TEXT)"])
    holder = acc.session()
    holder.write_sync(["exec", "INSERT INTO lock VALUES ('db', 'me')"], temporary=True)
    changes: queue.Queue[Any] = queue.Queue()
    observer = acc.session()
    seen = observer.query_sync(["query", "SELECT name FROM lock"], watch=changes)
    assert seen["rows"] == [["db"]]
    holder.stop()  # the session ends: its row goes, and the watch on the table fires
    assert changes.get(timeout=10).reason == "data_changed"
    assert _q(acc, acc.peers[1], "SELECT count(*) FROM lock")["rows"] == [[0]]


def test_key_watches_fire_for_their_row_only_and_follow_the_leader(make_cluster: Any) -> None:
    """A watched ["get", table, key] on a declared key-value table fires for that row
    (update, delete, a temporary row's session ending), not for other rows; one-shot;
    a leader change fires leader_changed and, re-armed on the new leader, it fires again."""
    acc = _cluster(make_cluster)
    _w(acc, acc.peers[0], ["exec", "CREATE TABLE kv(k TEXT PRIMARY KEY, v)"])
    assert _w(acc, acc.peers[1], ["watch_keys", "kv"]) == {"table": "kv", "key": "k"}
    _w(acc, acc.peers[0], ["execmany", "INSERT INTO kv VALUES (?, ?)", [["a", 1], ["b", 2]]])
    observer = acc.session()
    on_a: queue.Queue[Any] = queue.Queue()
    on_b: queue.Queue[Any] = queue.Queue()

    def arm(key: str, q: queue.Queue[Any]) -> Any:
        return observer.query_sync(["get", "kv", key], watch=q, timeout=10)["rows"]

    assert arm("a", on_a) == [["a", 1]]
    assert arm("b", on_b) == [["b", 2]]
    # b changes: b's watch fires; a's, armed on the same session and fired by the same
    # apply batch if at all, has not
    _w(acc, acc.peers[2], ["exec", "UPDATE kv SET v = 3 WHERE k = 'b'"])
    assert on_b.get(timeout=10).reason == "data_changed"
    assert on_a.empty()
    _w(acc, acc.peers[0], ["exec", "UPDATE kv SET v = 4 WHERE k = 'a'"])
    assert on_a.get(timeout=10).reason == "data_changed"
    _w(acc, acc.peers[0], ["exec", "DELETE FROM kv"])  # one-shot: both already fired
    # a temporary row: its watch fires when the holder's session ends
    holder = acc.session()
    holder.write_sync(["exec", "INSERT INTO kv VALUES ('lock', 'me')"], temporary=True)
    assert arm("lock", on_a) == [["lock", "me"]]
    assert arm("b", on_b) == []  # armed on a missing row: fires when it appears
    holder.stop()
    assert on_a.get(timeout=10).reason == "data_changed"
    assert on_b.empty()
    # leader change: the watch fires leader_changed; re-armed on the new leader (which has
    # the same triggers, from the log), it fires for its row
    leader = acc.leader()
    new = api.transfer_leader(leader, timeout=15, pool=acc.pool)
    assert new != leader
    assert on_b.get(timeout=15).reason == "leader_changed"
    acc.leader(exclude=leader)
    assert arm("b", on_b) == []
    assert arm("a", on_a) == []
    _w(acc, acc.light(), ["exec", "INSERT INTO kv VALUES ('b', 5)"])
    assert on_b.get(timeout=10).reason == "data_changed"
    assert on_a.empty()


def test_restart_replays_only_after_the_stored_index_and_lagging_follower_installs(
        make_cluster: Any) -> None:
    acc = _cluster(make_cluster, max_log_count=40, extra_raft={"snapshot_log_ratio": 0})
    leader = acc.leader()
    _w(acc, leader, ["exec", "CREATE TABLE n(i INTEGER)"])
    for i in range(60):  # past max_log_count: every peer has a snapshot, and log after it
        _w(acc, leader, ["exec", "INSERT INTO n VALUES (?)", [i]])
    follower = next(p for p in acc.peers if p != leader)
    # "fsm" stats are published after an apply batch, and a leader answers a write before
    # it publishes: its fsm applied_index may still be the batch before the last write.
    # Wait on the leader's log instead (the peer's own, live): the follower has applied
    # every entry in it, so the read below commits all of them
    _applied_to(acc, follower, acc.stat(leader)["last_index"])
    _q(acc, follower, "SELECT 1", local=True)  # a read commits the open transaction
    _w(acc, leader, ["exec", "INSERT INTO n VALUES (?)", [60]])  # stat is published
    # after the batch that applies this write: the first stat that shows the read's commit
    before = _applied_to(acc, follower, acc.stat(leader)["last_index"])
    assert before["snapshot_index"] > 0
    assert before["backend"]["db_index"] > before["snapshot_index"]
    acc.kill(follower)
    acc.restart(follower)
    # the restarted peer kept its database: the log between its snapshot and the stored
    # index was answered from the stored replies (no SQL), the rest ran
    after = wait_for(lambda: (f := acc.stat(follower)["fsm"])["applied_index"]
                     >= before["applied_index"] and f, 15)
    assert after["backend"]["replayed_calls"] > 0
    assert after["backend"]["replayed_calls"] <= before["backend"]["db_index"] \
        - before["snapshot_index"]
    assert _q(acc, follower, "SELECT count(*), sum(i) FROM n", local=True)["rows"] == \
        [[61, sum(range(61))]]

    # a follower stopped while the leader compacts far past it gets the snapshot
    leader = acc.leader()
    lagging = next(p for p in acc.peers if p != leader)
    acc.kill(lagging)
    for i in range(61, 200):
        _w(acc, leader, ["exec", "INSERT INTO n VALUES (?)", [i]])
    wait_for(lambda: acc.stat(leader)["fsm"]["snapshot_index"] > before["applied_index"]
             + 40, 10)
    acc.restart(lagging)
    started = time.monotonic()
    wait_for(lambda: (_caught_up(acc, lagging, "SELECT count(*) FROM n") or {}).get("rows")
             == [[200]], 30)
    stat = acc.stat(lagging)
    assert stat["fsm"]["snapshot_index"] > before["applied_index"], stat["fsm"]
    assert stat["fsm"]["snapshots_installed"] >= 1, stat["fsm"]
    assert time.monotonic() - started < 30
    assert _q(acc, lagging, "SELECT sum(i) FROM n", local=True)["rows"] == [[sum(range(200))]]


def test_sql_shell(make_cluster: Any, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import json

    from zraft.cli import main as zraft_main

    acc = _cluster(make_cluster)
    base = ["sql", "--dir", str(acc.cluster.directory)]

    def run(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        capsys.readouterr()
        code = zraft_main([*base, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("CREATE TABLE t(name TEXT, n INTEGER, b BLOB)")[0] == 0
    code, out, _ = run("INSERT INTO t VALUES ('a', 1, x'00ff'), ('bb', 22, NULL)")
    assert (code, out) == (0, "rows affected: 2, last row id: 2\n")
    code, out, _ = run("SELECT name, n, b FROM t ORDER BY name")
    assert out == ("name   n  b      \n----  --  -------\na      1  x'00ff'\nbb    22  NULL\n"
                   "(2 rows)\n").replace("b      \n", "b\n")
    code, out, _ = run("--json", "--local", "SELECT count(*) AS c FROM t")
    assert json.loads(out) == {"columns": ["c"], "rows": [[2]]}
    code, out, err = run("--query", "DELETE FROM t")
    assert code == 1 and "not allowed" in err
    code, out, err = run(stdin="INSERT INTO t VALUES ('c', 3, NULL);\nSELECT\n  count(*)\n"
                               "FROM t;\nSELECT nope FROM t;\n")
    assert code == 1 and "rows affected: 1" in out and "(1 row)" in out and "3" in out
    assert "no such column: nope" in err


def test_bank_transfers_keep_the_total_through_a_leader_kill(make_cluster: Any) -> None:
    """A short bank run: transfers in `tx` from several threads while the leader is killed
    and restarted; no transfer creates or loses money (CHECK keeps balances >= 0, a tx is
    all or nothing), and every replica ends with the same rows."""
    import random
    import threading

    from zraft.errors import ZRaftError

    acc = _cluster(make_cluster)
    names = [f"a{i}" for i in range(5)]
    _w(acc, acc.peers[0], ["exec", SCHEMA])
    _w(acc, acc.peers[0], ["execmany", "INSERT INTO acct VALUES (?, 1000)",
                           [[n] for n in names]])
    stop = threading.Event()
    done = [0]

    def transfers(seed: int) -> None:
        rng = random.Random(seed)
        light = acc.light()  # follows the leader
        while not stop.is_set():
            src, dst = rng.sample(names, 2)
            step = {"n": rng.randint(1, 400), "src": src, "dst": dst}
            try:
                api.write(light, ["tx", [  # credit first: an overdraw fails second
                    ["UPDATE acct SET cents = cents + :n WHERE name = :dst", step],
                    ["UPDATE acct SET cents = cents - :n WHERE name = :src", step]]],
                    timeout=5, pool=acc.pool)
                done[0] += 1
            except BadCommand:
                pass  # overdraw refused: nothing applied
            except ZRaftError:
                pass  # unknown outcome (the leader died): either way the total holds

    threads = [threading.Thread(target=transfers, args=(s,), daemon=True) for s in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: done[0] >= 30, 30)
        leader = acc.leader()
        acc.kill(leader)
        wait_for(lambda: done[0] >= 80, 60)
        acc.restart(leader)
        wait_for(lambda: done[0] >= 120, 60)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    total = [[len(names) * 1000]]
    assert _q(acc, acc.peers[0], "SELECT sum(cents) FROM acct")["rows"] == total
    want = _q(acc, acc.peers[0], "SELECT name, cents FROM acct ORDER BY name")
    for peer in acc.peers:
        wait_for(lambda peer=peer: _caught_up(acc, peer, "SELECT name, cents FROM acct "
                                              "ORDER BY name") == want, 20)
