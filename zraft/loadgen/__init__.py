"""``zraft bench``: pipelined workloads against a running cluster, latency percentiles from an
HDR histogram, throughput and latency over time, and an optional plot (matplotlib extra)."""

from zraft.loadgen.recorder import LatencyHistogram, Recorder
from zraft.loadgen.workload import BenchConfig, Workload

__all__ = ["BenchConfig", "LatencyHistogram", "Recorder", "Workload"]
