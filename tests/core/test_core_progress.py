"""core/progress.py: probe / replicate / snapshot transitions and the inflight window."""

from zraft.core.progress import PROBE, REPLICATE, SNAPSHOT, Progress


def test_probe_sends_one_then_pauses():
    pr = Progress(5, 3)
    assert pr.state == PROBE and not pr.is_paused()
    pr.sent(6, 2)
    assert pr.is_paused() and pr.next == 5  # probing does not advance next


def test_replicate_pipelines_up_to_max_inflight():
    pr = Progress(1, 2)
    pr.become_replicate()
    pr.sent(3, 3)
    pr.sent(5, 2)
    assert pr.next == 6 and pr.is_paused()
    assert pr.maybe_update(3)
    assert not pr.is_paused() and list(pr.inflight) == [5]
    assert not pr.maybe_update(2)  # stale ack


def test_reject_in_replicate_falls_back_to_probe_with_hint():
    pr = Progress(1, 8)
    pr.maybe_update(4)
    pr.become_replicate()
    pr.sent(10, 6)
    assert not pr.maybe_decrease(3, 1)  # at or below match: stale
    assert pr.maybe_decrease(7, 6)
    assert pr.state == PROBE and pr.next == 6 and not pr.inflight


def test_probe_reject_only_for_the_probe_in_flight():
    pr = Progress(10, 8)
    assert not pr.maybe_decrease(5, 1)  # not next-1: stale
    assert pr.maybe_decrease(9, 4)
    assert pr.next == 4
    assert pr.maybe_decrease(3, 100)
    assert pr.next == 3  # never above the rejected index


def test_snapshot_pauses_and_probe_resumes_after_match():
    pr = Progress(3, 8)
    pr.become_snapshot(20)
    assert pr.state == SNAPSHOT and pr.is_paused()
    pr.maybe_update(20)
    pr.become_replicate()
    assert pr.state == REPLICATE and pr.next == 21
    pr.become_snapshot(30)
    pr.become_probe()
    assert pr.state == PROBE and pr.next == 21
