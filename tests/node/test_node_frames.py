"""Node._on_frames_many: one bad frame answers its own requester and never costs the other
frames of the round (issue 11: a non-string peer name dropped every client's requests)."""

from __future__ import annotations

from typing import Any

import pytest
from node_fakes import Conn

from zraft.actors.messages import ClientBatch
from zraft.config import NodeConfig, RaftConfig
from zraft.core.messages import AppendEntries
from zraft.fsm.commands import encode_write
from zraft.node.server import Node, PeerEntry
from zraft.transport import codec

CMD = encode_write(["k", "v"])


class Ref:
    def __init__(self) -> None:
        self.told: list[Any] = []

    def tell(self, message: Any) -> None:
        self.told.append(message)


class Handle:
    def __init__(self, ref: Ref) -> None:
        self.ref = ref

    def resolve(self) -> Ref:
        return self.ref


class BrokenHandle:
    def resolve(self) -> Ref:
        raise RuntimeError("supervisor bug")


@pytest.fixture
def node() -> Node:
    n = Node(NodeConfig(cookie="c", raft=RaftConfig(max_entry_size=4096)))
    n.peers["zraft"] = PeerEntry("zraft", f"zraft@{n.address}", "dict", Handle(Ref()))
    return n


def told(node: Node) -> list[tuple[int, str]]:
    ref = node.peers["zraft"].handle.ref
    return [(r.req_id, r.op) for batch in ref.told if isinstance(batch, ClientBatch)
            for r in batch.requests]


def req(req_id: int, op: Any, args: Any) -> codec.ClientRequest:
    return codec.ClientRequest(req_id, op, args)


# the trial's malformed requests, and more of the same class
BAD = [
    ("propose", [[1], b"", None]),            # a list as the peer name: the trial's frame
    ("propose", [{"a": 1}, CMD, None]),       # a map as the peer name
    ("propose", ["zraft", CMD, {"a": 1}]),    # a map as the session id
    ("propose", ["zraft", CMD, [1, 2]]),      # a list as the session id
    ("query", ["zraft", "k", {"a": 1}, None]),
    ("query", ["zraft", "k", [1], 5]),
    ("set_conf", ["zraft", "7", ["zraft@127.0.0.1:7001"], 1000]),
    ("set_conf", ["zraft", 7, ["not a peer id"], 1000]),
    ("set_conf", ["zraft", 7, [], 1000]),
    ("set_conf", ["zraft", 7, ["zraft@127.0.0.1:7001"], "soon"]),
    ("propose", ["zraft", "not bytes", None]),
    ("propose", ["zraft", b"\xc1garbage", None]),
    ("stat", "zraft"),
    ("no_such_op", ["zraft"]),
    (None, []),
    ("partition", ["127.0.0.1:7001"]),
    ("create_peer", [["x"], "dict"]),
]


def test_a_round_with_bad_frames_answers_the_others(node) -> None:
    good1, good2, bad = Conn("good1"), Conn("good2"), Conn("bad")
    bad_frames = [req(100 + i, op, args) for i, (op, args) in enumerate(BAD)]
    node._on_frames_many([
        (good1, [req(1, "propose", ["zraft", CMD, None])]),
        (bad, bad_frames[:5]),
        (good2, [req(2, "query", ["zraft", "k", None, None]),
                 req(3, "propose", ["zraft", CMD, "s-1"])]),
        (bad, bad_frames[5:]),
        (good1, [req(4, "stat", ["zraft"]), req(5, "ping", [])]),
    ])
    assert told(node) == [(1, "propose"), (2, "query"), (3, "propose"), (4, "stat")]
    assert good1.replies == {5: ("ok", node.address)}
    assert set(bad.replies) == {f.req_id for f in bad_frames}
    for frame in bad_frames:
        status, payload = bad.replies[frame.req_id]
        assert status == "bad_request", (frame, status, payload)
        assert "\n" not in payload["message"]
    # each message names the op and the field
    assert bad.replies[100][1]["message"].startswith("propose: peer_name ")
    assert bad.replies[102][1]["message"].startswith("propose: sid ")
    assert bad.replies[106][1]["message"].startswith("set_conf: prev_index ")
    assert bad.replies[107][1]["message"].startswith("set_conf: peers ")


