"""``zraft bench``: pipelined workloads against a running cluster, latency percentiles from an
HDR histogram, throughput and latency over time, and an optional plot (matplotlib extra)."""

from zraft.bench.recorder import LatencyHistogram, Recorder
from zraft.bench.workload import BenchConfig, Workload

__all__ = ["BenchConfig", "LatencyHistogram", "Recorder", "Workload"]
