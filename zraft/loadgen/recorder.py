"""Latency and throughput recording for a bench run.

Rules: latencies are kept in microseconds in an HDR histogram (``hdrhistogram``, an optional
extra) so percentiles stay exact to 3 significant digits at any rate and constant memory;
without the package an exact sorted-list fallback gives the same answers on short runs.
The timeline keeps, per time bucket, the number of completed operations and their latencies
(for p50/p99 over time). ``Recorder`` is called from many connection threads: one lock.
"""

from __future__ import annotations

import bisect
import collections
import math
import threading
from typing import Any

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
_MAX_US = 3600 * 10**6


class LatencyHistogram:
    """Percentiles of microsecond values: HDR when available, else exact."""

    def __init__(self) -> None:
        try:
            from hdrh.histogram import HdrHistogram
        except ImportError:  # optional extra: fall back to an exact (memory-hungry) list
            self._hdr: Any = None
            self._values: list[int] = []
        else:
            self._hdr = HdrHistogram(1, _MAX_US, 3)
        self.count = 0
        self.kind = "hdr" if self._hdr is not None else "exact"

    def record(self, micros: int) -> None:
        micros = min(max(1, micros), _MAX_US)
        self.count += 1
        if self._hdr is not None:
            self._hdr.record_value(micros)
        else:
            bisect.insort(self._values, micros)

    def percentile(self, p: float) -> int:
        if not self.count:
            return 0
        if self._hdr is not None:
            return int(self._hdr.get_value_at_percentile(p))
        return _rank(self._values, p)

    def max(self) -> int:
        if not self.count:
            return 0
        return int(self._hdr.get_max_value()) if self._hdr is not None else self._values[-1]

    def mean(self) -> float:
        if not self.count:
            return 0.0
        if self._hdr is not None:
            return float(self._hdr.get_mean_value())
        return sum(self._values) / len(self._values)

    def summary_ms(self) -> dict[str, float]:
        out = {f"p{p:g}": round(self.percentile(p) / 1000, 3) for p in PERCENTILES}
        out["max"] = round(self.max() / 1000, 3)
        out["mean"] = round(self.mean() / 1000, 3)
        return out


class Recorder:
    """Completed operations by kind, errors by status, and a per-bucket timeline."""

    def __init__(self, start: float, bucket: float) -> None:
        self.start = start
        self.bucket = bucket
        self.lock = threading.Lock()
        self.latency = LatencyHistogram()
        self.by_kind: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self._buckets: dict[int, list[int]] = collections.defaultdict(list)

    def done(self, kind: str, started: float, now: float) -> None:
        micros = int((now - started) * 1e6)
        slot = int((now - self.start) / self.bucket)
        with self.lock:
            self.latency.record(micros)
            self.by_kind[kind] += 1
            self._buckets[slot].append(micros)

    def error(self, status: str) -> None:
        with self.lock:
            self.errors[status] += 1

    def completed(self) -> int:
        with self.lock:
            return sum(self.by_kind.values())

    def timeline(self, duration: float) -> list[dict[str, float]]:
        """Per bucket: start time (s), throughput (ops/s), p50 and p99 latency (ms)."""
        with self.lock:
            buckets = {k: sorted(v) for k, v in self._buckets.items()}
        last = max(1, round(duration / self.bucket))  # operations drained after the end: not shown
        rows = []
        for k in range(last):
            values = buckets.get(k, [])
            rows.append({
                "t": round(k * self.bucket, 3),
                "ops_per_s": round(len(values) / self.bucket, 1),
                "p50_ms": round(_rank(values, 50) / 1000, 3) if values else None,
                "p99_ms": round(_rank(values, 99) / 1000, 3) if values else None,
            })
        return rows


def _rank(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile of a sorted, non-empty list."""
    rank = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]
