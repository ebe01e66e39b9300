"""W5 catch-up: the snapshot transfer's own rates next to the end-to-end figure."""

from __future__ import annotations

from bench.report import METRICS
from bench.workloads import _transfer_rates


def test_rates_are_deltas_of_the_leader_and_totals_of_the_restarted_follower() -> None:
    before = {"sendfile_bytes": 1_000_000, "sendfile_seconds": 1.0, "send_seconds": 2.0,
              "sends_started": 1}
    after = {"sendfile_bytes": 41_000_000, "sendfile_seconds": 1.1, "send_seconds": 2.2,
             "sends_started": 3}
    receiver = {"bytes_received": 40_000_000, "receive_seconds": 0.08,
                "receive_sync_seconds": 0.02}
    out = _transfer_rates(before, after, receiver)
    assert round(out["transfer_sendfile_mb_per_s"]) == 400
    assert round(out["transfer_send_mb_per_s"]) == 200
    assert round(out["transfer_receive_mb_per_s"]) == 500
    assert out["catch_up_sends"] == 2
    assert out["transfer_receive_sync_s"] == 0.02


def test_sides_without_stream_counters_report_nothing() -> None:
    assert _transfer_rates(None, None, None) == {}
    assert "transfer_receive_mb_per_s" not in _transfer_rates({}, {}, {})


def test_the_table_shows_the_transfer_rates() -> None:
    run = {"W5": {"transfer_sendfile_mb_per_s": 900.0, "transfer_receive_mb_per_s": 700.0,
                  "catch_up_sends": 1}}
    shown = {name: read(run) for name, read, _better, _unit in METRICS}
    assert shown["W5 snapshot transfer: leader sendfile"] == 900.0
    assert shown["W5 snapshot transfer: follower receive+verify+fsync"] == 700.0
    assert shown["W5 full snapshot sends in catch-up"] == 1.0


def test_the_table_shows_the_settled_rss() -> None:
    run = {"W5": {"rss_mb": [120.0, 90.0, 95.0], "rss_settled_mb": [100.0, 80.0, 70.0]}}
    shown = {name: read(run) for name, read, _better, _unit in METRICS}
    assert shown["W5 RSS max per node after"] == 120.0
    assert shown["W5 RSS max per node 2 s later"] == 100.0
