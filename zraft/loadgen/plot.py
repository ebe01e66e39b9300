"""The bench plot: throughput and latency over time, with faults and leader changes marked.

Rules: matplotlib is an optional extra, imported only here and only when a plot is asked for
(``PlotUnavailable`` says how to install it); the Agg backend is used, so no display is
needed. Times on the x axis are seconds since the run started.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class PlotUnavailable(Exception):
    pass


def plot(result: dict[str, Any], path: str | Path) -> Path:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'zraft[plot]' "
                              "(or pip install matplotlib)") from None

    timeline = result["timeline"]
    t = [row["t"] for row in timeline]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 6.5),
                                      gridspec_kw={"height_ratios": [1, 1]})
    top.plot(t, [row["ops_per_s"] for row in timeline], color="#1f77b4", lw=1.6,
             drawstyle="steps-post", label="completed ops/s")
    top.set_ylabel("throughput (ops/s)")
    top.set_ylim(bottom=0)
    top.grid(alpha=0.3)
    for key, color, label in (("p50_ms", "#2ca02c", "p50"), ("p99_ms", "#d62728", "p99")):
        points = [(row["t"], row[key]) for row in timeline if row[key] is not None]
        if points:
            bottom.plot(*zip(*points, strict=True), color=color, lw=1.4, marker=".", ms=3,
                        label=f"{label} latency")
    bottom.set_yscale("log")
    bottom.set_ylabel("latency (ms, log)")
    bottom.set_xlabel("seconds since start")
    bottom.grid(alpha=0.3, which="both")

    duration = float(result.get("measured_s") or result["config"]["duration"]) or 1.0
    last_in_row: list[float] = []
    for mark in sorted(result.get("marks", []), key=lambda m: m["at"]):
        fault = mark["category"] == "fault"
        color, style = ("#d62728", "-") if fault else ("#9467bd", "--")
        for ax in (top, bottom):
            ax.axvline(mark["at"], color=color, ls=style, lw=1.2, alpha=0.8)
        row = _label_row(last_in_row, mark["at"], min_gap=duration * 0.18)
        top.annotate(mark["label"], xy=(mark["at"], 1.0), xycoords=("data", "axes fraction"),
                     xytext=(3, -3 - 11 * row), textcoords="offset points", fontsize=8,
                     color=color, va="top",
                     bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none",
                           "alpha": 0.7})
    from matplotlib.lines import Line2D

    handles, labels = top.get_legend_handles_labels()
    handles += [Line2D([], [], color="#d62728", lw=1.2), Line2D([], [], color="#9467bd", ls="--")]
    labels += ["fault injected", "leader change"]
    top.legend(handles, labels, loc="lower left", fontsize=8)
    bottom.legend(loc="upper left", fontsize=8)
    lat = result["latency_ms"]
    cfg = result["config"]
    fig.suptitle(f"zraft bench: {cfg['clients']} clients x {cfg['inflight']} in flight, "
                 f"{cfg['value_size']} B values, {cfg['read_pct']:g}% reads  |  "
                 f"{result['throughput']:.0f} ops/s, p50 {lat['p50']:.2f} ms, "
                 f"p99 {lat['p99']:.2f} ms"
                 + (f"  |  interrupted after {result['measured_s']:.1f} s"
                    if result.get("interrupted") else ""), fontsize=10)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _label_row(last_in_row: list[float], at: float, min_gap: float) -> int:
    """The first label row whose previous label is far enough to the left (labels on
    close marks stack downwards instead of overlapping)."""
    for row, last in enumerate(last_in_row):
        if at - last >= min_gap:
            last_in_row[row] = at
            return row
    last_in_row.append(at)
    return len(last_in_row) - 1
