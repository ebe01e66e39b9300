"""NodeLiveness (zraft/node/liveness.py): one heartbeat per pair of nodes, failure signals
once per transition. The clock is passed in: no timing here."""

from __future__ import annotations

from zraft.actors.node_signals import apply_node_signal
from zraft.core.config import CoreConfig
from zraft.core.raft import RaftCore
from zraft.node.liveness import REACHABLE, RESTARTED, UNREACHABLE, NodeLiveness
from zraft.transport import codec


def make(known: list[str]) -> tuple[NodeLiveness, list, list]:
    sent: list = []
    reports: list = []
    live = NodeLiveness("me:1", lambda: known, lambda n, inc: sent.append((n, inc)),
                        lambda kind, node: reports.append((kind, node)),
                        interval_s=0.1, bound_s=1.0)
    return live, sent, reports


def test_one_heartbeat_per_node_and_silence_reported_once():
    live, sent, reports = make(["a:1", "b:1", "me:1"])
    live.tick(0.0)
    assert sorted(n for n, _ in sent) == ["a:1", "b:1"]  # one frame per node, not per group
    live.heard("a:1", 7, now=0.5)
    live.tick(1.2)
    assert reports == [(UNREACHABLE, "b:1")]  # silent since our start (0.0)
    live.tick(1.4)
    assert reports == [(UNREACHABLE, "b:1")]  # once per transition
    live.tick(1.6)
    assert reports[-1] == (UNREACHABLE, "a:1") and live.down() == ["a:1", "b:1"]
    live.heard("b:1", 3, now=1.7)
    assert live.down() == ["a:1"]
    live.tick(1.8)
    assert reports[-1] == (REACHABLE, "b:1")  # so its groups may quiesce under it again


def test_a_new_incarnation_is_reported_as_a_restart():
    live, _sent, reports = make(["a:1"])
    live.heard("a:1", 1, now=0.0)
    live.heard("a:1", 1, now=0.1)
    live.tick(0.2)
    assert reports == []
    live.heard("a:1", 2, now=0.3)  # back faster than the bound
    live.tick(0.4)
    assert reports == [(RESTARTED, "a:1")]


def test_alive_frames_round_trip():
    frame = codec.NodeAlive(2**55)
    assert codec.decode(codec.encode(frame)) == frame


def test_a_signal_reaches_only_the_members_on_that_node():
    core = RaftCore("g@n1:1", _storage(["g@n1:1", "g@n2:1", "g@n3:1"]),
                    CoreConfig(quiesce_ticks=1), __import__("random").Random(1))
    core.leader = "g@n2:1"
    assert apply_node_signal(core, UNREACHABLE, "n3:1") == 1
    assert core.leader == "g@n2:1"  # another follower's node: nothing for us
    assert apply_node_signal(core, UNREACHABLE, "n2:1") == 1
    assert core.leader is None  # our leader's node: no stickiness, an election soon


def _storage(peers: list[str]):
    from zraft.core.entries import ClusterConfig, Entry, HardState
    from zraft.core.storage import MemoryStorage

    st = MemoryStorage()
    st.append([Entry(1, 1, 1, ClusterConfig.stable(peers), 0)])
    st.set_hard_state(HardState(1, None))
    return st