def test_a_too_large_command_is_refused_before_routing(node) -> None:
    conn = Conn("c")
    big = encode_write(b"x" * 5000)
    node._on_frames_many([(conn, [req(1, "propose", ["zraft", big, None]),
                                  req(2, "propose", ["zraft", CMD, None])])])
    assert told(node) == [(2, "propose")]
    status, payload = conn.replies[1]
    assert status == "too_large"
    assert str(len(big)) in payload["message"] and "4096" in payload["message"]


def test_routed_requests_are_canonical_and_padded(node) -> None:
    conn = Conn("c")
    node._on_frames_many([(conn, [req(1, "set_conf", ["zraft", 0, ["a@h:07"], 100]),
                                  req(2, "propose", ["zraft", CMD])])])
    batch = node.peers["zraft"].handle.ref.told[0]
    assert [r.args for r in batch.requests] == [["zraft", 0, ["a@h:7"], 100],
                                                ["zraft", CMD, None]]


def test_admin_frames_take_node_ops_only(node) -> None:
    conn = Conn("c")
    node._on_frames_many([(conn, [codec.AdminRequest(1, "propose", ["zraft", CMD, None]),
                                  codec.AdminRequest(2, "ping", None),
                                  codec.AdminRequest(3, "partition", [[1]])])])
    assert told(node) == []
    assert conn.replies[1][0] == "bad_request" and "not an admin op" in conn.replies[1][1][
        "message"]
    assert conn.replies[2] == ("ok", node.address)
    assert conn.replies[3][0] == "bad_request"


def test_an_unexpected_failure_answers_its_own_frame_only(node, monkeypatch) -> None:
    """Defence behind the schema: whatever raises while one frame is sorted or routed is
    logged and answered ``error`` for that frame; the round goes on."""
    conn = Conn("c")

    def broken(conn: Any, frame: Any) -> None:
        raise RuntimeError("snapshot service bug")

    monkeypatch.setattr(node.snapshots, "on_control", broken)
    node.peers["other"] = PeerEntry("other", f"other@{node.address}", "dict", BrokenHandle())
    node._on_frames_many([(conn, [codec.SnapshotControl("offer", []),
                                  req(1, "stat", ["other"]),
                                  req(2, "stat", ["zraft"]),
                                  req(3, "stat", ["missing"])])])
    assert told(node) == [(2, "stat")]
    assert conn.replies[1][0] == "error"
    assert conn.replies[3][0] == "noproc"


def test_only_a_peer_node_may_send_raft_messages_and_snapshot_control(node: Node) -> None:
    # a client holding the cookie must not step a core (a made-up term would depose the
    # leader): its connection is closed, nothing is routed, the node counts it
    routed: list[Any] = []
    node._route_raft = routed.extend  # type: ignore[method-assign]
    msg = AppendEntries(99, "zraft@127.0.0.1:1", f"zraft@{node.address}", 0, 0, [], 0, 0)
    client = Conn()
    node._on_frames_many([(client, [msg, codec.SnapshotControl("offer", [])])])
    assert client.closed and routed == []
    assert node.counters["refused_peer_frames_from_clients"] == 2
    peer = Conn("127.0.0.1:1", role="node")
    node._on_frames_many([(peer, [msg])])
    assert not peer.closed and routed == [msg]


def test_only_a_peer_node_may_send_liveness_heartbeats(node: Node) -> None:
    # a client must not make a node look alive (or restarted) to the failure detector
    heard: list[Any] = []

    class Liveness:
        def heard(self, who: str, incarnation: int) -> None:
            heard.append((who, incarnation))

    node.liveness = Liveness()  # type: ignore[assignment]
    client = Conn()
    node._on_frames_many([(client, [codec.NodeAlive(5)])])
    assert client.closed and heard == []
    peer = Conn("127.0.0.1:1", role="node")
    node._on_frames_many([(peer, [codec.NodeAlive(5)])])
    assert not peer.closed and heard == [("127.0.0.1:1", 5)]
