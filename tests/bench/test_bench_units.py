"""Unit tests of the comparison harness: table maths, profile summary, loopback reference,
and the client engine against a fake node (no cluster)."""

from __future__ import annotations

import socket
import threading

import msgpack
import pytest

from bench import report
from bench.engine import Ops, open_pools, percentile, pipelined
from bench.loopback import sendfile_throughput
from bench.profile import summarise, thread_kind
from zraft.testing.authed_socket import accepted
from zraft.transport.framing import HEADER
from zraft.transport.handshake import server_handshake


def run(rep: int, **fields: object) -> dict:
    return {"rep": rep, **fields}


def test_ratio_direction() -> None:
    assert report.ratio(10_000, 2_000, report.HIGHER) == "5.0x"
    assert report.ratio(1.0, 4.0, report.LOWER) == "4.0x"
    assert report.ratio(0, 0, report.LOWER) == "="
    assert report.ratio(None, 3.0, report.HIGHER) == "-"


def test_series_takes_the_better_run_of_each_repeat() -> None:
    runs = [run(0, W1={"p50_ms": 100.0}), run(0, W1={"p50_ms": 1.5}),
            run(1, W1={"p50_ms": 2.0}), run(1, W1={"p50_ms": 90.0})]
    read = report.METRICS[0][1]
    assert report.series(runs, read, report.LOWER) == [1.5, 2.0]
    rates = [run(0, W3={"ops_per_s": 500.0}), run(0, W3={"ops_per_s": 1000.0})]
    w3 = next(m for m in report.METRICS if m[0] == "W3 64x1 writes")
    assert report.series(rates, w3[1], w3[2]) == [1000.0]


def test_table_has_medians_ranges_and_ratios() -> None:
    ours = [run(r, W2={"1000": {"ops_per_s": v}}) for r, v in enumerate((20e3, 22e3, 21e3))]
    theirs = [run(r, W2={"1000": {"ops_per_s": v}}) for r, v in enumerate((4e3, 5e3, 6e3))]
    text = report.table({"zraft": ours, "peer": theirs})
    line = next(x for x in text.splitlines() if x.startswith("| W2 1x1000 writes"))
    assert "21,000 (20,000-22,000)" in line
    assert "5,000 (4,000-6,000)" in line
    assert "4.2x" in line


def test_elections_sum_both_phases() -> None:
    read = next(m for m in report.METRICS if m[0] == "unplanned elections")[1]
    assert read({"unplanned_elections": 1, "W5": {"unplanned_elections": 2}}) == 3.0
    assert read({}) is None


def test_percentile() -> None:
    values = sorted(float(i) for i in range(101))
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 50) != percentile([], 50)  # nan


def test_profile_summary_groups_threads_and_leaves() -> None:
    raw = ("thread (11): RaftPeerActor-3 (urn:uuid:ab-cd);Actor._actor_loop (pykka/_actor.py:1);"
           "propose (zraft/core/raft.py:10) 30\n"
           "thread (12): RaftPeerActor-7 (urn:uuid:ef);Actor._actor_loop (pykka/_actor.py:1);"
           "propose (zraft/core/raft.py:12) 10\n"
           "thread (13): zraft-serve;recv_loop (zraft/transport/tcp.py:5) 60\n")
    text = summarise(raw, seconds=1.0, rate=200)
    assert "samples: 100" in text and "GIL held 50%" in text
    assert "40.0%  RaftPeerActor" in text
    assert "60.0%  recv_loop (zraft/transport/tcp.py)" in text
    assert "40.0%  propose (zraft/core/raft.py)" in text
    assert thread_kind("zraft-conn-r-127.0.0.1:4000") == "zraft-conn-r"


def test_sendfile_reference_moves_every_byte() -> None:
    assert sendfile_throughput(4 * 2**20) > 10e6


@pytest.fixture
def fake_node():
    """A node that speaks the client protocol and answers every propose with "ok" after
    the given number of requests have queued (so pipelining is visible)."""
    cookie = b"test-cookie"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    seen: list[int] = []

    def serve(sock: socket.socket) -> None:
        peer = accepted(sock, server_handshake(sock, cookie, "fake"))
        with sock:
            while data := sock.recv(65536):
                out = []
                for body in peer.feed(data):
                    _kind, req_id, op, _args = msgpack.unpackb(body, raw=False)
                    seen.append(req_id)
                    status = "ok" if op == "propose" else "bad_request"
                    reply = msgpack.packb([3, req_id, status, None])
                    out.append(HEADER.pack(len(reply)) + reply)
                peer.sendall(b"".join(out))

    def accept() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(sock,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield cookie, f"kv@127.0.0.1:{listener.getsockname()[1]}", seen
    listener.close()


def test_pipelined_counts_every_reply_and_keeps_the_window(fake_node) -> None:
    cookie, peer, seen = fake_node
    ops = Ops("kv", 100)
    pools = open_pools(cookie, peer, ops.put(0), 2)
    try:
        res = pipelined(pools, peer, ops.put, 500, 16, 10.0)
        bad = pipelined(pools, peer, ops.get, 20, 4, 10.0)
    finally:
        for pool in pools:
            pool.close()
    assert res.ok == 500 and res.completed and not res.errors
    assert len(res.latencies) == 500 and res.ops_per_s > 0
    assert bad.ok == 0 and bad.errors == {"bad_request": 20}
    assert len(seen) == 2 + 500 + 20


def test_ops_frames_match_the_zraft_client() -> None:
    ops = Ops("zraft", 100)
    op, args = ops.put(10_003)
    assert op == "propose" and args[0] == "zraft" and args[2] is None
    tag, (cmd, key, value) = msgpack.unpackb(args[1], raw=False)
    assert (tag, cmd, key, len(value)) == (1, "put", "k3", 100)
    assert ops.get(7) == ("query", ["zraft", ["get", "k7"], None, None])


def test_from_json_prints_the_table_of_a_partial_run(tmp_path, capsys) -> None:
    import json

    from bench import compare

    doc = {"date": "d", "machine": "m", "runs": [
        {"rep": 0, "group": "zraft", "durability": "fsync", "W6": {"ops_per_s": 30000.0}},
        {"rep": 0, "group": "PySyncObj msync", "durability": "msync",
         "W6": {"ops_per_s": 1000.0}}], "partial": True}
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(doc))
    assert compare.main(["--from-json", str(path)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("| W6 linearizable reads"))
    assert "30,000" in line and "30.0x" in line
    assert "- PySyncObj msync: msync" in out
