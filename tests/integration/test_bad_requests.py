"""Issue 11, section 1 (requests): malformed arguments, a bad frame among good ones and
oversize values on a real 3-node cluster. A bad request fails itself only: the peer, the node
and every other client's requests go on."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import pytest

from tests.integration.conftest import Harness
from zraft.client import api
from zraft.client.api import write_command
from zraft.cluster.admin import ask
from zraft.cluster.local import wait_until
from zraft.errors import TooLarge
from zraft.testing.authed_socket import authed
from zraft.transport import codec
from zraft.transport.framing import DEFAULT_MAX_FRAME_SIZE
from zraft.transport.handshake import client_handshake

pytestmark = pytest.mark.integration

CMD = write_command(["k", "v"])

# the trial's malformed arguments: each crashed the peer that received it
MALFORMED = [
    ("propose", ["zraft", CMD, {"sid": 1}]),
    ("propose", ["zraft", CMD, ["s", 1]]),
    ("query", ["zraft", "k", {"sid": 1}, None]),
    ("query", ["zraft", "k", ["s"], 1]),
    ("set_conf", ["zraft", "7", ["zraft@127.0.0.1:1"], 1000]),
    ("set_conf", ["zraft", 7.5, ["zraft@127.0.0.1:1"], 1000]),
    ("set_conf", ["zraft", 1, ["not-a-peer-id"], 1000]),
    ("set_conf", ["zraft", 1, [{"id": 1}], 1000]),
    ("propose", [[1], b"", None]),
]


def peer_failures(h: Harness, node: int) -> list[Any]:
    events = h.node_status(node)["events"]
    return [e for e in events if e["kind"] in ("peer_failed", "peer_start")]


def test_malformed_arguments_ten_times_leave_every_peer_and_node_up(make_cluster) -> None:
    h = make_cluster(3)
    assert h.write(["before", 1]) == "ok"
    pids = {n.index: n.pid for n in h.cluster.nodes}
    started = {n.index: peer_failures(h, n.index) for n in h.cluster.nodes}
    for _ in range(10):
        for n in h.cluster.nodes:
            for op, args in MALFORMED:
                status, payload = ask(h.pool, h.cluster.peer_id(n.index), op, args, 5.0)
                assert status == "bad_request", (n.index, op, args, status, payload)
                assert payload["message"].startswith(f"{op}: ")
    for n in h.cluster.nodes:
        assert n.alive() and n.pid == pids[n.index]
        # no peer crashed (peer_failed) or was restarted (a second peer_start)
        assert peer_failures(h, n.index) == started[n.index]
    assert h.write(["after", 2]) == "ok"
    assert h.query("before") == 1 and h.query("after") == 2


class BadSender(threading.Thread):
    """One authenticated connection sending the trial's bad frame every ~2 ms, and
    counting the bad_request replies it gets."""

    def __init__(self, h: Harness, node: int) -> None:
        super().__init__(daemon=True)
        sock = socket.create_connection(("127.0.0.1", h.cluster.node(node).port), 5)
        self.sock = authed(sock, client_handshake(sock, h.cluster.cookie.encode(),
                                                  "bad-sender", 5.0))
        self.halt = threading.Event()
        self.sent = 0
        self.refused = 0
        self.reader = threading.Thread(target=self._read, daemon=True)

    def run(self) -> None:
        self.reader.start()
        while not self.halt.wait(0.002):
            frame = codec.encode_frame(codec.ClientRequest(self.sent, "propose",
                                                           [[1], b"", None]))
            try:
                self.sock.sendall(frame)
            except OSError:
                return
            self.sent += 1

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while data := self.sock.recv(65536):
                for body in self.sock.feed(data):
                    if codec.decode(body).status == "bad_request":
                        self.refused += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(5)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.reader.join(5)


def test_a_client_sending_bad_frames_does_not_starve_a_normal_writer(make_cluster) -> None:
    """Before: the bad frame raised while the node sorted a round of frames and the whole
    round (other clients' writes) was dropped. Every write must complete: a dropped one
    would wait out its timeout (a PeerCall to the leader does not resend)."""
    h = make_cluster(3)
    leader = h.leader_index()
    peer = h.cluster.peer_id(leader)
    bad = BadSender(h, leader)
    bad.start()
    ok, failures = 0, []
    try:
        for i in range(300):
            try:
                assert api.write(peer, [f"w{i}", i], timeout=5, pool=h.pool)[0] == "ok"
                ok += 1
            except Exception as exc:
                failures.append(f"{i}: {type(exc).__name__}: {exc}")
                if len(failures) >= 3:
                    break
    finally:
        bad.stop()
    assert failures == [] and ok == 300
    assert bad.sent > 0 and bad.refused > 0
    assert h.cluster.node(leader).alive()


def command_of_size(size: int) -> list[Any]:
    """A write ``["big", b"x" * n]`` whose packed command is exactly ``size`` bytes."""
    n = size - len(write_command(["big", b""])) - 3  # a bin32 header, not bin8
    data = ["big", b"x" * n]
    assert len(write_command(data)) == size
    return data


def test_entry_size_limit_and_frame_limit(make_cluster) -> None:
    """A value at max_entry_size commits; one byte more is TooLarge before it enters the
    log; a value just under the frame limit (which used to stall every commit: its
    AppendEntries did not fit the followers' frame) is TooLarge too, and commits go on;
    one past the frame limit is refused by the client itself."""
    limit = 1 << 20
    h = make_cluster(3, extra_raft={"max_entry_size": limit})
    leader = h.cluster.peer_id(h.leader_index())
    assert api.write(leader, command_of_size(limit), timeout=10, pool=h.pool)[0] == "ok"
    with pytest.raises(TooLarge, match=f"above max_entry_size {limit}"):
        api.write(leader, command_of_size(limit + 1), timeout=10, pool=h.pool)
    just_under = ["big", b"x" * (DEFAULT_MAX_FRAME_SIZE - 60 - 40)]
    with pytest.raises(TooLarge, match="max_entry_size"):
        api.write(leader, just_under, timeout=30, pool=h.pool)
    del just_under
    with pytest.raises(TooLarge, match="frame limit"):
        h.write(["huge", b"x" * (DEFAULT_MAX_FRAME_SIZE + 1)], timeout=10)
    assert h.write(["after", 1]) == "ok"
    commit = h.stat(h.leader_index())["commit"]
    for n in h.cluster.nodes:  # every follower still takes the leader's entries
        wait_until(lambda n=n: h.stat(n.index, timeout=2.0)["applied"] >= commit, 20,
                   f"node {n.index} to apply {commit}")
    assert h.query(["get", "big"]) == b"x" * (limit - len(write_command(["big", b""])) - 3)
