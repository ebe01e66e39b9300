"""The peer actor handles each client request in isolation (defence behind the node's
schema): a malformed request that reaches it is answered and never ends the peer."""

from __future__ import annotations

import pytest
from node_fakes import Conn, peer_context, wait

from zraft.actors.messages import ClientBatch, ClientRequest, Tick
from zraft.actors.peer import RaftPeerActor
from zraft.fsm.commands import encode_write

CMD = encode_write(["k", "v"])


@pytest.fixture
def leader(tmp_path):
    failures: list[str] = []
    ref = RaftPeerActor.start(peer_context(tmp_path, failures))
    conn = Conn()
    ref.tell(ClientBatch([ClientRequest(conn, 1, "bootstrap", ["p"])]))

    def leads() -> bool:
        ref.tell(Tick(0))
        return ref.ask(ClientBatch([]), timeout=5) is None and \
            ref.proxy().stat().get(timeout=5).get("role") == "leader"

    wait(leads, "the one-node peer to lead")
    yield ref, conn, failures
    if ref.is_alive():
        ref.stop(timeout=10)


def test_malformed_requests_that_reach_the_peer_never_end_it(leader) -> None:
    ref, conn, failures = leader
    bad = [
        ClientRequest(conn, 10, "propose", ["p", CMD, {"a": 1}]),        # a map as sid
        ClientRequest(conn, 11, "propose", ["p", CMD, [1, 2]]),          # a list as sid
        ClientRequest(conn, 12, "set_conf", ["p", "7", ["a@h:1"], 100]),  # str index
        ClientRequest(conn, 13, "set_conf", ["p", 1, [["x"]], 100]),      # a peer id list
        ClientRequest(conn, 14, "set_conf", ["p", 1, [], 100]),           # no members
        ClientRequest(conn, 15, "set_conf", ["p"]),
        ClientRequest(conn, 16, "propose", ["p"]),
        ClientRequest(conn, 17, "query", ["p", "k", {"a": 1}, 5]),        # a map as sid
        ClientRequest(conn, 18, "query", ["p", "k", "s", {"a": 1}]),      # a map as watch
        ClientRequest(conn, 19, "no_such_op", ["p"]),
        ClientRequest(conn, 20, "transfer_leader", ["p", 5, 100]),        # an int target
        ClientRequest(conn, 21, "transfer_leader", ["p", None, "1"]),     # a str timeout
    ]
    for _ in range(3):  # more than the node's restart intensity, had each one crashed
        ref.tell(ClientBatch([ClientRequest(conn, 2, "propose", ["p", CMD, None]), *bad]))
        wanted = {2, *(r.req_id for r in bad)}
        wait(lambda w=wanted: w <= set(conn.replies), "every request answered")
        assert conn.replies[2] == ("ok", "ok")
        for r in bad:
            status, _payload = conn.replies[r.req_id]
            assert status in ("bad_request", "error", "session_expired"), (r, status)
        conn.replies.clear()
    assert ref.is_alive() and failures == []
    ref.tell(ClientBatch([ClientRequest(conn, 3, "query", ["p", "k", None, None])]))
    assert wait(lambda: conn.replies.get(3), "a read") == ("ok", "v")


def test_a_reply_too_large_for_a_frame_fails_alone(leader, monkeypatch) -> None:
    """A read answering more than a frame holds gets too_large; the other replies on the
    same connection (the same blob) still arrive, and the connection is not broken."""
    from zraft.actors import replies

    ref, conn, failures = leader
    for i in range(20):
        ref.tell(ClientBatch([ClientRequest(conn, 100 + i, "propose",
                                            ["p", encode_write([f"k{i:02d}", "x" * 100]), None])]))
    wait(lambda: all(conn.replies.get(100 + i) == ("ok", "ok") for i in range(20)), "writes")
    monkeypatch.setattr(replies, "FRAME_LIMIT", 1000)
    ref.tell(ClientBatch([ClientRequest(conn, 4, "query", ["p", ["list", "k"], None, None]),
                          ClientRequest(conn, 5, "query", ["p", "k00", None, None]),
                          ClientRequest(conn, 6, "query_local", ["p", ["list", "k"]])]))
    wait(lambda: {4, 5, 6} <= set(conn.replies), "the reads")
    status, payload = conn.replies[4]
    assert status == "too_large" and payload["limit"] == 1000 and payload["size"] > 2000
    assert conn.replies[5] == ("ok", "x" * 100)
    assert conn.replies[6][0] == "too_large"
    assert ref.is_alive() and failures == []


def test_encode_reply_replaces_what_cannot_be_sent() -> None:
    from zraft.actors.replies import encode_replies, encode_reply
    from zraft.transport.codec import ClientReply

    conn = Conn()
    conn.send(encode_reply(ClientReply(1, "ok", {1, 2})))           # a set: not msgpack
    conn.send(encode_reply(ClientReply(2, "ok", 2**70)))            # above 64 bits
    conn.send(encode_reply(ClientReply(3, "ok", "x" * 50), limit=40))
    conn.send(encode_replies([ClientReply(4, "ok", "y"), ClientReply(5, "ok", {3})]))
    assert conn.replies[1][0] == conn.replies[2][0] == "backend_error"
    assert conn.replies[3][0] == "too_large"
    assert conn.replies[4] == ("ok", "y") and conn.replies[5][0] == "backend_error"


def test_transfer_leader_on_a_lone_peer_fails_clearly_and_the_peer_goes_on(leader) -> None:
    ref, conn, failures = leader
    ref.tell(ClientBatch([ClientRequest(conn, 30, "transfer_leader", ["p", None, 200])]))
    status, payload = wait(lambda: conn.replies.get(30), "the transfer's answer")
    assert status == "transfer_failed" and payload["reason"] == "no_target"
    assert "no other voting member" in payload["message"]
    ref.tell(ClientBatch([ClientRequest(conn, 31, "propose", ["p", CMD, None])]))
    assert wait(lambda: conn.replies.get(31), "a write") == ("ok", "ok")
    assert failures == []
