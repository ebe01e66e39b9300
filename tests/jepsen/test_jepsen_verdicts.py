"""Verdict logic that needs no cluster: session temporary-data rules and soak totals."""

from __future__ import annotations

import io
from pathlib import Path

from zraft.testing.jepsen.run import KindTotals, RunConfig, RunReport, soak, summary
from zraft.testing.jepsen.sessions import EphemeralRead, SessionProbe, SessionRecord


def probe_with(*records: SessionRecord) -> SessionProbe:
    probe = SessionProbe.__new__(SessionProbe)  # verdicts only: no threads, no pool
    probe.sessions = list(records)
    probe.session_timeout, probe.grace = 3.0, 10.0
    return probe


def test_temporary_key_absent_while_the_session_still_writes_is_a_violation() -> None:
    rec = SessionRecord("s1", put_ok=True, reads=[EphemeralRead(1.0, 1.1, False)],
                        write_ok_invokes=[0.5, 2.0], gone_within_bound=True)
    assert any("absent" in v for v in probe_with(rec).violations())


def test_absent_key_with_no_later_acknowledged_write_is_fine() -> None:
    # the session may have expired right before that read: nothing proves it was alive
    rec = SessionRecord("s1", put_ok=True, reads=[EphemeralRead(1.0, 1.1, False)],
                        write_ok_invokes=[0.5], gone_within_bound=True)
    assert probe_with(rec).violations() == []


def test_unacknowledged_temporary_put_proves_nothing_about_absence() -> None:
    rec = SessionRecord("s1", put_ok=False, reads=[EphemeralRead(1.0, 1.1, False)],
                        write_ok_invokes=[2.0], gone_within_bound=True)
    assert probe_with(rec).violations() == []


def test_key_surviving_expiry_or_coming_back_is_a_violation() -> None:
    stays = SessionRecord("s2", put_ok=True, gone_within_bound=False)
    back = SessionRecord("s3", put_ok=True, gone_within_bound=True, reappeared=True)
    found = probe_with(stays, back).violations()
    assert any("still present" in v for v in found)
    assert any("came back" in v for v in found)


def test_expiry_bound_counts_from_the_last_fault_not_only_from_the_session_end() -> None:
    # kill_majority seed 1644558272: leaders kept dying before the (renewed) session could
    # expire; the bound must restart at every nemesis action, as each new leader renews it
    from types import SimpleNamespace

    topo = SimpleNamespace(disturbed_at=0.0)
    probe = probe_with()
    probe.topo = topo  # type: ignore[assignment]
    topo.last_disturbance = lambda: topo.disturbed_at
    rec = SessionRecord("s4", put_ok=True, expired_at=100.0)
    assert probe.gone_deadline(rec) == 113.0
    topo.disturbed_at = 110.0
    assert probe.gone_deadline(rec) == 123.0


def test_summary_has_a_row_per_kind_with_every_figure() -> None:
    ok = RunReport("kill", 1, "/x", faults={"kill": 3}, ops={"ok": 10, "fail": 2, "unknown": 1},
                   keys_checked=4, acked_inserts=5)
    bad = RunReport("pause", 2, "/y", faults={"pause": 2}, ops={"ok": 1}, linearizable=False,
                    window_file="/y/w.jsonl", acked_lost=1)
    totals = {"kill": KindTotals(), "pause": KindTotals()}
    totals["kill"].add(ok)
    totals["pause"].add(bad)
    text = summary(totals)
    assert "kill" in text and "pause" in text and "/y/w.jsonl" in text
    assert totals["pause"].nonlinearizable == 1 and totals["pause"].acked_lost == 1
    assert totals["kill"].failed_runs == 0 and totals["pause"].failed_runs == 1
    assert ok.ok and not bad.ok
    assert "NOT LINEARIZABLE" in bad.line()


def test_soak_of_zero_minutes_prints_an_empty_summary(tmp_path: Path) -> None:
    out = io.StringIO()
    totals = soak(0.0, tmp_path, RunConfig(), ["kill"], out=out)
    assert totals["kill"].runs == 0
    assert "fault kind" in out.getvalue()


class _Node:
    def __init__(self, directory: Path) -> None:
        self.directory = directory


class _Cluster:
    def __init__(self, base: Path) -> None:
        self.base = base

    def node(self, peer: str) -> _Node:
        return _Node(self.base / peer.partition("@")[0])


def write_log(base: Path, peer: str, entries: list) -> None:
    from zraft.storage import DiskLogStorage, LogWriter

    storage = DiskLogStorage.open(base / peer.partition("@")[0] / "data", peer)
    try:
        LogWriter(storage).write_ops([("append", entries)])
    finally:
        storage.close()


def test_logs_on_disk_must_agree_at_every_applied_index(tmp_path: Path) -> None:
    from zraft.core.entries import DATA, Entry
    from zraft.testing.jepsen.safety import compare_logs

    same = [Entry(i, 1, DATA, b"x%d" % i, 1000 + i) for i in range(1, 6)]
    write_log(tmp_path, "a@127.0.0.1:1", same)
    write_log(tmp_path, "b@127.0.0.1:2", same)
    differ = [*same[:3], Entry(4, 2, DATA, b"other", 2000), same[4]]
    write_log(tmp_path, "c@127.0.0.1:3", differ)
    cluster = _Cluster(tmp_path)
    problems, compared = compare_logs(cluster, ["a@127.0.0.1:1", "b@127.0.0.1:2"], 5)
    assert problems == [] and compared == 5
    problems, _ = compare_logs(cluster, ["a@127.0.0.1:1", "c@127.0.0.1:3"], 5)
    assert len(problems) == 1 and "index 4" in problems[0]
    problems, _ = compare_logs(cluster, ["a@127.0.0.1:1", "c@127.0.0.1:3"], 3)
    assert problems == []  # beyond what every node applied, tails may differ
