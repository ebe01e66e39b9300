"""The metrics building blocks without processes: the batch histogram and JSON log lines."""

from __future__ import annotations

import json
import logging
import sys

from prometheus_client.core import HistogramMetricFamily

from zraft.actors.peer_metrics import BatchHistogram
from zraft.logjson import JsonFormatter


def test_histogram_buckets_are_cumulative_and_le() -> None:
    h = BatchHistogram((0.1, 1.0))
    h.observe(0.1)  # on a bound: counted in that bucket (le)
    h.observe(0.5, 3)  # a batch of three that shared one latency
    h.observe(7.0)
    buckets, total = h.snapshot()
    assert buckets == [("0.1", 1), ("1.0", 4), ("+Inf", 5)]
    assert total == 0.1 + 1.5 + 7.0
    # prometheus_client accepts the shape as it is
    fam = HistogramMetricFamily("x_seconds", "x", labels=["peer"])
    fam.add_metric(["p"], buckets, total)
    names = {s.name for s in fam.samples}
    assert names == {"x_seconds_bucket", "x_seconds_count", "x_seconds_sum"}


def _record(msg: str, *args: object, **kwargs: object) -> logging.LogRecord:
    logger = logging.getLogger("zraft.test")
    return logger.makeRecord("zraft.test", logging.WARNING, __file__, 1, msg, args, None,
                             **kwargs)


def test_json_line_has_the_fields_and_the_extras() -> None:
    rec = _record("peer %s: %d", "a", 3, extra={"event": {"kind": "role", "n": 1},
                                                 "level": "shadowed", "obj": object()})
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["message"] == "peer a: 3" and doc["level"] == "warning"
    assert doc["logger"] == "zraft.test" and doc["time"].endswith("Z")
    assert doc["event"] == {"kind": "role", "n": 1}
    assert doc["field_level"] == "shadowed"  # an extra never overwrites the four fields
    assert doc["obj"].startswith("<object")  # not JSON: its str


def test_json_line_carries_the_traceback() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        exc_info = sys.exc_info()
    rec = logging.getLogger("zraft.test").makeRecord("zraft.test", logging.ERROR, __file__, 1,
                                                     "failed", (), exc_info)
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    assert "ValueError: bad" in json.loads(line)["exc"]


def test_a_failing_section_is_left_out_and_counted() -> None:
    """A scrape section that raises costs that section, never the scrape or the node."""
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from zraft.node.metrics import NodeCollector

    class Broken:  # every attribute the collector reads raises
        def __getattr__(self, name: str) -> object:
            raise RuntimeError(f"no {name}")

    registry = CollectorRegistry(auto_describe=False)
    collector = NodeCollector(Broken())
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert "zraft_metrics_errors_total 3.0" in text
    assert collector.errors == 3
