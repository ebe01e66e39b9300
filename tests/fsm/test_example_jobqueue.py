"""examples/jobqueue.py as a backend, in-process: claims are leases on sessions (only the
claiming session finishes a job; an expired claim goes back to the front of the queue),
and a snapshot keeps them. Its README demo runs on real nodes in test_backend_guide."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.jobqueue import JobQueue
from zraft.fsm import BadCommand


def test_claims_are_leases_on_sessions_and_survive_a_snapshot(tmp_path: Path) -> None:
    queue = JobQueue()
    queue.init("p")
    assert queue.apply(["submit", "a"], time_ms=1).result == 1
    assert queue.apply(["submit", "b"], time_ms=2).result == 2
    assert queue.apply_in_session(["claim", "w1"], "s1", time_ms=3) == [1, "a"]
    assert queue.apply_in_session(["claim", "w2"], "s2", time_ms=4) == [2, "b"]
    assert queue.apply_in_session(["claim", "w2"], "s2", time_ms=4) is None
    with pytest.raises(BadCommand, match=r"^job 1 is not claimed by this session$"):
        queue.apply_in_session(["finish", 1, "A"], "s2", time_ms=5)
    with pytest.raises(BadCommand, match="temporary writes"):
        queue.apply(["finish", 2, "B"], time_ms=5)

    assert queue.expire_session("s1") == ["pending"]  # its watchers are woken
    assert queue.query("pending").value == [1]
    with pytest.raises(BadCommand, match=r"^job 1 is not claimed by this session$"):
        queue.apply_in_session(["finish", 1, "A"], "s1", time_ms=6)  # the lease lapsed
    assert queue.expire_session("s-unknown") == []

    directory = tmp_path / "snapshot"
    directory.mkdir()
    queue.snapshot().write(directory)
    replica = JobQueue()
    replica.init("r")
    replica.install_snapshot(directory)
    assert replica.get_state() == queue.get_state()
    assert replica.apply_in_session(["finish", 2, "B"], "s2", time_ms=7) == "ok"
    assert replica.query("stats") == {"pending": 1, "claimed": 0, "done": 1}
    assert replica.apply_in_session(["claim", "w3"], "s3", time_ms=8) == [1, "a"]
    assert replica.query(["job", 1])["claims"] == 2
