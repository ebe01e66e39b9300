"""Admin ops that run on a thread of their own (a backend probe, create_peer, node_status)
are capped: a client sending them in a loop gets a refusal each past the cap, never a
thread each, and the node answers the others once the slow ones end."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from node_fakes import Conn, wait

from zraft.config import NodeConfig
from zraft.node.server import MAX_SLOW_OPS, Node

SLOW_MODULE = '''
import threading
from zraft.backends.dict import DictBackend

RELEASE = threading.Event()
STARTED = []


class Slow(DictBackend):
    def init(self, peer_id):
        STARTED.append(peer_id)
        RELEASE.wait(30)
        super().init(peer_id)
'''


def test_backend_probes_past_the_cap_are_refused_not_threaded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "slow_probe_backend.py").write_text(SLOW_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    node = Node(NodeConfig(cookie="c", backends=("dict", "slow_probe_backend:Slow")))
    import slow_probe_backend  # type: ignore[import-not-found]

    conn = Conn()
    threads_before = threading.active_count()
    total = MAX_SLOW_OPS * 5
    try:
        for req_id in range(total):
            node._node_op(conn, req_id, "check_exists", [f"g{req_id}", "slow_probe_backend:Slow"])
        wait(lambda: len(slow_probe_backend.STARTED) == MAX_SLOW_OPS, "the probes to start")
        busy = ("retry", {"message": f"check_exists: node busy ({MAX_SLOW_OPS} admin "
                                     "requests in progress); retry"})
        assert sorted(conn.replies) == list(range(MAX_SLOW_OPS, total))
        assert all(reply == busy for reply in conn.replies.values())
        assert threading.active_count() <= threads_before + MAX_SLOW_OPS
        assert node.counters["refused_slow_ops"] == total - MAX_SLOW_OPS
    finally:
        slow_probe_backend.RELEASE.set()
    wait(lambda: len(conn.replies) == total, "the running probes to answer")
    assert sorted(i for i, r in conn.replies.items() if r == ("ok", None)) == \
        list(range(MAX_SLOW_OPS))
    # the slots are free again: the next one runs
    node._node_op(conn, total, "check_exists", ["again", "slow_probe_backend:Slow"])
    assert wait(lambda: conn.replies.get(total), "a probe after the others") == ("ok", None)
